"""A `pytest.mark.*` decorator does something only on what pytest collects: a `test*` function at module
level or in a `Test*` class, or a `Test*` class. Anywhere else it is silently ignored: `@pytest.mark.slow`
on a helper left the SIGKILL test it was meant for unmarked, so `make test-fast` ran it (issue 11).

This reads every module of the suite with `ast` and names file:line of each mark that lands elsewhere.
parametrize, usefixtures and filterwarnings on a fixture are tolerated (known, harmless); any other mark
on a fixture is reported like one on a helper.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

SUITE = Path(__file__).resolve().parent
TOLERATED_ON_FIXTURES = {"parametrize", "usefixtures", "filterwarnings"}

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def mark_name(decorator: ast.expr, aliases: dict[str, str]) -> str | None:
    """"slow" for @pytest.mark.slow, @pytest.mark.slow(...), @mark.slow or @slow after slow = pytest.mark.slow."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Name):
        return aliases.get(target.id)
    if not isinstance(target, ast.Attribute):
        return None
    owner = target.value
    if isinstance(owner, ast.Attribute) and owner.attr == "mark" and isinstance(owner.value, ast.Name) \
            and owner.value.id == "pytest":
        return target.attr
    if isinstance(owner, ast.Name) and owner.id == "mark":
        return target.attr
    return None


def is_fixture(definition: Definition) -> bool:
    for decorator in definition.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Attribute) and target.attr == "fixture") or \
                (isinstance(target, ast.Name) and target.id == "fixture"):
            return True
    return False


def mark_aliases(module: ast.Module) -> dict[str, str]:
    """Module-level names bound to a mark: slow = pytest.mark.slow."""
    aliases = {}
    for statement in module.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                isinstance(statement.targets[0], ast.Name):
            name = mark_name(statement.value, {})
            if name:
                aliases[statement.targets[0].id] = name
    return aliases


def definitions(body: list[ast.stmt], collected_scope: bool) -> Iterator[tuple[Definition, bool]]:
    """Every function and class with whether pytest collects it: a test* function or Test* class directly
    in the module or in a collected Test* class. Nothing inside a function is collected."""
    for statement in body:
        if isinstance(statement, ast.ClassDef):
            collected = collected_scope and statement.name.startswith("Test")
            yield statement, collected
            yield from definitions(statement.body, collected)
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            yield statement, collected_scope and statement.name.startswith("test")
            yield from definitions(statement.body, False)


def misplaced_marks(paths: Iterable[Path]) -> list[str]:
    problems = []
    for path in paths:
        module = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases = mark_aliases(module)
        for definition, collected in definitions(module.body, True):
            if collected:
                continue
            fixture = is_fixture(definition)
            for decorator in definition.decorator_list:
                name = mark_name(decorator, aliases)
                if name is None or (fixture and name in TOLERATED_ON_FIXTURES):
                    continue
                kind = "class" if isinstance(definition, ast.ClassDef) else "fixture" if fixture else "def"
                problems.append(f"{path}:{decorator.lineno}: @pytest.mark.{name} on {kind} {definition.name}, "
                                "which pytest does not collect as a test: the mark does nothing")
    return problems


def test_marks_decorate_only_tests() -> None:
    paths = sorted(SUITE.rglob("*.py"))
    assert len(paths) > 50
    assert misplaced_marks(paths) == []


def test_a_mark_on_a_helper_is_reported(tmp_path: Path) -> None:
    module = tmp_path / "test_bad.py"
    module.write_text(
        "import pytest\nfrom pytest import mark\nslow = pytest.mark.slow\n\n"
        "@pytest.mark.slow\ndef parts_sent(vault):\n    return 1\n\n"
        "@pytest.mark.slow\n@pytest.mark.timeout(300)\ndef test_ok():\n    pass\n\n"
        "@pytest.fixture\n@pytest.mark.parametrize('x', [1])\ndef tolerated(x):\n    pass\n\n"
        "@pytest.fixture\n@mark.slow\ndef slow_fixture():\n    pass\n\n"
        "class TestThings:\n    @slow\n    def helper(self):\n        pass\n\n"
        "    def test_inner(self):\n        @pytest.mark.slow\n        def test_nested():\n            pass\n\n"
        "@pytest.mark.slow\nclass Helpers:\n    @pytest.mark.slow\n    def test_in_helpers(self):\n        pass\n"
    )
    assert misplaced_marks([module]) == [
        f"{module}:{line}: @pytest.mark.slow on {what}, which pytest does not collect as a test: the mark does nothing"
        for line, what in [(5, "def parts_sent"), (20, "fixture slow_fixture"), (25, "def helper"),
                           (30, "def test_nested"), (34, "class Helpers"), (36, "def test_in_helpers")]]
