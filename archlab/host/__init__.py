"""The host the lab runs on: what machine it is, its CPUs and pinning, its process groups."""
