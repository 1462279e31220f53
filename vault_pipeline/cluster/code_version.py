"""The version of the pipeline code a process runs.

A run is launched by the daemon from the code it loaded and executed by a worker from the code the worker has:
when the two differ (a rolling upgrade half done, a stale machine), the worker must refuse the run rather
than execute steps of another version. The version is VAULT_CODE_VERSION when set (a release id: image tag,
git commit), else a digest of the installed package's own files and of the Dagster release that runs them,
so any change to the code, or a worker left on another Dagster, changes it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import metadata
from pathlib import Path

import vault_pipeline

CODE_VERSION_ENV = "VAULT_CODE_VERSION"
# The files whose content is the code: sources, migrations, the retention policy.
CODE_SUFFIXES = (".py", ".sql", ".yaml")
# Distributions whose release is part of what executes a run (serialized run arguments, execution engine).
ENGINE_DISTRIBUTIONS = ("dagster", "dagster-celery")


def package_version() -> str:
    try:
        return metadata.version("vault-pipeline")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def source_digest(package_dir: Path = Path(vault_pipeline.__file__).parent) -> str:
    """SHA-256 over the package's code files (relative path and content, in path order) and the engine's
    releases: 12 hex digits."""
    digest = hashlib.sha256()
    for name in ENGINE_DISTRIBUTIONS:
        try:
            digest.update(f"{name}=={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} missing\0".encode())
    for path in sorted(p for p in package_dir.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()
                       and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def code_version() -> str:
    """VAULT_CODE_VERSION if set, else `<package version>+<source digest>`."""
    explicit = os.environ.get(CODE_VERSION_ENV, "").strip()
    return explicit or f"{package_version()}+{source_digest()}"
