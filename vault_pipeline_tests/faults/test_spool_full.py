"""Spool write errors (disk full) during a whole run (issue 12, item 6).

Every write to a spool file fails with ENOSPC, in this process: the multipart copies must fall back (ranged
GETs, test_large_copies.py) or fail clearly, and the run end on the invariants like any other fault.
"""

from __future__ import annotations

import errno

import pytest

from vault_pipeline.replication.spool import SpoolFile
from vault_pipeline_tests.faults.conftest import Faulty, MiB
from vault_pipeline_tests.faults.proxy import Rule


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_full_spool_disk_during_a_run(faulty: Faulty) -> None:
    writes = []

    def disk_full(self: SpoolFile, data: bytes) -> None:
        writes.append(len(data))
        raise OSError(errno.ENOSPC, "No space left on device")

    faulty.put_mix(small=6, large=(6 * MiB, 9 * MiB, 11 * MiB))
    faulty.vault.run_sensor()
    with pytest.MonkeyPatch.context() as patch:  # not the vault's monkeypatch: it holds the environment
        patch.setattr(SpoolFile, "write", disk_full)
        faulty.faulted_run()
    assert writes, "no spool file was written: the scenario did not exercise the spool"
    faulty.recover_and_check()


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_full_spool_disk_and_hot_resets_together(faulty: Faulty) -> None:
    """The fallback reads the hot object again in ranges: those reads meet resets too."""
    def disk_full(self: SpoolFile, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    faulty.put_mix(small=2, large=(9 * MiB, 11 * MiB))
    faulty.vault.run_sensor()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SpoolFile, "write", disk_full)
        faulty.faulted_run(hot=[Rule("reset_response", methods={"GET"}, path=r"/docs/large", probability=0.5,
                                     count=6)])
    faulty.recover_and_check()
