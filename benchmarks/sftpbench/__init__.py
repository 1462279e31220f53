"""The SFTP intake benchmark (benchmarks/sftp_bench.py): vault-pipeline's SFTP -> hot site transfer against
`rclone copy` from an sftp remote to an s3 remote, and the SFTP client libraries against each other."""

