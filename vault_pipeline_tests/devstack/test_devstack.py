"""The embedded stack behind `make run` and the test fixtures, against the real servers: loopback only,
a locked cold bucket, data that survives restarts and crashes, servers that die with their parent,
settings printable from another process, a runner that stops cleanly and finds its data again."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from botocore.exceptions import ClientError

from vault_pipeline.devstack.buckets import ensure_bucket
from vault_pipeline.devstack.motosite import MotoSite
from vault_pipeline.devstack.ports import (
    COLD_S3_PORT,
    HOT_S3_PORT,
    LOOPBACK,
    PORT_RANGE_ENV,
    POSTGRES_PORT,
    SITE_PORT_BLOCK,
    find_free_port_block,
    port_is_free,
    worker_port_range,
)
from vault_pipeline.devstack.postgres import EmbeddedPostgres
from vault_pipeline.devstack.process import DevStackError, start_process, stop_process
from vault_pipeline.devstack.seaweed import SeaweedSite
from vault_pipeline.devstack.site import s3_client
from vault_pipeline.devstack.stack import DevStack, export_lines

COLD = "documents-cold"
HOT = "documents-hot"


def free_ports() -> dict[str, int]:
    return {"pg_port": find_free_port_block(1), "hot_port": find_free_port_block(),
            "cold_port": find_free_port_block(), "sftp_port": find_free_port_block(1)}


def listeners(pid: int) -> set[tuple[str, int]]:
    connections = psutil.Process(pid).net_connections(kind="inet")
    return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def locked_put(client: Any, key: str, body: bytes = b"%PDF-1.7 locked") -> str:
    return client.put_object(Bucket=COLD, Key=key, Body=body, ChecksumAlgorithm="SHA256",
                             ObjectLockMode="COMPLIANCE",
                             ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))["VersionId"]


def shell_env(script: str, names: list[str]) -> dict[str, str]:
    """Evaluate `script` in a real bash and read the variables back (NUL-separated: any value works)."""
    printer = "\n".join(f'printf "%s\\0" "${name}"' for name in names)
    out = subprocess.run(["bash", "-c", f"{script}\n{printer}"], capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.split("\0")[:-1], strict=True))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(tmp_path_factory.mktemp("stack") / ".vault", **free_ports()) as running:
        yield running


# --- one running stack ---------------------------------------------------------------------------------

def test_cold_bucket_is_versioned_with_object_lock_and_hot_bucket_is_not(stack: DevStack) -> None:
    cold = stack.cold.client()
    assert cold.get_bucket_versioning(Bucket=COLD)["Status"] == "Enabled"
    assert cold.get_object_lock_configuration(Bucket=COLD)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    with pytest.raises(ClientError, match="ObjectLockConfigurationNotFound"):
        stack.hot.client().get_object_lock_configuration(Bucket=HOT)


def test_a_compliance_locked_version_cannot_be_deleted_nor_its_retention_shortened(stack: DevStack) -> None:
    cold = stack.cold.client()
    version = locked_put(cold, "locked.pdf")
    with pytest.raises(ClientError, match="AccessDenied"):
        cold.delete_object(Bucket=COLD, Key="locked.pdf", VersionId=version)
    with pytest.raises(ClientError):
        cold.put_object_retention(Bucket=COLD, Key="locked.pdf", VersionId=version,
                                  Retention={"Mode": "COMPLIANCE", "RetainUntilDate": dt.datetime.now(dt.UTC)})
    assert cold.head_object(Bucket=COLD, Key="locked.pdf", VersionId=version)["ObjectLockMode"] == "COMPLIANCE"


def test_every_server_listens_on_loopback_only_and_each_site_inside_its_port_block(stack: DevStack) -> None:
    for site in (stack.hot, stack.cold):
        assert isinstance(site, SeaweedSite) and site.pid is not None
        found = listeners(site.pid)
        assert {ip for ip, _ in found} == {LOOPBACK}, found
        assert {port for _, port in found} <= set(range(site.s3_port, site.s3_port + SITE_PORT_BLOCK)), found
        assert {site.ports.s3, site.ports.master, site.ports.filer, site.ports.volume} <= {p for _, p in found}
    assert stack.postgres.pid is not None
    assert listeners(stack.postgres.pid) == {(LOOPBACK, stack.postgres.port)}


def test_ensure_bucket_is_idempotent_and_refuses_a_cold_bucket_without_lock(stack: DevStack) -> None:
    cold = stack.cold.client()
    ensure_bucket(cold, COLD, object_lock=True)
    cold.create_bucket(Bucket="plain-bucket")
    with pytest.raises(DevStackError, match="'plain-bucket'"):
        ensure_bucket(cold, "plain-bucket", object_lock=True)


def test_export_lines_round_trip_through_a_shell(stack: DevStack) -> None:
    env = stack.env()
    assert list(env) == [
        "OVH_S3_ENDPOINT", "OVH_S3_REGION", "OVH_S3_ACCESS_KEY_ID", "OVH_S3_SECRET_ACCESS_KEY",
        "OVH_S3_BUCKET_DOCUMENTS", "AWS_S3_ENDPOINT", "AWS_S3_REGION", "AWS_S3_ACCESS_KEY_ID",
        "AWS_S3_SECRET_ACCESS_KEY", "AWS_S3_BUCKET_DOCUMENTS_COLD", "VAULT_DATABASE_URL", "VAULT_DAGSTER_DATABASE_URL",
        "VAULT_REBUILD_DATABASE_URL", "VAULT_PG_BIN_DIR", "VAULT_CHANGE_FEEDS", "VAULT_SEAWEEDFS_FILER",
        "VAULT_JOURNAL_SIGNING_KEY", "VAULT_JOURNAL_PUBLIC_KEYS", "SFTP_HOST", "SFTP_PORT", "SFTP_USERNAME",
        "SFTP_PRIVATE_KEY_FILE", "SFTP_KNOWN_HOSTS", "SFTP_REMOTE_DIR"]
    assert (Path(env["VAULT_PG_BIN_DIR"]) / "pg_dump").is_file()  # the backups' pg_dump, the server's version
    assert (env["VAULT_CHANGE_FEEDS"], env["VAULT_SEAWEEDFS_FILER"]) == (
        "seaweedfs-filer", f"127.0.0.1:{stack.hot.ports.filer}.{stack.hot.ports.filer_grpc}")
    assert shell_env(stack.export_lines(), list(env)) == env
    tricky = {"A": "postgresql://u:p'w d@h:1/db", "B": "a$b`c\"d\\e", "C": "", "D": "line\nbreak"}
    assert shell_env(export_lines(tricky), list(tricky)) == tricky
    assert all(line.startswith(("export ", "#")) for line in stack.export_lines().splitlines())


def test_another_process_prints_the_running_stacks_env(stack: DevStack, tmp_path: Path) -> None:
    code = "import sys; from pathlib import Path; from vault_pipeline.devstack.runner import print_env; " \
           "sys.exit(print_env(Path(sys.argv[1])))"
    result = subprocess.run([sys.executable, "-c", code, str(stack.root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == stack.export_lines()
    assert shell_env(result.stdout, list(stack.env())) == stack.env()

    missing = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "no running embedded stack under" in missing.stderr


def test_a_second_stack_on_a_running_root_fails_and_leaves_the_first_intact(stack: DevStack) -> None:
    with pytest.raises(DevStackError, match="already runs"):
        DevStack(stack.root, **free_ports()).start()
    assert stack.is_running and DevStack.load_env(stack.root) == stack.env()


# --- restarts, crashes, failures -------------------------------------------------------------------------

def test_restart_sigkill_and_a_stale_postmaster_pid_keep_the_data(tmp_path: Path) -> None:
    root = tmp_path / ".vault"
    stack = DevStack(root, **free_ports())
    sleeper: subprocess.Popen[bytes] | None = None
    try:
        stack.start()
        locked_put(stack.cold.client(), "kept.pdf")
        stack.hot.client().put_object(Bucket=HOT, Key="hot.pdf", Body=b"hot")
        with psycopg.connect(stack.env()["VAULT_DATABASE_URL"], autocommit=True) as conn:
            conn.execute("CREATE TABLE survives (x int)")

        def assert_data_is_there() -> None:
            assert stack.is_running and DevStack.load_env(root) == stack.env()
            assert [v["Key"] for v in stack.cold.client().list_object_versions(Bucket=COLD)["Versions"]] == ["kept.pdf"]
            assert stack.hot.client().get_object(Bucket=HOT, Key="hot.pdf")["Body"].read() == b"hot"
            with psycopg.connect(stack.env()["VAULT_DATABASE_URL"]) as conn:
                assert conn.execute("SELECT count(*) FROM survives").fetchone() == (0,)

        stack.stop()
        assert not (root / "stack.json").exists()
        stack.start()
        assert_data_is_there()

        # A crash: the servers are killed without any chance to clean up.
        postmaster, weed = stack.postgres.pid, stack.hot.pid
        assert postmaster is not None and weed is not None
        os.kill(postmaster, signal.SIGKILL)
        os.kill(weed, signal.SIGKILL)
        wait_for(lambda: not stack.postgres.is_running and not stack.hot.is_running, 10, "the kills")
        pid_file = root / "postgres" / "postmaster.pid"
        assert pid_file.exists()  # stale: left by the killed postmaster
        # Worst case for PostgreSQL's own check: the recorded pid now belongs to another live process of
        # the same user (pid reuse), which makes a bare postmaster refuse to start.
        sleeper = subprocess.Popen(["sleep", "60"], user="pgserver" if os.geteuid() == 0 else None)
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(sleeper.pid), *lines[1:]]) + "\n")
        stack.stop()
        stack.start()
        assert_data_is_there()
        assert sleeper.poll() is None  # the unrelated process was left alone
    finally:
        stack.stop()
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()


def test_the_moto_cold_flavour_models_deep_archive(tmp_path: Path) -> None:
    with DevStack(tmp_path, cold_flavour="moto", **free_ports()) as stack:
        assert isinstance(stack.cold, MotoSite)
        cold = stack.cold.client()
        assert cold.get_bucket_versioning(Bucket=COLD)["Status"] == "Enabled"
        cold.put_object(Bucket=COLD, Key="deep.pdf", Body=b"x", StorageClass="DEEP_ARCHIVE")
        with pytest.raises(ClientError, match="InvalidObjectState"):
            cold.get_object(Bucket=COLD, Key="deep.pdf")
        assert stack.env()["AWS_S3_ENDPOINT"] == stack.cold.endpoint_url


def test_a_server_that_cannot_start_raises_with_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    import socket

    base = find_free_port_block()
    with socket.socket() as blocker:
        blocker.bind((LOOPBACK, base + 3))  # the filer's port, taken by someone else
        blocker.listen()
        site = SeaweedSite("blocked", tmp_path / "weed", base, "k", "s")
        started = time.monotonic()
        with pytest.raises(DevStackError, match=rf"(?s)exited with code.*{base + 3}"):
            site.start(timeout=30)
        assert time.monotonic() - started < 15 and site.process is None

        postgres = EmbeddedPostgres(tmp_path / "pg", blocker.getsockname()[1])
        with pytest.raises(DevStackError, match=r"(?s)exited with code.*could not"):
            postgres.start(timeout=30)
        assert postgres.process is None


def test_servers_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from vault_pipeline.devstack.motosite import MotoSite
        from vault_pipeline.devstack.postgres import EmbeddedPostgres
        from vault_pipeline.devstack.seaweed import SeaweedSite
        root = Path({str(tmp_path)!r})
        servers = [EmbeddedPostgres(root / "pg", {find_free_port_block(1)}).start(),
                   SeaweedSite("s", root / "weed", {find_free_port_block()}, "k", "s").start(),
                   MotoSite("m", {find_free_port_block(1)}, "k", "s", log_path=root / "moto.log").start()]
        print(json.dumps([s.pid for s in servers]), flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 3 and not any(gone(pid) for pid in pids)
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        wait_for(lambda: all(gone(pid) for pid in pids), 20, f"servers {pids} to exit")
    finally:
        parent.kill()
        parent.wait()
        for pid in pids:
            if not gone(pid):
                os.killpg(pid, signal.SIGKILL)


def test_the_runner_stops_cleanly_on_ctrl_c_or_sigterm_and_a_second_run_finds_the_data(tmp_path: Path) -> None:
    root = tmp_path / ".vault"
    ports = free_ports()
    code = ("import sys; from pathlib import Path; from vault_pipeline.devstack.runner import run_stack_forever; "
            f"sys.exit(run_stack_forever(Path({str(root)!r}), dagster=False, pg_port={ports['pg_port']}, "
            f"hot_port={ports['hot_port']}, cold_port={ports['cold_port']}, sftp_port={ports['sftp_port']}))")

    def run(then: Callable[[dict[str, str]], None], stop_signal: int) -> None:
        runner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        try:
            wait_for(lambda: (root / "stack.json").exists() or runner.poll() is not None, 60, "stack.json")
            state = DevStack.load_state(root)
            assert state["pid"] == runner.pid
            then(state["env"])
            runner.send_signal(stop_signal)
            output = runner.communicate(timeout=60)[0]
        finally:
            runner.kill()
            runner.communicate()
        assert runner.returncode == 0, output
        assert env["OVH_S3_ENDPOINT"] in output and env["VAULT_DATABASE_URL"] in output and "stopped." in output
        assert not (root / "stack.json").exists()
        assert all(gone(pid) for pid in state["servers"].values())

    def first(env: dict[str, str]) -> None:
        with psycopg.connect(env["VAULT_DATABASE_URL"], autocommit=True) as conn:
            conn.execute("CREATE TABLE from_first_run (x int)")
        client = s3_client(env["OVH_S3_ENDPOINT"], env["OVH_S3_ACCESS_KEY_ID"], env["OVH_S3_SECRET_ACCESS_KEY"])
        client.put_object(Bucket=env["OVH_S3_BUCKET_DOCUMENTS"], Key="first.pdf", Body=b"1")

    def second(env: dict[str, str]) -> None:
        with psycopg.connect(env["VAULT_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT count(*) FROM from_first_run").fetchone() == (0,)
        client = s3_client(env["OVH_S3_ENDPOINT"], env["OVH_S3_ACCESS_KEY_ID"], env["OVH_S3_SECRET_ACCESS_KEY"])
        assert client.get_object(Bucket=env["OVH_S3_BUCKET_DOCUMENTS"], Key="first.pdf")["Body"].read() == b"1"

    env: dict[str, str] = {}
    run(lambda e: (env.update(e), first(e)), signal.SIGINT)
    run(second, signal.SIGTERM)


def test_free_port_blocks_avoid_the_fixed_ports() -> None:
    for _ in range(20):
        base = find_free_port_block()
        block = range(base, base + SITE_PORT_BLOCK)
        assert all(port_is_free(port) for port in block)
        assert POSTGRES_PORT not in block
        assert not set(block) & set(range(HOT_S3_PORT, HOT_S3_PORT + SITE_PORT_BLOCK))
        assert not set(block) & set(range(COLD_S3_PORT, COLD_S3_PORT + SITE_PORT_BLOCK))


def test_blocks_picked_back_to_back_never_overlap_before_any_server_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stack picks its PostgreSQL, hot, cold and SFTP ports before starting any server; a narrow range
    # makes an overlap certain without the in-process reservation (it once failed CI: "Address already
    # in use" on the cold site's port).
    # (Below 10000: no test worker's slice, so nothing else in this suite binds there.)
    monkeypatch.setenv(PORT_RANGE_ENV, "7000-7400")
    bases = [find_free_port_block() for _ in range(8)]
    ports = [port for base in bases for port in range(base, base + SITE_PORT_BLOCK)]
    assert len(ports) == len(set(ports)) and all(7000 <= port < 7400 for port in ports)
    monkeypatch.setenv(PORT_RANGE_ENV, "7500-7521")  # room for exactly one block
    assert find_free_port_block() == 7500
    with pytest.raises(DevStackError, match="no block of 20 free ports found between 7500 and 7521"):
        find_free_port_block()


def test_each_test_worker_searches_its_own_slice_of_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    slices = [tuple(map(int, worker_port_range(i, 3).split("-"))) for i in range(3)]
    assert slices[0][0] == 10000 and slices[0][1] == slices[1][0] and slices[1][1] == slices[2][0]
    assert all(high - low > 50 * SITE_PORT_BLOCK for low, high in slices)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the harness set this process's slice
        low, high = map(int, os.environ[PORT_RANGE_ENV].split("-"))
        assert low <= find_free_port_block() < high
    monkeypatch.setenv(PORT_RANGE_ENV, "9000")
    with pytest.raises(DevStackError, match="not a port range LOW-HIGH"):
        find_free_port_block()


def test_the_stack_has_a_secondary_database_and_a_stable_seal_signing_key(stack: DevStack) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    env = stack.env()
    with psycopg.connect(env["VAULT_REBUILD_DATABASE_URL"]) as conn:  # rebuild_tracking_db's target
        assert conn.execute("SELECT current_database()").fetchone() == ("vault_secondary",)
    key_file = stack.root / "journal-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    seed = base64.b64decode(env["VAULT_JOURNAL_SIGNING_KEY"])
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert env["VAULT_JOURNAL_PUBLIC_KEYS"] == base64.b64encode(public).decode()
    assert stack.env()["VAULT_JOURNAL_SIGNING_KEY"] == env["VAULT_JOURNAL_SIGNING_KEY"]  # made once, kept


# A leader that exits on SIGINT at once, and a child in its group that outlives it: the child ignores
# SIGINT and sleeps `child_grace` seconds after it (dagster dev's run processes finish their own shutdown
# after dagster dev has exited).
GROUP_SCRIPT = textwrap.dedent("""
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, sys, time\\n"
        "signal.signal(signal.SIGINT, lambda *_: (time.sleep(float(sys.argv[1])), sys.exit(0)))\\n"
        "print('ready', flush=True)\\n"
        "time.sleep(600)\\n", sys.argv[1]], stdout=sys.stdout)
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    time.sleep(600)
""")


@pytest.mark.parametrize(("child_grace", "graceful"), [(0.5, True), (60, False)])
def test_a_group_stop_waits_for_the_members_that_outlive_the_leader_then_kills_them(
        tmp_path: Path, child_grace: float, graceful: bool) -> None:
    log_path = tmp_path / "group.log"
    leader = start_process([sys.executable, "-c", GROUP_SCRIPT, str(child_grace)], log_path=log_path)
    wait_for(lambda: "ready" in log_path.read_text(), 15, "the child to start")
    members = [p for p in psutil.process_iter() if _pgid(p.pid) == leader.pid]
    assert len(members) == 2

    started = time.monotonic()
    assert stop_process(leader, stop_signal=signal.SIGINT, timeout=3) is graceful
    elapsed = time.monotonic() - started
    assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # graceful: the stop waited for the child's half-second; otherwise it gave up at the 3 s timeout
    assert (0.4 < elapsed < 3) if graceful else (2.9 < elapsed < 10)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
