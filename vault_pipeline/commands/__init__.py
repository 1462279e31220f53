"""The operator commands of `vault-pipeline` (status, retry-failed, restore): argument parsing, progress
display and one-line errors. Each module has `add_parser(commands)` and `run(args) -> exit status`; the work
itself lives in plain modules (vault_pipeline.operations, vault_pipeline.replication)."""
