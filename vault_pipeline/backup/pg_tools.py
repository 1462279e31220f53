"""Running PostgreSQL's client programs (pg_dump, pg_restore, psql) without leaking the DSN's password.

The password never goes on a command line (any user sees those in `ps`) nor into a message: the program gets a
password-free conninfo as `--dbname` and the password as PGPASSWORD in its environment (`libpq_env`). Output is
read line by line as it arrives, each line stamped with time.monotonic(), so a caller can time what the program
reports (pg_restore -v names each item it starts and finishes); only the last lines are kept, for the error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BIN_DIR_SETTING = "VAULT_PG_BIN_DIR"
TAIL_LINES = 50
TAIL_LINE_CHARS = 500  # "Command was: ..." can hold a whole function body

# libpq reads these from the environment; an inherited one would silently change where a program connects.
_INHERITED_LIBPQ_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE",
                         "PGOPTIONS", "PGAPPNAME")

OnLine = Callable[[str, float], None]


class PgToolError(RuntimeError):
    """A PostgreSQL program is missing, too old, or failed. The message never holds a password."""


def pg_binary(name: str, bin_dir: str | None = None) -> str:
    """The path of `name` (pg_dump, pg_restore, psql): in `bin_dir` when given (VAULT_PG_BIN_DIR; the dev stack
    sets it to the binaries pgserver ships), else on PATH."""
    if bin_dir:
        candidate = Path(bin_dir) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        raise PgToolError(f"{BIN_DIR_SETTING}={bin_dir} has no executable {name}")
    found = shutil.which(name)
    if found:
        return found
    raise PgToolError(f"{name} is not on PATH: set {BIN_DIR_SETTING} to the bin directory of a PostgreSQL "
                      "installation as recent as the server (`make run` sets it to pgserver's)")


def normalized_dsn(dsn: str) -> str:
    """A libpq DSN from a SQLAlchemy URL too: `postgresql+psycopg2://...` -> `postgresql://...`."""
    return re.sub(r"^(postgres(?:ql)?)\+[^:/]+://", r"\1://", dsn.strip())


def dsn_params(dsn: str) -> dict[str, str]:
    """The DSN's connection parameters (password included: for psycopg.connect, never for a command line)."""
    try:
        return {key: str(value) for key, value in conninfo_to_dict(normalized_dsn(dsn)).items()}
    except psycopg.ProgrammingError as exc:
        # libpq quotes the part it could not parse, which may hold the password: say where, not what.
        reason = re.sub(r'"[^"]*"', '"..."', str(exc))
        raise PgToolError(f"the database URL cannot be parsed: {reason}") from None


def libpq_env(dsn: str, *, application_name: str | None = None) -> tuple[dict[str, str], str]:
    """(environment, conninfo) for running a client program on `dsn`: pass the conninfo as `--dbname` (it has
    no password) and the environment as `env=` (ours, with PGPASSWORD when the DSN has one)."""
    params = dsn_params(dsn)
    password = params.pop("password", None)
    if application_name:
        params["application_name"] = application_name
    env = {name: value for name, value in os.environ.items() if name not in _INHERITED_LIBPQ_VARS}
    if password:
        env["PGPASSWORD"] = password
    return env, make_conninfo(**params)


def with_database(dsn: str, database: str) -> str:
    """The same server, user and options as `dsn`, on another database (a conninfo for psycopg.connect)."""
    params = dsn_params(dsn)
    params["dbname"] = database
    return make_conninfo(**params)


def redact(text: str, dsn: str | None) -> str:
    """`text` without the DSN's password, should a library have echoed it."""
    if not dsn:
        return text
    try:
        password = str(conninfo_to_dict(normalized_dsn(dsn)).get("password") or "")
    except psycopg.ProgrammingError:
        return text
    return hide(text, password)


def hide(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def run_logged(args: Sequence[str], *, on_line: OnLine | None = None, env: dict[str, str] | None = None,
               what: str | None = None, timeout: float | None = None,
               read_stdout: Callable[[IO[bytes]], None] | None = None) -> int:
    """Run `args`, calling `on_line(line, time.monotonic())` for each line of its stderr as it arrives, and
    `read_stdout(stream)` in a thread of its own on its standard output (discarded without it; a reader that
    stops early must close the stream, so that the program ends instead of blocking on a full pipe).
    Returns 0; raises PgToolError naming `what` (default: the program), the exit code and the last lines of
    stderr when it fails or outlives `timeout` seconds (then it is killed)."""
    what = what or Path(args[0]).name
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, env=env, stderr=subprocess.PIPE,
                               stdout=subprocess.PIPE if read_stdout else subprocess.DEVNULL)
    reader = threading.Thread(target=read_stdout, args=(process.stdout,), name=f"{what} stdout",
                              daemon=True) if read_stdout else None
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, kill_on_timeout) if timeout else None
    try:
        if timer:
            timer.start()
        if reader:
            reader.start()
        assert process.stderr is not None
        for raw in process.stderr:
            at = time.monotonic()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line[:TAIL_LINE_CHARS])
            if on_line:
                on_line(line, at)
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        if timer:
            timer.cancel()
        if reader:
            reader.join()
        if process.stderr:
            process.stderr.close()
    if code == 0 and not timed_out.is_set():
        return 0
    password = (env or {}).get("PGPASSWORD")
    if timed_out.is_set():
        outcome = f"timed out after {timeout:g} s and was killed"
    elif code < 0:
        outcome = f"was killed by signal {-code}"
    else:
        outcome = f"failed (exit {code})"
    raise PgToolError(hide(f"{what} {outcome}: {_what_went_wrong(tail)}", password))


_TROUBLE = re.compile(r"\b(error|warning|while PROCESSING TOC|FATAL|ERROR)\b")


def _what_went_wrong(tail: deque[str], quiet_lines: int = 8) -> str:
    """The tail from its first error line on (pg_restore -v says a lot before it), else its last lines."""
    lines = [line for line in tail if line.strip()]
    first = next((index for index, line in enumerate(lines) if _TROUBLE.search(line)), None)
    shown = lines[first:] if first is not None else lines[-quiet_lines:]
    return " | ".join(shown) or "(no output)"


def server_major(dsn: str) -> int:
    """The server's major version (16 for 16.2; 9 for 9.6)."""
    try:
        with psycopg.connect(normalized_dsn(dsn), connect_timeout=15) as conn:
            return conn.info.server_version // 10000
    except psycopg.Error as exc:
        raise PgToolError(f"cannot read the server's version: {redact(str(exc), dsn)}") from None


def tool_version(binary: str) -> str:
    """What a client program says of its version ("pg_dump (PostgreSQL) 16.2")."""
    completed = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    if completed.returncode != 0:
        raise PgToolError(f"{binary} --version said {(completed.stdout + completed.stderr).strip()[:200]!r}")
    return completed.stdout.strip()


def tool_major(binary: str) -> int:
    """The major version of a client program, from `--version` ("pg_dump (PostgreSQL) 16.2" -> 16)."""
    said = tool_version(binary)
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", said)
    if not found:
        raise PgToolError(f"{binary} --version said {said[:200]!r}")
    return int(found.group(1))


def require_not_older_than_server(binary: str, dsn: str) -> tuple[int, int]:
    """(tool major, server major); PgToolError when the program is older than the server (pg_dump refuses to
    dump a newer server; we say what to do first)."""
    tool, server = tool_major(binary), server_major(dsn)
    if tool < server:
        raise PgToolError(f"{Path(binary).name} is PostgreSQL {tool}, older than the server (PostgreSQL {server}): "
                          f"set {BIN_DIR_SETTING} to the bin directory of PostgreSQL {server} or newer")
    return tool, server


__all__ = ["BIN_DIR_SETTING", "OnLine", "PgToolError", "dsn_params", "hide", "libpq_env", "normalized_dsn",
           "pg_binary", "redact", "require_not_older_than_server", "run_logged", "server_major", "tool_major",
           "tool_version", "with_database"]
