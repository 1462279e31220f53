"""What the two S3 server flavours (SeaweedFS, moto) share: endpoint, credentials, clients, lifecycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from vault_pipeline.devstack.ports import LOOPBACK
from vault_pipeline.devstack.process import ChildServer, DevStackError, stop_process, wait_until

REGION = "us-east-1"  # both servers accept any region; us-east-1 keeps CreateBucket free of a LocationConstraint


def find_binary(name: str, package: str) -> str:
    """A server binary installed by a pip package next to this interpreter (the venv, even when it is not
    activated), else on PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise DevStackError(f"`{name}` not found: install {package} (the dev extra: vault-pipeline[dev])")
    return found


def s3_client(endpoint_url: str, access_key: str, secret_key: str, *, probe: bool = False) -> Any:
    """A path-style boto3 S3 client. A `probe` client gives up fast (no retries, short timeouts): it is
    used to poll a starting server, where a hung connection must not outlast the start timeout."""
    if probe:
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 1},
                        connect_timeout=1, read_timeout=3)
    else:
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3},
                        max_pool_connections=32)
    return boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name=REGION, config=config)


class S3ServerSite(ChildServer):
    """One S3 server process on 127.0.0.1:`s3_port`. Subclasses say how to launch it (`_launch`)."""

    kind = "S3 server"
    stop_timeout = 15.0  # seconds between SIGTERM and SIGKILL

    def __init__(self, name: str, s3_port: int, access_key: str, secret_key: str, log_path: Path) -> None:
        self.name = name
        self.s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.log_path = Path(log_path).resolve()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    def client(self) -> Any:
        return s3_client(self.endpoint_url, self.access_key, self.secret_key)

    def _launch(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def _check_ready(self, probe: Any) -> None:
        """Raise until the server can serve requests; ListBuckets with our credentials by default."""
        probe.list_buckets()

    def _cleanup(self) -> None:
        """Remove what one run leaves behind outside the data (sockets); called after every stop."""

    def start(self, timeout: float = 60) -> S3ServerSite:
        """Start the server and wait until ListBuckets answers with our credentials. Idempotent."""
        if self.is_running:
            return self
        self.stop()  # reaps a crashed previous process and cleans its leftovers
        self.process = self._launch()
        probe = s3_client(self.endpoint_url, self.access_key, self.secret_key, probe=True)
        try:
            wait_until(lambda: self._check_ready(probe), timeout=timeout, process=self.process,
                       what=f"{self.kind} {self.name!r} on {self.endpoint_url}", log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to `stop_timeout`, then SIGKILL (noted in the log). Idempotent."""
        if not stop_process(self.process, timeout=self.stop_timeout):
            with open(self.log_path, "a") as log:
                log.write(f"\n[vault devstack] {self.kind} {self.name!r} did not exit within {self.stop_timeout:.0f}s "
                          "of SIGTERM and was killed\n")
        self.process = None
        self._cleanup()

    def __enter__(self) -> S3ServerSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.endpoint_url}, running={self.is_running})"
