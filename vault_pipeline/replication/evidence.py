"""What a run's own verification saw of the cold copies it wrote, for that same run's audit.

A copy is verified by a HEAD of its exact version right after it is written. The asset checks of the
same run audit every object of the day a few seconds later; for the versions this run just verified,
asking the cold site the same question again would double the requests per document and add nothing.
The audit judges those versions from the verifying HEAD (its own rules, applied to that answer) and
asks the cold site about every other object of the day; later runs (verification_report, the checks of
the next run) look again for real. Kept in memory per run id, in the run's process (the in-process
executor runs every step of a run in one process); a run whose evidence is not here is audited fully.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from vault_pipeline.replication.verify import ColdEvidence

MAX_RUNS = 8  # runs whose evidence is kept in one process (a run's audit follows its copy step)


class RunEvidence:
    """Evidence by key; thread-safe for the copy workers that record it."""

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[ColdEvidence, str]] = {}
        self._lock = threading.Lock()

    def record(self, key: str, evidence: ColdEvidence, source_etag: str) -> None:
        with self._lock:
            self._by_key[key] = (evidence, source_etag)

    def get(self, key: str) -> tuple[ColdEvidence, str] | None:
        """The verifying HEAD's evidence of `key` and the hot ETag the copy was made from."""
        return self._by_key.get(key)

    def __len__(self) -> int:
        return len(self._by_key)


_runs: OrderedDict[str, RunEvidence] = OrderedDict()
_runs_lock = threading.Lock()


def evidence_for_run(run_id: str) -> RunEvidence:
    """The run's evidence, created on first use (by its copy step)."""
    with _runs_lock:
        evidence = _runs.get(run_id)
        if evidence is None:
            evidence = _runs[run_id] = RunEvidence()
            while len(_runs) > MAX_RUNS:
                _runs.popitem(last=False)
        return evidence


def recorded_evidence(run_id: str) -> RunEvidence | None:
    """The run's evidence if its copy step ran in this process, else None (audit everything)."""
    with _runs_lock:
        return _runs.get(run_id)
