"""The copy benchmark of issue 5 (benchmarks/copy_bench.py): workloads, contenders, measurement, report."""
