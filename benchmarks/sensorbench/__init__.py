"""Helpers of benchmarks/sensor_bench.py: the hot bucket's keys and upload, the sensor sweeps, the 1M-key diff."""
