"""Stage 2, measuring: what the instruments record while a run goes.

Process samplers, GC data, py-spy profiles, the request recorder (a locust plugin) and the
invariant check after the load.
"""
