"""The README stays true: its configuration table, its guarantees' tests, its commands."""

import re
from typing import Any

import pytest
from dotenv import dotenv_values

from app.core.config import Settings
from tests.support.server import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
TESTS = "\n".join(path.read_text() for path in (PROJECT_ROOT / "tests").rglob("test_*.py"))


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def configuration_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section("Configuration"), re.M)
    return {name: default.strip().strip("`") for name, default in rows}


def as_written(value: Any) -> str:
    if value is None:
        return "unset"
    if value in ("", []):
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    table = configuration_table()

    assert sorted(table) == sorted(name.upper() for name in Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert table[name.upper()] == as_written(field.get_default(call_default_factory=True)), name


def test_env_example_sets_each_setting_as_the_table_says_or_leaves_it_commented() -> None:
    example = dotenv_values(PROJECT_ROOT / ".env.example")
    table = configuration_table()

    for name, value in example.items():
        assert name in table
        if name not in {"BOOTSTRAP_API_KEY"}:  # the example sets the tour's key
            assert value == table[name] or as_written(value) == table[name], name


@pytest.mark.parametrize(
    "test_name", re.findall(r"`(test_[a-z0-9_]+)`", section("Guarantees, and their limits"))
)
def test_each_guarantee_names_a_test_that_exists(test_name: str) -> None:
    assert re.search(rf"def {test_name}\(", TESTS), test_name


def test_the_readme_names_its_run_and_test_commands() -> None:
    assert "uv run python -m app serve" in section("Run it, test it")
    assert "uv run pytest" in section("Run it, test it")
