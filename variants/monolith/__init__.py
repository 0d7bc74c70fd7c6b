"""The monolith: every context in one process, requests served by a thread pool."""
