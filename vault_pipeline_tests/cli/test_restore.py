"""`vault-pipeline restore KEY --to PATH` against the real servers, both cold flavours, through the installed CLI.

The moto server models Deep Archive (GET refused until RestoreObject, then readable); SeaweedFS has no
restore (RestoreObject: MethodNotAllowed) and serves the bytes directly. moto's state manager makes a
restore report `ongoing-request="true"` once (see vault_pipeline_tests/jobs/test_restore_drill.py), so
the command's polling is exercised through a real "still restoring" answer. moto's RestoreObject ignores
VersionId (it restores the latest version), so restoring an earlier version is tested on SeaweedFS only.

What real servers cannot be made to do on demand (bytes that do not match records that agree, a stream
that breaks half-way, a restore that outlasts the timeout) is tested on `Retriever` with a scripted
client: vault_pipeline_tests/retrieval/test_restore.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from vault_pipeline.cli.restore import parse_duration
from vault_pipeline_tests.conftest import REPO, Vault, sql, unique

MiB = 1024 * 1024
COMMAND = [sys.executable, "-m", "vault_pipeline.cli", "restore"]


def restore(vault: Vault, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command in its own process, configured only from the pipeline's environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_S3_", "OVH_S3_"))}
    return subprocess.run([*COMMAND, *args], cwd=REPO, env={**base, **vault.env, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess[str], kind: str = "error") -> str:
    """The error: one line, the last of stderr (progress and notes may come before it), and the only one."""
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith(f"vault-pipeline restore: {kind}: "), result.stderr
    assert sum(line.startswith("vault-pipeline restore:") for line in lines) == 1, result.stderr
    assert not any("Traceback" in line for line in lines), result.stderr
    return lines[-1]


def replicate(vault: Vault, documents: dict[str, bytes]) -> None:
    for key, body in documents.items():
        vault.put(key, body, {"document-type": "invoice"})
    runs = vault.sensor_and_runs()
    assert runs and all(r.success for r in runs)
    rows = vault.store.rows(vault.hot_bucket, list(documents))
    assert len(rows) == len(documents) and {r["status"] for r in rows} == {"replicated"}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".restoring"))


# ---------------------------------------------------------------------------------------------------
# Real servers


def test_restore_verifies_and_writes_the_document(vault: Vault, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if vault.flavour == "moto":
        request.getfixturevalue("slow_moto_restore")
    big, small = f"{unique('restore')}/scan.pdf", f"{unique('restore')}/note.pdf"
    documents = {big: bytes(range(256)) * (6 * MiB // 256) + b"tail", small: b"%PDF-1.7 note"}  # big: multipart
    replicate(vault, documents)
    row = vault.row(big)
    if vault.flavour == "moto":  # the premise: Deep Archive bytes are not readable as they are
        with pytest.raises(ClientError, match="InvalidObjectState"):
            vault.cold.get_object(Bucket=vault.cold_bucket, Key=big, VersionId=row["aws_version_id"])

    target = tmp_path / "scan.pdf"
    result = restore(vault, big, "--to", str(target), "--json", "--poll-seconds", "0.2", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == documents[big]
    assert target.stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == []
    out = json.loads(result.stdout)
    sha = hashlib.sha256(documents[big]).hexdigest()
    assert (out["state"], out["verified"], out["sha256"], out["size"]) == ("restored", True, sha, len(documents[big]))
    assert out["version_id"] == row["aws_version_id"] and out["current_version"] is True
    assert out["expected"]["tracking_db"]["sha256"] == out["expected"]["journal"]["sha256"] == sha
    assert out["expected"]["journal"]["found_via"] == "index" and out["expected"]["journal"]["seq"] >= 1
    assert out["expected"]["object_metadata"]["vault-sha256"] == sha
    assert out["storage_class"] == "DEEP_ARCHIVE" and out["path"] == str(target)
    custody = sql(vault.dsn, "SELECT actor, metadata FROM vault_secure.audit_logs WHERE event_type ="
                  " 'DOCUMENT_RESTORED' AND object_key = %s AND source_bucket = %s", (big, vault.hot_bucket))
    assert len(custody) == 1, custody
    actor, recorded = custody[0]
    assert actor and recorded["sha256"] == sha and recorded["version_id"] == row["aws_version_id"]
    assert recorded["path"] == str(target) and recorded["os_user"] and recorded["host"]
    if vault.flavour == "moto":
        assert (out["restore"], out["tier"]) == ("requested", "Standard")
        assert out["ongoing_answers"] >= 1 and out["checks"] >= 2  # polled through "still restoring"
        assert 'ongoing-request="false"' in out["restore_header"]
        assert "restore: restore requested: tier Standard, kept 7 day(s), expected within 12 h" in result.stderr
        assert "restore: restore complete after" in result.stderr
    else:
        assert out["restore"] == "no_restore_on_server" and "MethodNotAllowed" in result.stderr

    # Plain output: one line on stdout. A directory as destination: the file is named after the key.
    plain = restore(vault, small, "--to", str(tmp_path), "--tier", "bulk", "--poll-seconds", "0.2")
    assert plain.returncode == 0, plain.stderr
    assert (tmp_path / "note.pdf").read_bytes() == documents[small]
    line = plain.stdout.strip()
    assert plain.stdout.count("\n") == 1 and line.startswith(f"restored {small!r} version ")
    assert hashlib.sha256(documents[small]).hexdigest() in line and "journal seq=" in line

    # The destination exists now: never replaced without --force (checked before any restore).
    target.write_bytes(b"precious")
    exists = restore(vault, big, "--to", str(target))
    assert exists.returncode == 2 and "exists: not replaced without --force" in one_error_line(exists)
    assert target.read_bytes() == b"precious"
    forced = restore(vault, big, "--to", str(target), "--force", "--poll-seconds", "0.2")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes() == documents[big] and leftovers(tmp_path) == []
    if vault.flavour == "moto":  # restored above and still readable: no new request
        assert "a restored copy exists already" in forced.stderr and "restore requested" not in forced.stderr


def test_refusals_and_errors_leave_no_file(vault: Vault, tmp_path: Path) -> None:
    tampered, fine = f"{unique('refuse')}/tampered.pdf", f"{unique('refuse')}/fine.pdf"
    replicate(vault, {tampered: b"%PDF tampered", fine: b"%PDF fine"})
    true_sha = hashlib.sha256(b"%PDF tampered").hexdigest()

    # The tracking DB's fixity value no longer matches the journal: refused, both values named, no file.
    sql(vault.dsn, "UPDATE vault_secure.replication_status SET sha256 = repeat('0', 64) WHERE s3_key = %s"
        " RETURNING id", (tampered,))
    refused = restore(vault, tampered, "--to", str(tmp_path / "t.pdf"), "--poll-seconds", "0.2")
    assert refused.returncode == 1 and refused.stdout == ""
    line = one_error_line(refused, "refused")
    assert "0" * 64 in line and true_sha in line and "tracking DB" in line and "journal" in line
    assert list(tmp_path.iterdir()) == []
    as_json = restore(vault, tampered, "--to", str(tmp_path / "t.pdf"), "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["state"] == "refused"
    refusals = sql(vault.dsn, "SELECT metadata FROM vault_secure.audit_logs WHERE event_type = 'RESTORE_REFUSED'"
                   " AND object_key = %s", (tampered,))
    assert len(refusals) == 2 and true_sha in refusals[0][0]["message"]  # the chain of custody has both

    # An unknown key, a version that is not a copy of the key: one line, exit 2.
    unknown = restore(vault, f"{fine}.missing", "--to", str(tmp_path / "u.pdf"))
    assert unknown.returncode == 2 and "is not tracked" in one_error_line(unknown)
    version = restore(vault, fine, "--version", "no-such-version", "--to", str(tmp_path / "v.pdf"))
    assert version.returncode == 2
    assert f"known versions, oldest first: {vault.row(fine)['aws_version_id']}" in one_error_line(version)

    # A key registered but not replicated yet.
    pending = f"{unique('refuse')}/pending.pdf"
    vault.put(pending, b"%PDF pending")
    vault.run_sensor()  # registers it; no run
    not_yet = restore(vault, pending, "--to", str(tmp_path / "p.pdf"))
    assert not_yet.returncode == 2 and "is not replicated yet (status pending)" in one_error_line(not_yet)

    # A destination directory that does not exist; a missing setting.
    nowhere = restore(vault, fine, "--to", str(tmp_path / "missing-dir" / "f.pdf"))
    assert nowhere.returncode == 2 and "is not a directory" in one_error_line(nowhere)
    unset = restore(vault, fine, "--to", str(tmp_path / "f.pdf"), env={"OVH_S3_BUCKET_DOCUMENTS": ""})
    assert unset.returncode == 2 and "OVH_S3_BUCKET_DOCUMENTS not set" in one_error_line(unset)

    # Secrets never printed: a database password, the cold site's secret key.
    dsn = "postgresql://vault:s3cr3t-pw@127.0.0.1:1/vault"
    no_db = restore(vault, fine, "--to", str(tmp_path / "f.pdf"), env={"VAULT_DATABASE_URL": dsn})
    assert no_db.returncode == 2 and "tracking database" in one_error_line(no_db)
    assert "s3cr3t-pw" not in no_db.stderr + no_db.stdout
    if vault.flavour == "seaweedfs":  # the moto server accepts any credentials
        secret = "wrong-secret-key-123"
        denied = restore(vault, fine, "--to", str(tmp_path / "f.pdf"), env={"AWS_S3_SECRET_ACCESS_KEY": secret})
        assert denied.returncode == 2 and "cold site" in one_error_line(denied)
        assert secret not in denied.stderr + denied.stdout
    assert list(tmp_path.iterdir()) == []


def test_odd_keys_and_an_empty_document(vault: Vault, tmp_path: Path) -> None:
    base = unique("odd")
    documents = {
        f"{base}/unicode é 文書 ✓.pdf": "é 文書".encode() * 100,
        f"{base}/space %25 and + plus & ?.pdf": b"%PDF percent plus",
        f"{base}/{'d' * 200}/{'f' * 200}.pdf": b"%PDF long key",  # 410 bytes; SeaweedFS allows 255 a segment
        f"{base}/empty.pdf": b"",
    }
    replicate(vault, documents)
    for number, (key, body) in enumerate(documents.items()):
        target = tmp_path / f"{number}.bin"
        result = restore(vault, key, "--to", str(target), "--json", "--poll-seconds", "0.2")
        assert result.returncode == 0, (key, result.stderr)
        assert target.read_bytes() == body
        out = json.loads(result.stdout)
        assert out["key"] == key and out["size"] == len(body) and out["sha256"] == hashlib.sha256(body).hexdigest()
    # Into a directory: the key's last segment is the file name, whatever characters it has.
    named = restore(vault, f"{base}/unicode é 文書 ✓.pdf", "--to", str(tmp_path), "--poll-seconds", "0.2")
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "unicode é 文書 ✓.pdf").read_bytes() == documents[f"{base}/unicode é 文書 ✓.pdf"]
    assert leftovers(tmp_path) == []

    # A database without the journal's index (rebuilt from the journal, say): the journal is read instead.
    empty = f"{base}/empty.pdf"
    sql(vault.dsn, "DELETE FROM vault_secure.journal_entries WHERE object_key = %s RETURNING id", (empty,))
    scanned = restore(vault, empty, "--to", str(tmp_path / "scanned.bin"), "--json", "--poll-seconds", "0.2")
    assert scanned.returncode == 0, scanned.stderr
    assert "note: no index entry" in scanned.stderr and "read the whole journal" in scanned.stderr
    out = json.loads(scanned.stdout)
    assert out["expected"]["journal"]["found_via"] == "scan" and out["expected"]["journal"]["sha256"] == (
        hashlib.sha256(b"").hexdigest())
    assert (tmp_path / "scanned.bin").read_bytes() == b""


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)  # moto restores only the latest version
def test_an_earlier_version_after_the_source_changed(vault: Vault, tmp_path: Path) -> None:
    key = f"{unique('versions')}/contract.pdf"
    replicate(vault, {key: b"%PDF first version"})
    first = vault.row(key)["aws_version_id"]
    replicate(vault, {key: b"%PDF second version, longer"})
    row = vault.row(key)
    assert row["aws_version_id"] != first and first in row["previous_cold_version_ids"]

    latest = restore(vault, key, "--to", str(tmp_path / "latest.pdf"))
    assert latest.returncode == 0, latest.stderr
    assert (tmp_path / "latest.pdf").read_bytes() == b"%PDF second version, longer"
    earlier = restore(vault, key, "--version", first, "--to", str(tmp_path / "first.pdf"), "--json")
    assert earlier.returncode == 0, earlier.stderr
    assert (tmp_path / "first.pdf").read_bytes() == b"%PDF first version"
    out = json.loads(earlier.stdout)
    assert out["version_id"] == first and out["current_version"] is False
    assert out["expected"]["tracking_db"]["source"].startswith("vault_secure.journal_entries seq=")

    # The hot object changes again and is not replicated yet: the default refuses and names the last copy.
    vault.put(key, b"%PDF third version")
    vault.run_sensor()
    pending = restore(vault, key, "--to", str(tmp_path / "third.pdf"))
    assert pending.returncode == 2
    assert f"pass --version {row['aws_version_id']}" in one_error_line(pending)
    named = restore(vault, key, "--version", row["aws_version_id"], "--to", str(tmp_path / "second.pdf"))
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "second.pdf").read_bytes() == b"%PDF second version, longer"


@pytest.mark.parametrize("cold_flavour", ["moto"], indirect=True)
def test_a_rerun_resumes_a_restore_in_progress(vault: Vault, tmp_path: Path, slow_moto_restore: None) -> None:
    key = f"{unique('resume')}/deed.pdf"
    replicate(vault, {key: b"%PDF deed"})
    target = tmp_path / "deed.pdf"
    first = restore(vault, key, "--to", str(target), "--timeout", "0", "--json")
    assert first.returncode == 3, first.stderr
    line = one_error_line(first, "still restoring")
    assert "still in progress" in line and "rerun the same command to resume waiting" in line
    assert json.loads(first.stdout)["state"] == "still_restoring" and not target.exists()
    assert leftovers(tmp_path) == []

    second = restore(vault, key, "--to", str(target), "--json", "--poll-seconds", "0.2")
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    assert out["restore"] == "resumed" and out["tier"] is None  # not requested again
    assert "a restore requested earlier is in progress: waiting for it (not requested again)" in second.stderr
    assert target.read_bytes() == b"%PDF deed"


@pytest.mark.parametrize("cold_flavour", ["moto"], indirect=True)
def test_live_progress_on_a_terminal(vault: Vault, tmp_path: Path, slow_moto_restore: None) -> None:
    """stderr is a terminal: the live bars (rich) run, and the restore's events still come through."""
    key = f"{unique('tty')}/live.pdf"
    body = os.urandom(3 * MiB)
    replicate(vault, {key: body})
    leader, follower = pty.openpty()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_S3_", "OVH_S3_"))}
    try:
        process = subprocess.Popen([*COMMAND, key, "--to", str(tmp_path / "live.pdf"), "--poll-seconds", "0.3"],
                                   cwd=REPO, env={**base, **vault.env, "COLUMNS": "160"}, stdout=subprocess.PIPE,
                                   stderr=follower, text=True)
        os.close(follower)
        screen = b""
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not data:
                break
            screen += data
        out = process.communicate(timeout=120)[0]
    finally:
        os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert process.returncode == 0, text
    assert (tmp_path / "live.pdf").read_bytes() == body and out.startswith(f"restored {key!r}")
    assert "restore requested: tier Standard" in text and "restore complete after" in text
    assert "reading" in text and "3.0 MiB" in text


# Runs COMMAND (python -m MODULE ARGS, or python SCRIPT ARGS) in this interpreter and writes its peak resident
# set (VmHWM: this process's own memory; ru_maxrss would include the pytest process's pages, inherited
# through vfork) to the file named by argv[1].
PEAK_RSS_WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open('/proc/self/status') as status, open(out, 'w') as sink:
        sink.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))
atexit.register(peak)
if sys.argv[1] == '-m':
    module = sys.argv[2]
    sys.argv[:3] = ['vault-pipeline']
    runpy.run_module(module, run_name='__main__')
else:
    script = sys.argv[1]
    sys.argv[:2] = [script]
    runpy.run_path(script, run_name='__main__')
"""


@pytest.mark.slow
@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_memory_does_not_grow_with_the_object(vault: Vault, tmp_path: Path) -> None:
    """Peak RSS of the command for a 96 MiB document against a tiny one: the difference stays small."""
    big, tiny = f"{unique('rss')}/big.bin", f"{unique('rss')}/tiny.bin"
    replicate(vault, {big: os.urandom(96 * MiB), tiny: b"tiny"})
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_S3_", "OVH_S3_"))}

    def peak_rss_kib(key: str, target: Path) -> int:
        report = tmp_path / f"{target.name}.rss"
        result = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, str(report), *COMMAND[1:], key, "--to",
                                 str(target)], cwd=REPO, env={**base, **vault.env}, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        return int(report.read_text())

    small_rss = peak_rss_kib(tiny, tmp_path / "tiny.bin")
    big_rss = peak_rss_kib(big, tmp_path / "big.bin")
    print(f"peak RSS: {small_rss / 1024:.1f} MiB for 4 bytes, {big_rss / 1024:.1f} MiB for 96 MiB")
    assert (tmp_path / "big.bin").stat().st_size == 96 * MiB
    assert big_rss - small_rss < 24 * 1024, (small_rss, big_rss)  # KiB: far below the object's 96 MiB


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "12h", "2d", "0", "none")] == [
        90, 90, 1800, 43200, 172800, 0, None]
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")
