"""Micro-benchmarks outside the run matrix: one contract call per hop, one full GC collection."""
