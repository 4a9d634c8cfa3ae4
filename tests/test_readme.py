"""The README stays true: its configuration table, the tests it names, its tree, its commands."""

import re
from typing import Any

import pytest
from dotenv import dotenv_values

from app.core.config import Settings
from tests.support.server import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
# A test named as a reader finds it: `tests/tasks/test_runner.py::test_...`.
NAMED_TEST = r"`(tests/[\w/]+\.py)::(test_\w+)`"


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


def named_tests(text: str) -> list[tuple[str, str]]:
    return re.findall(NAMED_TEST, text)


def assert_defined(path: str, name: str) -> None:
    source = PROJECT_ROOT / path
    assert source.is_file(), path
    assert re.search(rf"^(async )?def {name}\(", source.read_text(), re.M), f"{path}::{name}"


@pytest.mark.parametrize(
    ("path", "name"), named_tests(section("Guarantees, and their limits")), ids="::".join
)
def test_each_guarantee_names_a_test_by_its_path_and_it_is_there(path: str, name: str) -> None:
    assert_defined(path, name)


def test_every_test_the_guarantees_table_names_is_named_with_its_path() -> None:
    bare = re.findall(r"`(test_\w+)`", section("Guarantees, and their limits"))

    assert bare == []


def rules_table() -> dict[str, list[tuple[str, str]]]:
    """The table from each rule of the contract to the tests that prove it."""
    rows = re.findall(r"^\| (\d) \|(.*)\|$", section("How it works"), re.M)
    return {rule: named_tests(rest) for rule, rest in rows}


def test_each_rule_of_the_contract_has_a_test_that_proves_it() -> None:
    table = rules_table()

    assert sorted(table) == [str(rule) for rule in range(1, 10)]
    assert all(table.values()), table
    for tests in table.values():
        for path, name in tests:
            assert_defined(path, name)


def architecture() -> list[str]:
    """The paths the README's tree names: app's entries under app/, the rest at the root."""
    block = section("How it works").split("```\napp/\n", 1)[1].split("```", 1)[0]
    paths = ["app/"]
    for line in block.splitlines():
        entry = re.match(r"^( {2})?(\S+/|\S+\.py)\s", line + " ")
        if entry:
            paths.append(("app/" if entry.group(1) else "") + entry.group(2))
    return paths


def test_the_architecture_tree_names_what_is_there_and_all_of_app() -> None:
    named = architecture()
    packages = {
        f"app/{path.name}/"
        for path in (PROJECT_ROOT / "app").iterdir()
        if (path / "__init__.py").exists()
    }

    assert [path for path in named if not (PROJECT_ROOT / path).exists()] == []
    assert packages <= set(named)


def test_every_path_the_readme_names_in_the_code_exists() -> None:
    paths = set(re.findall(r"`((?:app|tests|bench|migrations)/[\w/.]+\.py)(?:::\w+)?`", README))

    assert paths
    assert sorted(path for path in paths if not (PROJECT_ROOT / path).is_file()) == []


def test_the_readme_names_its_run_and_test_commands() -> None:
    assert "uv run python -m app serve" in section("Run it, test it")
    assert "uv run pytest" in section("Run it, test it")
