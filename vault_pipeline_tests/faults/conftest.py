"""The fault suite's harness: the test's Vault with a fault-injecting proxy (proxy.py) in front of each site,
short client timeouts, and one scenario runner that ends every test on the invariants (invariants.py).

The pipeline (Dagster definitions) goes through the proxies; the test's own clients (vault.hot, vault.cold)
talk to the servers directly, so setting up and checking never meets a fault.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from vault_pipeline.replication import s3client
from vault_pipeline_tests.conftest import Vault, today_key
from vault_pipeline_tests.faults import invariants
from vault_pipeline_tests.faults.proxy import FaultProxy, Rule

MiB = 1024 * 1024
# The product's clients wait 120 s for a response (s3client.SiteConfig.read_timeout) and the settings do not
# expose it; the suite shortens it in this process so a stall past the timeout takes seconds.
READ_TIMEOUT_S = 2.0
# A run that fails on one of these failed on a bug of the pipeline, whatever the fault was.
INTERNAL_ERRORS = ("TypeError", "AttributeError", "KeyError", "NameError", "AssertionError", "UnboundLocalError",
                   "IndexError", "ValueError")
STALL_S = 3.0  # past READ_TIMEOUT_S


@dataclass
class Faulty:
    vault: Vault
    hot: FaultProxy
    cold: FaultProxy
    keys: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def put_mix(self, prefix: str = "docs", small: int = 10, large: tuple[int, ...] = (6 * MiB, 11 * MiB),
                seed: int = 1) -> list[str]:
        """Small documents (1 KiB .. 256 KiB) and multipart ones (above the tests' 5 MiB threshold)."""
        rng = random.Random(seed)
        for index, size in enumerate(large):
            key = f"{prefix}/large-{index}.bin"
            self.vault.put(key, os.urandom(size), {"document-type": "contract"})
            self.keys.append(key)
        for index in range(small):
            key = f"{prefix}/small-{index:03d}.pdf"
            self.vault.put(key, os.urandom(rng.randint(1024, 256 * 1024)), {"document-type": "payslip"})
            self.keys.append(key)
        return self.keys

    def run(self) -> Any:
        return self.vault.run_partition(today_key(), sweep=False)

    def faulted_run(self, hot: list[Rule] = (), cold: list[Rule] = ()) -> invariants.Findings:  # type: ignore[assignment]
        """One run with the rules on; returns what it left (asserts nothing is stuck or silent)."""
        self.hot.add(*hot)
        self.cold.add(*cold)
        try:
            result = self.run()
        finally:
            self.hot.clear()
            self.cold.clear()
        found = invariants.check_after_faulted_run(self.vault.dsn, self.vault.hot_bucket)
        self.log.append(f"faulted run success={result.success} statuses={found.statuses} "
                        f"injected hot={dict(self.hot.counts())} cold={dict(self.cold.counts())}")
        for key, message in list(found.failed.items())[:3]:
            self.log.append(f"  failed {key}: {message[:200]}")
        for row in invariants.rows(self.vault.dsn, self.vault.hot_bucket)[:3]:
            self.log.append(f"  row {row['s3_key']} {row['status']} retry_count={row['retry_count']} "
                            f"error={str(row['error_message'])[:200]!r}")
        if not result.success:
            failure = [e for e in result.all_events if e.is_failure]
            self.log.append(f"  run failure: {failure_text(failure[0]) if failure else '?'}")
        print("\n".join(self.log))
        assert found.ok, found.problems
        if not result.success:  # the run is red: the operator must be told why, not shown a crash
            failure = [e for e in result.all_events if e.is_failure]
            text = failure_text(failure[0]) if failure else ""
            assert not text.startswith(INTERNAL_ERRORS), f"the faulted run failed on a bug, not the fault: {text}"
        return found

    def recover_and_check(self) -> invariants.Findings:
        """Faults off, one more run: it must repair everything."""
        result = self.run()
        found = invariants.check_final(self.vault.dsn, self.vault.hot_bucket, self.vault.cold,
                                       self.vault.cold_bucket, self.keys)
        print(f"recovery run success={result.success} statuses={found.statuses} journal: {found.journal}")
        assert found.ok, found.problems
        assert result.success
        return found

    def scenario(self, hot: list[Rule] = (), cold: list[Rule] = (), **mix: Any) -> invariants.Findings:  # type: ignore[assignment]
        self.put_mix(**mix)
        self.vault.run_sensor()
        self.faulted_run(hot, cold)
        injected = sum(self.hot.counts().values()) + sum(self.cold.counts().values())
        assert injected, "no fault was injected: the rules matched nothing"
        return self.recover_and_check()


def failure_text(event: Any) -> str:
    """The innermost cause of a step failure, as the operator sees it in the UI."""
    error = getattr(event.event_specific_data, "error", None)
    while error is not None and error.cause is not None:
        error = error.cause
    return (error.message.strip() if error is not None else str(event.event_specific_data))[:600]


@pytest.fixture
def faulty(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faulty]:
    hot = FaultProxy(vault.env["OVH_S3_ENDPOINT"], "hot", seed=7).start()
    cold = FaultProxy(vault.env["AWS_S3_ENDPOINT"], "cold", seed=11).start()
    short = functools.partial(s3client.SiteConfig, connect_timeout=2.0, read_timeout=READ_TIMEOUT_S)
    monkeypatch.setattr("vault_pipeline.resources.s3_sites.SiteConfig", short)
    s3client.shared_client.cache_clear()
    try:
        vault.configure(OVH_S3_ENDPOINT=hot.url, AWS_S3_ENDPOINT=cold.url)
        yield Faulty(vault, hot, cold)
    finally:
        s3client.shared_client.cache_clear()
        hot.stop()
        cold.stop()
