"""The systemd units of deploy/systemd/ (plain VMs, docs/deployment.md) and their example environment files.

Each unit runs a program this project installs, with options that program accepts (its --help, from the venv),
as the dedicated user, secrets only from its root-owned EnvironmentFile, hardened, restarted on failure, stopped
with a signal and a timeout that fit the role (Celery's warm shutdown for workers). Every variable of the
example environment files is documented in README.md, "Configuration". Where systemd-analyze exists, the units
are verified by systemd itself (with the venv's programs in place of /opt/vault-pipeline/venv).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
VENV_BIN = REPO / ".venv" / "bin"
INSTALLED_BIN = "/opt/vault-pipeline/venv/bin/"
PROGRAMS = {"vault-pipeline", "dagster-daemon", "dagster-webserver", "dagster"}
# The cluster's variables (issue 15), documented by the lead in README.md alongside this work.
CLUSTER_VARIABLES = {"VAULT_CELERY_BROKER_URL", "VAULT_CELERY_RESULT_BACKEND", "VAULT_CELERY_QUEUE",
                     "VAULT_CODE_VERSION", "VAULT_SHARD_MIN_OBJECTS", "VAULT_MAX_SHARDS"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|SIGNING_KEY|DATABASE_URL|BROKER_URL|RESULT_BACKEND|WEBHOOK")
ROLE_OF = {"vault-dagster-daemon.service": "daemon", "vault-dagster-webserver.service": "webserver",
           "vault-dagster-code-server.service": "code-server", "vault-celery-worker@.service": "worker"}
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "", "UMask": "0077"}


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}}: systemd keys may repeat (EnvironmentFile, Environment), which
    configparser would refuse or merge."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        assert section is not None and "=" in line, f"{path.name}: cannot read {raw!r}"
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert values, f"[{section}] {key} missing"
    return values[-1]


def unit_files() -> list[Path]:
    files = sorted(UNITS.glob("*.service"))
    assert {f.name for f in files} == set(ROLE_OF), [f.name for f in files]
    return files


def seconds(value: str) -> float:
    """A systemd time span (60, 30s, 2h, 1min 30s) in seconds."""
    total, units = 0.0, {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600}
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", value):
        total += int(number) * units[unit]
    return total


@pytest.mark.parametrize("name", sorted(ROLE_OF))
def test_unit_runs_an_installed_program_as_the_service_user(name):
    unit = read_unit(UNITS / name)
    service = unit["Service"]
    assert one(unit, "Service", "User") == "vault" and one(unit, "Service", "Group") == "vault"
    command = shlex.split(one(unit, "Service", "ExecStart"))
    assert command[0].startswith(INSTALLED_BIN), command[0]
    program = command[0].removeprefix(INSTALLED_BIN)
    assert program in PROGRAMS, program
    scripts = {entry.name for entry in entry_points(group="console_scripts")}
    assert program in scripts and (VENV_BIN / program).exists(), f"{program} is not an entry point of the venv"
    # Secrets and settings come from the role's root-owned file; the unit itself holds none.
    assert f"/etc/vault-pipeline/{ROLE_OF[name]}.env" in service["EnvironmentFile"]
    for assignment in service.get("Environment", []):
        variable = assignment.partition("=")[0]
        assert not SECRET_NAME.search(variable), f"{name}: {variable} belongs in the EnvironmentFile"
    for key, value in HARDENING.items():
        assert one(unit, "Service", key) == value, (key, service.get(key))
    assert "/var/lib/vault-pipeline" in one(unit, "Service", "ReadWritePaths").split()
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_webserver_listens_on_loopback_only():
    command = shlex.split(one(read_unit(UNITS / "vault-dagster-webserver.service"), "Service", "ExecStart"))
    assert command[command.index("-h") + 1] == "127.0.0.1", command
    code_server = shlex.split(one(read_unit(UNITS / "vault-dagster-code-server.service"), "Service", "ExecStart"))
    assert code_server[code_server.index("-h") + 1] == "127.0.0.1", code_server  # gRPC has no authentication


def test_worker_instances_have_their_own_spool_and_a_warm_shutdown():
    unit = read_unit(UNITS / "vault-celery-worker@.service")
    assert "VAULT_SPOOL_DIR=/var/lib/vault-pipeline/spool/%i" in unit["Service"]["Environment"]
    assert "vault-pipeline/spool/%i" in one(unit, "Service", "StateDirectory").split()
    command = shlex.split(one(unit, "Service", "ExecStart"))
    assert command[1] == "worker" and "%i" in command[command.index("--name") + 1]
    assert "%h" not in one(unit, "Service", "ExecStart"), "%h is systemd's home directory, not the host name"
    assert one(unit, "Service", "KillMode") == "mixed"  # SIGTERM to Celery's main process: a warm shutdown
    assert seconds(one(unit, "Service", "TimeoutStopSec")) >= 600, "a warm shutdown waits for running runs"
    for name in ("vault-dagster-daemon.service", "vault-dagster-webserver.service",
                 "vault-dagster-code-server.service"):
        assert 10 <= seconds(one(read_unit(UNITS / name), "Service", "TimeoutStopSec")) <= 300, name


def help_of(command: list[str]) -> str:
    answer = subprocess.run([str(VENV_BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True,
                            timeout=120)
    assert answer.returncode == 0, answer.stderr[-2000:]
    return answer.stdout


def test_each_command_line_is_accepted_by_its_program():
    """Every option of each ExecStart appears in its program's --help (an option renamed upstream fails here)."""
    for path in unit_files():
        command = shlex.split(one(read_unit(path), "Service", "ExecStart"))
        program = command[0].removeprefix(INSTALLED_BIN)
        words = command[1:]
        subcommand = [w for w in words[:2] if not w.startswith("-")]
        text = help_of([program, *subcommand])
        for option in (w for w in words if w.startswith("-")):
            assert re.search(rf"(^|[\s,]){re.escape(option)}([\s,=]|$)", text, re.M), f"{path.name}: {option}"


def env_example_variables(path: Path) -> set[str]:
    """The variables an example file sets or shows commented (`# NAME=value`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), re.M))


def documented_variables() -> set[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Z][A-Z0-9_]*)`", section))


def test_example_env_files_name_only_documented_variables():
    documented = documented_variables() | CLUSTER_VARIABLES
    examples = sorted(UNITS.glob("*.env.example"))
    assert {p.name.removesuffix(".env.example") for p in examples} == set(ROLE_OF.values())
    for path in examples:
        unknown = env_example_variables(path) - documented
        assert not unknown, f"{path.name}: {sorted(unknown)} not in README.md, 'Configuration'"


def test_roles_get_what_they_need_and_no_more():
    variables = {p.name.removesuffix(".env.example"): env_example_variables(p) for p in UNITS.glob("*.env.example")}
    instance = {"DAGSTER_HOME", "VAULT_DAGSTER_DATABASE_URL", "VAULT_CELERY_BROKER_URL",
                "VAULT_CELERY_RESULT_BACKEND", "VAULT_CODE_VERSION"}
    pipeline = {"OVH_S3_ENDPOINT", "OVH_S3_BUCKET_DOCUMENTS", "AWS_S3_ENDPOINT", "AWS_S3_BUCKET_DOCUMENTS_COLD",
                "VAULT_DATABASE_URL", "OVH_S3_SECRET_ACCESS_KEY", "AWS_S3_SECRET_ACCESS_KEY",
                "VAULT_JOURNAL_SIGNING_KEY"}
    for role in ("daemon", "webserver", "code-server", "worker"):
        assert instance <= variables[role], (role, instance - variables[role])
    for role in ("code-server", "worker"):
        assert pipeline <= variables[role], (role, pipeline - variables[role])
    for role in ("daemon", "webserver"):  # they evaluate no pipeline code: no S3 key, no tracking database
        assert not variables[role] & pipeline, (role, variables[role] & pipeline)
    assert variables["code-server"] == variables["worker"], "a run and a sensor see the same configuration"


def test_systemd_verifies_the_units(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here; the units are checked by the tests above only")
    for path in unit_files():
        text = path.read_text().replace(INSTALLED_BIN, f"{VENV_BIN}/")
        (tmp_path / path.name).write_text(text)
    (tmp_path / "vault-celery-worker@w1.service").write_text((tmp_path / "vault-celery-worker@.service").read_text())
    names = [p.name for p in unit_files() if "@" not in p.name] + ["vault-celery-worker@w1.service"]
    answer = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    ours = [line for line in (answer.stdout + answer.stderr).splitlines()
            if any(name.split("@")[0] in line for name in names)]
    assert answer.returncode == 0 and not ours, answer.stdout + answer.stderr
    # And it would say so: a misspelt directive is reported.
    (tmp_path / "broken.service").write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    answer = subprocess.run(["systemd-analyze", "verify", "--man=no", "broken.service"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert "ProtectSytem" in answer.stdout + answer.stderr
