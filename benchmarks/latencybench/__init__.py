"""Helpers of benchmarks/latency_bench.py: detection latency under `dagster dev` (docs/benchmarks.md)."""
