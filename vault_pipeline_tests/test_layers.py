"""Imports flow one way (docs/architecture.md, "Map"): the Dagster layer over the domain packages over
settings. Every import is counted, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vault_pipeline"
DOMAIN = ("replication", "retrieval", "journal", "alerting", "intake", "backup")
DAGSTER_LAYER = ("assets", "checks", "sensors", "jobs", "resources", "definitions", "partitions", "dagster_compat")
TOOLS = ("cli", "devstack")


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def room(module: str) -> str | None:
    """The top-level room of a vault_pipeline module name, e.g. 'replication' or 'definitions'."""
    parts = module.split(".")
    return parts[1] if parts[0] == "vault_pipeline" and len(parts) > 1 else None


def violations(package_dir: Path, owner: str, forbidden: tuple[str, ...], dagster: bool) -> list[str]:
    wrong = []
    paths = [package_dir] if package_dir.is_file() else sorted(package_dir.rglob("*.py"))
    assert paths, f"nothing to check in {package_dir}"
    for path in paths:
        for line, module in imports_of(path):
            if (dagster and module.split(".")[0] == "dagster") or room(module) in forbidden:
                wrong.append(f"{path}:{line} imports {module} ({owner})")
    return wrong


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_import_neither_dagster_nor_the_layers_above(package: str) -> None:
    assert violations(PACKAGE / package, "a domain package", DAGSTER_LAYER + TOOLS, dagster=True) == []


def test_settings_sit_below_the_domain() -> None:
    # One exception, on purpose: the retention policy file is validated with the settings at start-up.
    found = violations(PACKAGE / "settings.py", "settings", DOMAIN + DAGSTER_LAYER + TOOLS, dagster=False)
    assert found and all(v.endswith("imports vault_pipeline.replication.policy (settings)") for v in found)


def test_the_dev_stack_does_not_import_the_command_line() -> None:
    assert violations(PACKAGE / "devstack", "the dev stack", ("cli", *DAGSTER_LAYER), dagster=True) == []


def test_the_check_finds_a_wrong_import(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def f():\n    from vault_pipeline.assets.replication import cold_copies\n"
                                     "import dagster\n")
    found = violations(tmp_path, "a domain package", DAGSTER_LAYER, dagster=True)
    assert sorted(v.split(":", 1)[1] for v in found) == [
        "2 imports vault_pipeline.assets.replication (a domain package)", "3 imports dagster (a domain package)"]
