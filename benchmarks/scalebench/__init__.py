"""The scale benchmark of issue 14 (benchmarks/scale_bench.py): the tracking database at 10M documents
(database.py) and the detection side."""
