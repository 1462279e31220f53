"""The Dagster UI as an operator sees it, driven by a real browser (issue 6, "Operator experience").

One `vault-pipeline dev` for the module (PostgreSQL, both SeaweedFS sites, `dagster dev`, the sensor every
5 s) with four documents uploaded to the hot site. The steps run in order, each asserting what the page
shows (not what the API says) and saving full-page screenshots (see conftest.py):
1. hot_bucket_sensor running, its ticks requesting runs and those runs succeeding;
2. the lineage hot_inventory → cold_copies → verification_report, and the journal asset downstream (after
   step 1, so that the graph shows the copies and their checks);
3. one partition of cold_copies materialized from the asset page (Materialize… dialog), the run succeeding;
4. a cold object overwritten behind the pipeline's back, the checks job launched from its Launchpad with
   the tag dagster/partition, then the checksum check failed, naming the key, on the asset's Checks tab;
5. a document put into the SFTP inbox with the exported SFTP_* settings, as a producer would: it reaches the
   cold site locked and verified under sftp/<path>, its file_transfer_log row COMPLETED with its durations,
   and sftp_transfers shows the transfer (issue 16, "Done when");
6. a backup taken, its restore's data step killed, the failed run re-executed from failure with the UI's button,
   and `vault-pipeline db-report` of the new run naming both runs' steps (issue 17, docs/backups.md runbook).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse

import asyncssh
import psycopg
import pytest

from vault_pipeline.dagster_api import LOCATION
from vault_pipeline.devstack.sftp import run_coroutine
from vault_pipeline_tests.jobs.test_restore_tracking_db import kill_when_running
from vault_pipeline_tests.ui.conftest import SENSOR, SENSOR_INTERVAL_S, UiStack, screenshot

# Without playwright every test here stops in the `browser` fixture, before any of these names is used:
# a skip saying why, or under CI=true a failure saying why (conftest.require_browser).
with contextlib.suppress(ImportError):
    from playwright.sync_api import Locator, Page, expect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RUN_TIMEOUT_MS = 180_000  # queued, launched in a new process (5-15 s here), then run
GROUPS = ("replication", "verification", "journal", "secondary_site")
RUN_URL = re.compile(r"/runs/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def node(page: Page, name: str) -> Locator:
    """An asset (or group) box of the lineage graph, by its full displayed name."""
    return page.locator("foreignObject").get_by_text(name, exact=True)


def settled_graph(page: Page, *names: str) -> None:
    """The lineage graph shows these boxes whole: laid out, fitted to the view, its data loaded."""
    for name in names:
        expect(node(page, name)).to_be_in_viewport(ratio=1)
    expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)


def row(page: Page, *texts: str | re.Pattern[str]) -> Locator:
    """Table rows (role "row": the sensor's ticks, property tables) containing every one of `texts`."""
    rows = page.get_by_role("row")
    for text in texts:
        rows = rows.filter(has_text=text)
    return rows


def run_rows(page: Page, *texts: str | re.Pattern[str]) -> Locator:
    """Entries of a runs list containing every one of `texts`. The list is a virtualized grid of divs with
    no row role: an entry is the innermost div that has them all (each of its ancestors has them too)."""
    entries = page.locator("div").filter(has=page.get_by_role("link", name=re.compile(r"^run [0-9a-f]{8}$")))
    for text in texts:
        entries = entries.filter(has_text=text)
    return entries


def check_item(page: Page, name: str) -> Locator:
    """An entry of the Checks tab's list: the check's name, then its latest status."""
    return page.locator("span").filter(has=page.get_by_title(name, exact=True)).first


def test_1_sensor_is_running_and_its_runs_succeed(ui_stack: UiStack, page: Page) -> None:
    page.goto(ui_stack.url(f"/locations/{LOCATION}/sensors/{SENSOR}"))
    running = page.get_by_role("row").filter(has=page.get_by_role("cell", name="Running", exact=True))
    expect(running.get_by_role("checkbox")).to_be_checked()
    frequency = page.get_by_role("row").filter(has=page.get_by_role("cell", name="Frequency", exact=True))
    expect(frequency).to_contain_text(f"{SENSOR_INTERVAL_S} sec")
    # Its evaluations: a tick that saw the uploads requested a run (the page refreshes by itself).
    requested = row(page, re.compile(r"\b[1-9]\d* runs? requested")).first
    expect(requested).to_be_visible(timeout=RUN_TIMEOUT_MS)
    requested.scroll_into_view_if_needed()
    screenshot(page, "01-sensor-ticks")

    page.get_by_role("button", name="Runs", exact=True).click()
    expect(page).to_have_url(re.compile(r"view=runs"))
    succeeded = run_rows(page, "replication_job", f"partition: {ui_stack.partition}", "Success").last
    expect(succeeded).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(run_rows(page, "replication_job", "Failure")).to_have_count(0)
    screenshot(page, "02-sensor-runs")


def test_2_lineage_shows_the_replication_chain_and_the_journal(ui_stack: UiStack, page: Page) -> None:
    # The chain: upstream of verification_report, two levels, then one.
    page.goto(ui_stack.url("/assets/verification_report?view=lineage&lineageScope=upstream&lineageDepth=2"))
    settled_graph(page, "hot_inventory", "cold_copies", "verification_report")
    expect(page.get_by_text("Graph depth")).to_be_visible()
    screenshot(page, "03-lineage-chain")
    # The SFTP intake upstream of the hot inventory: sftp_transfers → hot_inventory → cold_copies.
    page.goto(ui_stack.url("/assets/cold_copies?view=lineage&lineageScope=upstream&lineageDepth=2"))
    settled_graph(page, "sftp_transfers", "hot_inventory", "cold_copies")
    screenshot(page, "03b-lineage-sftp")
    page.goto(ui_stack.url("/assets/verification_report?view=lineage&lineageScope=upstream&lineageDepth=1"))
    settled_graph(page, "cold_copies", "verification_report")
    expect(node(page, "hot_inventory")).to_have_count(0)

    # The global lineage with every group opened (the UI starts with them collapsed).
    expanded = ",".join(f"global@global:{group}" for group in GROUPS)
    page.goto(ui_stack.url(f"/asset-groups?expanded={urllib.parse.quote(expanded, safe='')}"))
    for name in (*GROUPS, "hot_inventory", "cold_copies", "hot_deletions", "journal_seal"):
        expect(node(page, name)).to_be_visible()
    # Opened groups are laid out after the first fit: one step out shows them whole.
    page.locator("button").filter(has=page.get_by_role("img", name="zoom_out", exact=True)).click()
    settled_graph(page, *GROUPS)
    screenshot(page, "04-lineage-global")

    # What depends on cold_copies, the journal included: listed on its overview, and drawn.
    page.goto(ui_stack.url("/assets/cold_copies"))
    expect(page.get_by_text("Verified, COMPLIANCE-locked copies on the cold site")).to_be_visible()
    expect(page.get_by_text("Upstream assets", exact=True)).to_be_visible()
    expect(page.get_by_text("Downstream assets", exact=True)).to_be_visible()
    for name in ("hot_inventory", "hot_deletions", "journal_seal", "verification_report"):
        expect(page.get_by_role("link", name=name).first).to_be_visible()
    page.goto(ui_stack.url("/assets/cold_copies?view=lineage&lineageScope=downstream"))
    for name in ("cold_copies", "hot_deletions", "journal_seal"):  # drawn; the view centres on cold_copies
        expect(node(page, name)).to_be_visible()
    screenshot(page, "05-lineage-downstream")


def test_3_one_partition_materialized_from_the_ui_succeeds(ui_stack: UiStack, page: Page) -> None:
    page.goto(ui_stack.url("/assets/cold_copies"))
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Launch runs to materialize cold_copies")
    # Dagster 1.13 opens on "Custom" with nothing selected: the day is typed (or a range, [a...b]).
    partitions = dialog.get_by_role("textbox")
    partitions.fill(ui_stack.partition)
    partitions.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch 1 run", exact=True)
    expect(launch).to_be_enabled()
    screenshot(page, "06-materialize-dialog")
    launch.click()

    # A toast "Launched run <id>" with a View link to the run.
    toast = page.get_by_role("listitem").filter(has_text="Launched run")
    expect(toast).to_be_visible()
    toast.get_by_role("link", name="View").click()
    expect(page).to_have_url(RUN_URL)
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_text(f"partition: {ui_stack.partition}", exact=True).first).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
    expect(page.get_by_text("STEP_FAILURE", exact=True)).to_have_count(0)
    screenshot(page, "07-ui-run-success")

    # The runs list shows it too, launched for cold_copies alone.
    page.goto(ui_stack.url("/runs"))
    expect(run_rows(page, run_id[:8], "cold_copies", "Success").last).to_be_visible()


def test_4_tampered_cold_object_fails_its_check_naming_the_key(ui_stack: UiStack, page: Page) -> None:
    key = ui_stack.keys[1]

    def copied() -> bool:  # the sensor's runs are over and the copy is in the cold bucket
        versions = ui_stack.cold.list_object_versions(Bucket=ui_stack.cold_bucket, Prefix=key).get("Versions", [])
        return bool(versions) and not ui_stack.active_runs()

    ui_stack.wait_until(f"{key} copied to the cold site and no run going", copied)
    # Behind the pipeline's back: a new current version with other bytes (the locked one stays below it).
    ui_stack.cold.put_object(Bucket=ui_stack.cold_bucket, Key=key, Body=b"forged", ChecksumAlgorithm="SHA256")

    # The checks job has no partitions of its own: its day is the tag dagster/partition (Launchpad).
    page.goto(ui_stack.url(f"/locations/{LOCATION}/jobs/cold_copies_checks_job/playground"))
    page.get_by_role("button", name="Edit tags").click()
    tags = page.get_by_role("dialog")
    tags.get_by_placeholder("Tag Key").fill("dagster/partition")
    tags.get_by_placeholder("Tag Value").fill(ui_stack.partition)
    screenshot(page, "08-checks-launchpad-tag")
    tags.get_by_role("button", name="Apply").click()
    expect(tags).to_have_count(0)
    page.get_by_role("button", name="Launch Run").click()

    # The launchpad opens the run; a failed blocking check fails it.
    expect(page).to_have_url(RUN_URL)
    expect(page.get_by_text(f"partition: {ui_stack.partition}", exact=True).first).to_be_visible()
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # The log keeps its end in view (older events are not rendered): the run's failure names the step (the
    # six checks are one step, checks/cold_copies.py); the Checks tab below names the check.
    expect(page.get_by_text("Steps failed: ['cold_copies_audit']").first).to_be_visible()
    screenshot(page, "09-checks-run-failure")

    # The asset's Checks tab: checksum failed for the day, the other five passed, the key is named.
    page.goto(ui_stack.url("/assets/cold_copies?view=checks"))
    for name in ("checksum", "completeness", "orphans", "retention", "storage_class", "tags"):
        expect(check_item(page, name)).to_contain_text("Failed" if name == "checksum" else "Succeeded")
    page.get_by_title("checksum", exact=True).first.click()
    summary = f"checksum: 1 of {len(ui_stack.keys)} object(s) fail on {ui_stack.partition}"
    expect(page.get_by_text(summary, exact=True)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_have_count(2)  # in the list, and the evaluation result
    screenshot(page, "10-check-failed")

    page.get_by_role("row", name="failing_keys").get_by_text("[Show JSON]").click()
    expect(page.get_by_role("dialog")).to_contain_text(f'"{key}"')
    screenshot(page, "11-check-failing-keys")
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.get_by_role("row", name="failures").get_by_text("[Show Markdown]").click()
    failures = page.get_by_role("dialog")
    expect(failures).to_contain_text(key)
    expect(failures).to_contain_text("is not the verified version")
    screenshot(page, "12-check-failures-table")


def test_5_a_document_put_by_sftp_reaches_the_cold_site(ui_stack: UiStack, page: Page) -> None:
    env = ui_stack.server.env
    name = "payroll/2026/jdoe payslip é.pdf"
    body = b"%PDF-1.7 delivered by SFTP " * 1000

    async def put() -> None:
        async with asyncssh.connect(env["SFTP_HOST"], int(env["SFTP_PORT"]), username=env["SFTP_USERNAME"],
                                    client_keys=[env["SFTP_PRIVATE_KEY_FILE"]], known_hosts=env["SFTP_KNOWN_HOSTS"],
                                    agent_path=None, config=[]) as conn, conn.start_sftp_client() as sftp:
            await sftp.makedirs(f"{env['SFTP_REMOTE_DIR']}/payroll/2026", exist_ok=True)
            async with sftp.open(f"{env['SFTP_REMOTE_DIR']}/{name}", "wb") as remote:
                await remote.write(body)

    run_coroutine(put())  # in a thread of its own: Playwright's sync API runs an event loop in this one

    def logged() -> tuple | None:
        with psycopg.connect(env["VAULT_DATABASE_URL"]) as conn:
            return conn.execute("SELECT status, hot_key, sha256, download_duration, upload_duration, total_duration,"
                                " after_transfer, worker_id FROM vault_secure.file_transfer_log WHERE filename = %s",
                                (name,)).fetchone()

    ui_stack.wait_until("the SFTP file transferred", lambda: (logged() or ("",))[0] == "COMPLETED")
    _, hot_key, sha, download, upload, total, after, worker = logged() or ()
    assert (hot_key, sha, after) == (f"sftp/{name}", hashlib.sha256(body).hexdigest(), "moved")
    assert download > 0 and upload > 0 and total > 0

    def locked() -> bool:
        versions = ui_stack.cold.list_object_versions(Bucket=ui_stack.cold_bucket, Prefix=hot_key).get("Versions", [])
        return len(versions) == 1
    ui_stack.wait_until("the SFTP document copied to the cold site", locked)
    head = ui_stack.cold.head_object(Bucket=ui_stack.cold_bucket, Key=hot_key)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["Metadata"]["vault-sha256"] == sha
    assert head["Metadata"]["vault-document-type"] == "general"

    # `vault-pipeline status` sums the transfer log up.
    status = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "status", "--json", "--no-workers"],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    sftp = json.loads(status.stdout)["sftp"]
    assert sftp["by_status"]["COMPLETED"]["files"] == 1 and sftp["last_24h"]["files"] == 1, status.stderr

    # The run the sensor launched (its id leads the lease owner's name), then the asset's page.
    page.goto(ui_stack.url(f"/runs/{worker.split('/')[0]}"))
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    screenshot(page, "10-sftp-transfer-run")
    page.goto(ui_stack.url("/assets/sftp_transfers"))
    expect(page.get_by_text("Documents delivered to the SFTP inbox", exact=False).first).to_be_visible()
    screenshot(page, "11-sftp-transfers")


def test_6_a_restore_killed_mid_step_is_re_executed_from_failure(ui_stack: UiStack, page: Page) -> None:
    """The runbook of docs/backups.md: a backup taken, its restore's data step killed, the run re-executed from
    failure with the UI's own button, the new run succeeding with every step reported."""
    env = ui_stack.server.env
    with psycopg.connect(env["VAULT_DATABASE_URL"], autocommit=True) as conn:  # a data step long enough to kill
        conn.execute("INSERT INTO vault_secure.audit_logs (event_type, object_key, source_bucket, metadata)"
                     " SELECT 'REPLICATION_FAILURE', 'filler/' || i, 'hot', jsonb_build_object('i', i)"
                     " FROM generate_series(1, 400000) i")
    backup = ui_stack.api.launch_run("tracking_db_backup_job")
    ui_stack.wait_until("the backup", lambda: ui_stack.api.run(backup)["status"] in ("SUCCESS", "FAILURE"))
    assert ui_stack.api.run(backup)["status"] == "SUCCESS"

    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_when_running, args=("--section=data", stop, killed), daemon=True)
    killer.start()
    config = {"ops": {"fetch_backup": {"config": {"target": "drill", "replace": True}}}}
    first = ui_stack.api.launch_run("restore_tracking_db", run_config=config)
    try:
        ui_stack.wait_until("the restore's end", lambda: ui_stack.api.run(first)["status"] in ("SUCCESS", "FAILURE"))
    finally:
        stop.set()
        killer.join()
    assert killed and ui_stack.api.run(first)["status"] == "FAILURE"

    page.goto(ui_stack.url(f"/runs/{first}"))
    expect(page.get_by_text("STEP_FAILURE", exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # "Re-execute all" would run every step again; its arrow opens the other choices.
    re_execute_all = page.get_by_role("button", name=re.compile(r"^Re-execute all"))
    expect(re_execute_all).to_be_visible()
    re_execute_all.locator("xpath=following-sibling::*[1]").get_by_role("button", name="arrow_drop_down").click()
    from_failure = page.get_by_role("menuitem", name=re.compile("from failure", re.IGNORECASE))
    expect(from_failure).to_be_visible()
    screenshot(page, "13-restore-reexecute-from-failure")
    from_failure.click()
    expect(page).not_to_have_url(re.compile(first))
    expect(page).to_have_url(RUN_URL)
    second = page.url.rsplit("/", 1)[1]
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    screenshot(page, "14-restore-reexecuted")

    home = ui_stack.server.root / "dagster_home"
    shown = subprocess.run([sys.executable, "-m", "vault_pipeline.cli", "db-report", second, "--dagster-home",
                            str(home)], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "| fetch | " in shown.stdout and f"| {first[:8]} |" in shown.stdout and f"| {second[:8]} |" in shown.stdout
    assert "TABLE DATA" in shown.stdout and "FK CONSTRAINT" in shown.stdout

    # The backup held Dagster's own database too (its runs, check history, schedules): it restores and verifies
    # against its manifest in a scratch database.
    manifest = json.loads(ui_stack.cold.get_object(
        Bucket=ui_stack.cold_bucket, Key=next(o["Key"] for o in ui_stack.cold.list_objects_v2(
            Bucket=ui_stack.cold_bucket, Prefix="backups/")["Contents"] if o["Key"].endswith("manifest.json")))[
        "Body"].read())
    assert manifest["databases"]["dagster"]["row_counts"]["public.runs"] > 0
    dagster_restore = ui_stack.api.launch_run("restore_tracking_db", run_config={"ops": {"fetch_backup": {"config": {
        "database": "dagster", "target": "drill", "replace": True, "drop_after": True}}}})
    ui_stack.wait_until("Dagster's database restored",
                        lambda: ui_stack.api.run(dagster_restore)["status"] in ("SUCCESS", "FAILURE"))
    assert ui_stack.api.run(dagster_restore)["status"] == "SUCCESS"
