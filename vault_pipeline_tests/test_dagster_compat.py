"""Dagster's private API (`dagster._...`) is imported by vault_pipeline/dagster_compat.py alone."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPAT = REPO / "vault_pipeline" / "dagster_compat.py"


def private_dagster_imports(path: Path) -> list[str]:
    """`import dagster._x`, `from dagster._x import y` and `from dagster import _x`, wherever they are."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.startswith("dagster._")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("dagster._"):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "dagster":
                found += [f"{node.lineno}: from dagster import {a.name}" for a in node.names
                          if a.name.startswith("_")]
    return found


def test_only_the_compat_module_imports_private_dagster_api() -> None:
    files = sorted((REPO / "vault_pipeline").rglob("*.py")) + sorted((REPO / "vault_pipeline_tests").rglob("*.py"))
    assert COMPAT in files and len(files) > 50
    offenders = {str(f.relative_to(REPO)): hits for f in files if f != COMPAT and (hits := private_dagster_imports(f))}
    assert offenders == {}, "import these from vault_pipeline.dagster_compat (and say there why no public API serves)"
    assert private_dagster_imports(COMPAT), "dagster_compat.py has nothing private left: delete it"


def test_the_detector_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import dagster._core.utils\nfrom dagster._utils import x\nfrom dagster import _check, asset\n"
                      "def f():\n    from dagster._core import y\n"
                      "from dagster import Definitions\ntext = 'dagster._core is fine in a string'\n")
    assert [hit.split(":")[0] for hit in private_dagster_imports(sample)] == ["1", "2", "3", "5"]
