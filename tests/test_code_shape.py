"""The code stays readable as a model: no function in app/ longer than a screen.

A function is measured from its `def` to its last line, docstring included and
decorators aside (a route's decorator is its declaration, not its logic).
"""

import ast
from pathlib import Path

import pytest

from tests.support.server import PROJECT_ROOT

MAX_LINES = 50
APP = PROJECT_ROOT / "app"


def functions(path: Path) -> list[tuple[str, int, int]]:
    """Every function and method in the file: (qualified name, first line, length)."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                found.append((name, child.lineno, length))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return found


@pytest.mark.parametrize("path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(APP)))
def test_no_function_in_app_is_longer_than_a_screen(path: Path) -> None:
    too_long = [
        f"{name} (line {line}): {length} lines"
        for name, line, length in functions(path)
        if length > MAX_LINES
    ]

    assert too_long == [], f"split these, or say why not: {too_long}"


def test_the_walk_finds_nested_functions_and_methods(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "class A:\n    async def m(self):\n        def inner():\n            pass\n"
        + "def long():\n"
        + "    x = 1\n" * (MAX_LINES + 1)
    )

    found = {name: length for name, _, length in functions(source)}

    assert found == {"A.m": 3, "A.m.inner": 2, "long": MAX_LINES + 2}
