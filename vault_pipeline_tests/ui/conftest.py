"""Harness of the browser tests: one `vault-pipeline dev` (stack + `dagster dev` on free ports) and one
headless Chromium for the module, a fresh browser context per test, full-page screenshots as artifacts.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/ensure-chromium when missing), driven through the
node driver bundled in the playwright wheel: `playwright install` is never run (no browser download).
Without Chromium, or without the playwright package, the tests skip and say which; nothing else skips.
Under CI=true they fail instead, saying which: CI must run the browser test (.ci/ensure-chromium fails too).

Screenshots go to $VAULT_TEST_ARTIFACTS (default <repo>/test-artifacts/browser/, git-ignored), with the
dev stack's log; a failed test leaves FAILED-<test>.png there. The directory is printed at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from vault_pipeline.dagster_api import DagsterApi
from vault_pipeline.devstack.devserver import DevServer
from vault_pipeline.devstack.site import s3_client
from vault_pipeline.partitions import partition_key_for
from vault_pipeline_tests.stackfixtures import stack_processes

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("VAULT_TEST_CHROMIUM") or "/usr/bin/chromium")
# Without the background-networking switches Chromium keeps dialling out, which this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("VAULT_TEST_ARTIFACTS") or REPO / "test-artifacts" / "browser")
VIEWPORT = {"width": 1280, "height": 800}  # also the size of the runbook's images (docs/images/)
SENSOR = "hot_bucket_sensor"
SENSOR_INTERVAL_S = 5  # instead of 30: the sensor's runs show up within seconds
# Nothing from the developer's shell reaches the stack (the dev server merges os.environ into its own).
PIPELINE_VARIABLES = ("VAULT_", "OVH_S3_", "AWS_S3_", "REPLICATION_CONCURRENCY", "DELETE_FROM_OVH_AFTER_REPLICATION",
                      "DAGSTER_HOME")
ACTIVE_RUN_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")

_saved: list[Path] = []


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of what the browser shows now, kept as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")  # dialogs fully faded in
    _saved.append(path)
    return path


def no_browser(reason: str) -> NoReturn:
    """No browser can be driven: a skip saying why, except under CI=true, where it is a failure saying why
    (a browser test that CI skips is a browser test nobody runs)."""
    if IN_CI:
        pytest.fail(f"CI=true and the browser test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail under CI), saying why, where no browser can be driven; never for any other reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        no_browser(f"playwright cannot be imported ({exc}): install the test extra (make install)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        no_browser(f"no Chromium: {CHROMIUM} missing and it could not be installed here (.ci/ensure-chromium "
                   "runs `apt-get install -y chromium` as root or through `sudo -n`)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    for stale in [*ARTIFACTS.glob("[0-9][0-9]-*.png"), *ARTIFACTS.glob("FAILED-*.png")]:  # a previous run's
        stale.unlink()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # 2 busy cores: the UI's first queries take seconds
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # read by `page` to screenshot a failure
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new context per test (UTC, en-US, 1280x800), so no test inherits another's page state."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC", locale="en-US")
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed:
            try:
                screenshot(page, f"FAILED-{request.node.name}")
            except Exception as exc:  # the page may be what broke; the test's own error matters more
                print(f"no failure screenshot: {exc}")
        context.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        terminalreporter.write_line(f"browser test artifacts ({len(_saved)} screenshot(s), dev.log): {ARTIFACTS}")


@dataclass
class UiStack:
    """The running dev stack as the browser tests use it."""

    server: DevServer
    api: DagsterApi
    hot: Any
    cold: Any
    keys: list[str]
    partition: str = ""

    def url(self, path: str) -> str:
        return self.server.ui_url + path

    @property
    def hot_bucket(self) -> str:
        return self.server.env["OVH_S3_BUCKET_DOCUMENTS"]

    @property
    def cold_bucket(self) -> str:
        return self.server.env["AWS_S3_BUCKET_DOCUMENTS_COLD"]

    def upload(self) -> None:
        """The documents of the scenario, each with its document type, in today's partition."""
        days = set()
        for key in self.keys:
            document_type = "payslip" if "payslip" in key else "invoice"
            self.hot.put_object(Bucket=self.hot_bucket, Key=key, Body=f"%PDF-1.7 {key}".encode(),
                                Metadata={"document-type": document_type})
            modified = self.hot.head_object(Bucket=self.hot_bucket, Key=key)["LastModified"]
            days.add(partition_key_for(modified.astimezone(dt.UTC).date()))
        assert len(days) == 1, f"uploads straddle UTC midnight ({sorted(days)}): run the test again"
        self.partition = days.pop()

    def active_runs(self) -> list[str]:
        found = self.api.query(
            "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId } } } }",
            {"f": {"statuses": ACTIVE_RUN_STATUSES}})["runsOrError"]
        return [run["runId"] for run in found["results"]]

    def wait_until(self, what: str, condition: Callable[[], bool], timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
            time.sleep(1.0)


@pytest.fixture(scope="module")
def ui_stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    """`vault-pipeline dev` on free ports, the sensor running, the scenario's documents uploaded. Requests
    `browser` first, so a run that skips starts no server. Stopped even on failure, and checked gone."""
    root = tmp_path_factory.mktemp("browser-stack")
    log_path = root / "dev.log"
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(PIPELINE_VARIABLES)]:
            env.delenv(name)
        server = DevServer(root / "stack", log_path, {"VAULT_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL_S),
                                                      # the SFTP inbox's files settle in 2 s, not 30
                                                      "SFTP_STABLE_SECONDS": "2", "SFTP_SENSOR_INTERVAL_SECONDS": "3"})
        try:
            server.start()
            api = DagsterApi(server.ui_url)
            server.wait_for_sensor(api, SENSOR)
            # The UI opens a "Join the Dagster community" dialog over every page until it is dismissed
            # once per instance ("Skip"); this is what that button sends.
            api.query("mutation { setNuxSeen }")
            env_ = server.env
            today = dt.datetime.now(dt.UTC)
            stack = UiStack(
                server=server, api=api,
                hot=s3_client(env_["OVH_S3_ENDPOINT"], env_["OVH_S3_ACCESS_KEY_ID"], env_["OVH_S3_SECRET_ACCESS_KEY"]),
                cold=s3_client(env_["AWS_S3_ENDPOINT"], env_["AWS_S3_ACCESS_KEY_ID"], env_["AWS_S3_SECRET_ACCESS_KEY"]),
                keys=[f"{today:%Y/%m}/invoice-00{i}.pdf" for i in (1, 2, 3)] + [f"{today:%Y/%m}/payslip-001.pdf"],
            )
            stack.upload()
            yield stack
        finally:
            server.stop()
            if log_path.exists():
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log_path, ARTIFACTS / "dev.log")
    leftovers = stack_processes(str(root))
    assert not leftovers, f"still running after the dev stack stopped: {[p.pid for p in leftovers]}"
