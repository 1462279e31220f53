"""The workloads: files of random bytes written once into a data directory, with their SHA-256, then
hard-linked into each SFTP server's inbox (`<inbox>/<workload>/...`), where both contenders read them.

    small   2,000 x 64 KiB   per-file costs: round trips, claims, requests, rows
    large       4 x 256 MiB  bytes: SSH decryption, hashing, multipart uploads
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
WRITE_CHUNK = 8 * MIB
WORKLOAD_NAMES = ("small", "large")


@dataclass
class Workload:
    name: str
    count: int
    size: int
    sha256: dict[str, str] = field(default_factory=dict)  # name in the workload's directory -> hex digest

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    @property
    def description(self) -> str:
        size = f"{self.size // MIB} MiB" if self.size >= MIB else f"{self.size // KIB} KiB"
        return f"{self.count:,} x {size}"

    def names(self) -> list[str]:
        width = max(5, len(str(self.count)))
        return [f"{self.name}-{i:0{width}d}.bin" for i in range(self.count)]


def plan(names: list[str], *, small_files: int, large_files: int, large_mib: float) -> list[Workload]:
    sizes = {"small": (small_files, 64 * KIB), "large": (large_files, max(1, round(large_mib * MIB)))}
    return [Workload(name, *sizes[name]) for name in names]


def write_random_file(path: Path, size: int) -> str:
    """`size` random bytes at `path`; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(WRITE_CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def write_workload(workload: Workload, data_dir: Path) -> Path:
    """The workload's files under `data_dir/<name>/`, written once; fills `workload.sha256`."""
    directory = data_dir / workload.name
    directory.mkdir(parents=True, exist_ok=True)
    for name in workload.names():
        workload.sha256[name] = write_random_file(directory / name, workload.size)
    return directory


def place(source_dir: Path, inbox_dir: Path) -> Path:
    """The files of `source_dir` in `inbox_dir/<source_dir.name>/`: hard links (no second copy on disk, the
    same page cache), a copy where the inbox is on another file system. Readable by an sshd chrooted as root."""
    target = inbox_dir / source_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(source_dir.iterdir()):
        destination = target / source.name
        destination.unlink(missing_ok=True)
        try:
            os.link(source, destination)
        except OSError:
            shutil.copyfile(source, destination)
    return target
