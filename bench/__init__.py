"""Benchmarks: `python -m bench.bench_drift` (see its docstring)."""
