"""Local pieces of the large-object copy path: the spool file an object's bytes wait in while its parts
are sent, the process-wide budget of spool bytes, and the per-part SHA-256 of a stream."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator

from vault_pipeline.replication.errors import CopyError

MiB = 1024 * 1024
READ_CHUNK = 1 * MiB


class SpoolBudget:
    """Bytes of spool files in use by this process's copies."""

    def __init__(self) -> None:
        self._used = 0
        self._lock = threading.Lock()

    def reserve(self, size: int, limit: int) -> bool:
        with self._lock:
            if self._used + size > limit:
                return False
            self._used += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self._used -= size


SPOOL_BUDGET = SpoolBudget()
SPOOL_FREE_MARGIN = 1024 * MiB  # never fill the spool's file system: leave this much free


class SpoolFile:
    """An object's bytes on local disk while its parts are sent. The file is unlinked as soon as it is
    created, so nothing is left behind whatever happens to the process; parts are read with pread."""

    def __init__(self, directory: str, size: int) -> None:
        self.size = size
        fd, path = tempfile.mkstemp(prefix="vault-spool-", dir=directory)
        os.unlink(path)
        self._fd: int | None = fd
        self.written = 0

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]
        self.written += len(data)

    def chunks(self, start: int, length: int) -> Iterator[bytes]:
        assert self._fd is not None
        end = start + length
        while start < end:
            chunk = os.pread(self._fd, min(READ_CHUNK, end - start), start)
            if not chunk:
                raise CopyError(f"spool file ended at byte {start}, expected {end}")
            start += len(chunk)
            yield chunk

    def read(self, start: int, length: int) -> bytes:
        return b"".join(self.chunks(start, length))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PartHasher:
    """SHA-256 digests of consecutive `part_size` slices of a stream fed in chunks of any size."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.digests: list[bytes] = []
        self._part = hashlib.sha256()
        self._in_part = 0

    def update(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            take = min(len(view), self.part_size - self._in_part)
            self._part.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == self.part_size:
                self.digests.append(self._part.digest())
                self._part, self._in_part = hashlib.sha256(), 0

    def finish(self) -> list[bytes]:
        """The digests, the last (short or empty) part included."""
        if self._in_part or not self.digests:
            self.digests.append(self._part.digest())
            self._part, self._in_part = hashlib.sha256(), 0
        return self.digests
