"""The moto server as a second cold flavour.

It models Deep Archive (GET refused with InvalidObjectState until a restore, restore works), which
SeaweedFS does not, but it keeps everything in memory (a restart starts empty), accepts any credentials
and does not refuse a shortened retention. The pipeline is tested against both flavours.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from vault_pipeline.devstack.ports import LOOPBACK
from vault_pipeline.devstack.process import start_process
from vault_pipeline.devstack.site import S3ServerSite, find_binary


class MotoSite(S3ServerSite):
    kind = "moto server"

    def __init__(self, name: str, s3_port: int, access_key: str, secret_key: str,
                 log_path: Path | None = None) -> None:
        super().__init__(name, s3_port, access_key, secret_key,
                         log_path or Path(tempfile.gettempdir()) / f"vault-moto-{s3_port}.log")

    def _launch(self) -> subprocess.Popen[bytes]:
        binary = find_binary("moto_server", "moto[server]")
        return start_process([binary, "-H", LOOPBACK, "-p", str(self.s3_port)], log_path=self.log_path)
