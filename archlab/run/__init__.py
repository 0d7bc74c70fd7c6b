"""Stage 1, running: a run's plan, its process groups, CPU pinning, restarts, fault schedule."""
