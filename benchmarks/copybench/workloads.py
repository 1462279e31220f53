"""Reproducible workloads: which objects (keys, sizes, document types) and their bytes, generated on the fly.

Every object's bytes come from its own seeded generator (random bytes: incompressible, like encrypted
PDFs), so a workload is the same on every machine and run, objects can be generated in any order and in
parallel, and a 1 GiB object is streamed in 1 MiB chunks instead of held in memory.

    W1  5,000 x 64 KiB                                  small documents, per-object overhead dominates
    W2  4 x 1 GiB                                       large objects: multipart, memory bound
    W3  2,000 log-normal sizes, median 256 KiB,        a realistic mix; a few objects above the
        sigma 1.75, clipped to 10 KiB .. 32 MiB        16 MiB multipart threshold
    smoke  20 x 64 KiB                                 a quick check of the harness itself

`scale` shrinks W1 and W3 object counts and W2 object sizes (W3 sizes stay as they are).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
DOCUMENT_TYPES = ("payslip", "invoice", "contract", "general")
WORKLOAD_NAMES = ("W1", "W2", "W3")
W3_MEDIAN_BYTES = 256 * KIB
W3_SIGMA = 1.75
W3_MIN_BYTES = 10 * KIB
W3_MAX_BYTES = 32 * MIB


@dataclass(frozen=True)
class ObjectSpec:
    key: str
    size: int
    seed: str
    document_type: str


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    objects: tuple[ObjectSpec, ...]

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def largest_object(self) -> int:
        return max(o.size for o in self.objects)


def _objects(name: str, sizes: list[int], seed: int, suffix: str) -> tuple[ObjectSpec, ...]:
    types = random.Random(f"{seed}:{name}:types")
    return tuple(
        ObjectSpec(key=f"{name.lower()}/{i:06d}{suffix}", size=size, seed=f"{seed}:{name}:{i}",
                   document_type=types.choice(DOCUMENT_TYPES))
        for i, size in enumerate(sizes)
    )


def scaled_count(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def w1(scale: float, seed: int) -> Workload:
    count = scaled_count(5000, scale)
    return Workload("W1", f"{count:,} x 64 KiB", _objects("W1", [64 * KIB] * count, seed, ".pdf"))


def w2(scale: float, seed: int) -> Workload:
    size = max(MIB, round(GIB * scale))
    return Workload("W2", f"4 x {size / MIB:,.0f} MiB", _objects("W2", [size] * 4, seed, ".bin"))


def lognormal_sizes(count: int, seed: int) -> list[int]:
    rng = random.Random(f"{seed}:W3:sizes")
    mu = math.log(W3_MEDIAN_BYTES)
    return [min(W3_MAX_BYTES, max(W3_MIN_BYTES, int(rng.lognormvariate(mu, W3_SIGMA)))) for _ in range(count)]


def w3(scale: float, seed: int) -> Workload:
    count = scaled_count(2000, scale)
    return Workload("W3", f"{count:,} log-normal sizes, 10 KiB..32 MiB",
                    _objects("W3", lognormal_sizes(count, seed), seed, ".pdf"))


def smoke(seed: int) -> Workload:
    return Workload("W1", "smoke: 20 x 64 KiB", _objects("W1", [64 * KIB] * 20, seed, ".pdf"))


def build_workloads(names: list[str], scale: float, seed: int, *, smoke_mode: bool = False) -> list[Workload]:
    if smoke_mode:
        return [smoke(seed)]
    builders = {"W1": w1, "W2": w2, "W3": w3}
    return [builders[name](scale, seed) for name in names]


class GeneratedBody(io.RawIOBase):
    """The bytes of one object as a non-seekable stream, generated in 1 MiB chunks."""

    chunk_size = MIB

    def __init__(self, spec: ObjectSpec) -> None:
        super().__init__()
        self._rng = random.Random(spec.seed)
        self._remaining = spec.size
        self._buffer = bytearray()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._remaining + len(self._buffer) if size is None or size < 0 else size
        while len(self._buffer) < wanted and self._remaining > 0:
            n = min(self.chunk_size, self._remaining)
            self._buffer += self._rng.randbytes(n)
            self._remaining -= n
        data = bytes(self._buffer[:wanted])
        del self._buffer[:wanted]
        return data
