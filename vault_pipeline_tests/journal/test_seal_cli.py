"""`vault-pipeline journal verify | prove | check-proof | keygen`: exit codes and output, on the real servers."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vault_pipeline.cli.main import main
from vault_pipeline.journal.chain import canonical_json
from vault_pipeline.journal.seal import seal_through
from vault_pipeline.journal.signing import SealSigner
from vault_pipeline.journal.writer import JournalWriter
from vault_pipeline_tests.conftest import REPO, Vault
from vault_pipeline_tests.journal.sealkit import at, journal_at, utc_today


def sealed_vault(vault: Vault) -> tuple[SealSigner, dt.date]:
    """Two days journaled and sealed, the vault configured with the key pair."""
    signer = SealSigner.generate()
    vault.configure(VAULT_JOURNAL_SIGNING_KEY=signer.seed_b64(), VAULT_JOURNAL_PUBLIC_KEYS=signer.public_key_b64)
    d2, d1 = utc_today() - dt.timedelta(days=2), utc_today() - dt.timedelta(days=1)
    journal_at(vault, at(d2, 8), ["cli/a.pdf", "cli/b.pdf", "cli/c.pdf"])
    journal_at(vault, at(d1, 8), ["cli/b.pdf", "cli/d.pdf"])  # b copied again (a new version)
    store = vault.segments()
    seal_through(d1, dsn=vault.dsn, store=store, signer=signer, writer=JournalWriter(vault.dsn, store))
    return signer, d1


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_journal_commands_exit_codes_and_output(vault: Vault, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, d1 = sealed_vault(vault)

    assert main(["journal", "verify"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "journal OK: 5 entries in 2 segments (head seq 5), 2 seals" in err

    assert main(["journal", "prove", "cli/b.pdf"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert latest["entry"]["seq"] == 4 and latest["version_id"] == "v-cli/b.pdf"
    assert latest["seal"]["day"] == d1.isoformat()
    assert main(["journal", "prove", "cli/b.pdf", "--version", "v-cli/b.pdf", "--out", str(tmp_path / "p.json")]) == 0
    assert "written to" in capsys.readouterr().err
    written = json.loads((tmp_path / "p.json").read_text())
    assert written["entry"]["seq"] == 4  # both copies have this version id: the latest is proved

    assert main(["journal", "check-proof", str(tmp_path / "p.json")]) == 0
    assert capsys.readouterr().out.startswith("proof OK: entry seq=4")
    node = written["audit_path"][0]
    doctored = {**written, "audit_path": [node[:-1] + ("0" if node[-1] != "0" else "1"), *written["audit_path"][1:]]}
    (tmp_path / "bad.json").write_text(json.dumps(doctored))
    assert main(["journal", "check-proof", str(tmp_path / "bad.json")]) == 1
    assert "inclusion:" in capsys.readouterr().out

    # Errors: one line on stderr, exit status 2.
    assert main(["journal", "prove", "cli/never.pdf"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "no copy of 'cli/never.pdf'" in err
    assert main(["journal", "prove", "cli/a.pdf", "--version", "nope"]) == 2
    assert "journaled versions: v-cli/a.pdf" in capsys.readouterr().err

    # Tampering: a new version of the second segment; verify names the segment and the entry, exit 1.
    segment = "journal/segments/00000000000000000004.jsonl"
    body = vault.cold.get_object(Bucket=vault.cold_bucket, Key=segment)["Body"].read()
    first, rest = body.split(b"\n", 1)
    entry = json.loads(first)
    entry["sha256"] = "f" * 64
    vault.cold.put_object(Bucket=vault.cold_bucket, Key=segment, Body=canonical_json(entry) + b"\n" + rest)
    assert main(["journal", "verify"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert f"segment {segment}: 2 versions" in lines[0]
    assert any(line.startswith(f"entry seq=4 in {segment}: entry_hash") for line in lines), lines
    assert any(line.startswith(f"seal journal/seals/{d1.isoformat()}.json: Merkle root") for line in lines), lines
    assert "journal NOT OK" in err
    assert main(["journal", "prove", "cli/d.pdf"]) == 2
    assert f"{segment} has 2 versions" in capsys.readouterr().err


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_the_installed_command_in_its_own_process(vault: Vault, tmp_path: Path) -> None:
    signer, _ = sealed_vault(vault)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_S3_", "OVH_S3_"))}
    env.update(vault.env)
    env.pop("VAULT_JOURNAL_PUBLIC_KEYS")
    command = [sys.executable, "-m", "vault_pipeline.cli", "journal"]

    clean = subprocess.run([*command, "verify"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "not configured" in clean.stderr  # VAULT_JOURNAL_PUBLIC_KEYS absent from this environment
    proved = subprocess.run([*command, "prove", "cli/c.pdf"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert proved.returncode == 0 and json.loads(proved.stdout)["key"] == "cli/c.pdf"
    assert signer.seed_b64() not in proved.stdout + proved.stderr

    broken = {**env, "AWS_S3_ACCESS_KEY_ID": "wrong", "VAULT_JOURNAL_PUBLIC_KEYS": signer.public_key_b64}
    failed = subprocess.run([*command, "verify"], cwd=REPO, env=broken, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.startswith("vault-pipeline journal verify: error: cold site:")
    assert failed.stderr.count("\n") == 1
    assert env["AWS_S3_SECRET_ACCESS_KEY"] not in failed.stderr

    unset = {k: v for k, v in env.items() if k != "AWS_S3_BUCKET_DOCUMENTS_COLD"}
    missing = subprocess.run([*command, "verify"], cwd=REPO, env=unset, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "AWS_S3_BUCKET_DOCUMENTS_COLD not set" in missing.stderr
