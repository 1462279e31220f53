"""Operator-facing work in plain Python: the Dagster API client, the status report, retries of failed rows."""
