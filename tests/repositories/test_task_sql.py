"""The claim, settle and renewal statements, as their docstrings show them to a reader.

The statements are built in code, once per task state; their docstrings show
what they render to for the welcome email. These tests render them again and
compare, so a changed statement cannot leave its docstring behind.
"""

import re
from typing import Any, cast

import pytest
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from app.models.base import TaskStatus
from app.models.user import WELCOME_EMAIL_STATE
from app.repositories import tasks as tasks_repo


def readable(statement: ClauseElement) -> str:
    """The statement as SQL a reader follows: its fixed values written in, its
    parameters as :names, on one line."""
    compiled = cast(SQLCompiler, statement.compile())
    # A parameter the caller supplies (`now`, `lease`) is required; the rest are
    # values the statement fixes (a status, NULL, the 1 added to attempts).
    fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}

    def literal(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, list | tuple):
            return ", ".join(literal(item) for item in value)
        if isinstance(value, TaskStatus):
            return f"'{value.value}'"
        return repr(value)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return literal(fixed[name]) if name in fixed else f":{name}"

    sql = re.sub(r"__\[POSTCOMPILE_(\w+)\]|:(\w+)", replace, str(compiled))
    return " ".join(sql.split())


def shown(docstring: str | None) -> str:
    return " ".join((docstring or "").split())


STATEMENTS = {
    "claim": (tasks_repo.claim, tasks_repo._claim_statement(WELCOME_EMAIL_STATE, ())),
    "renew": (tasks_repo.renew_lease, tasks_repo._renew_statement(WELCOME_EMAIL_STATE)),
    **{
        f"settle {status}": (tasks_repo.settle, statement)
        for status, statement in tasks_repo._settle_statements(WELCOME_EMAIL_STATE).items()
    },
}


@pytest.mark.parametrize("name", STATEMENTS)
def test_the_docstring_shows_the_statement_as_it_renders(name: str) -> None:
    """What it sets, and which rows it touches: a docstring may show the fence once
    for statements that share it."""
    function, statement = STATEMENTS[name]
    sql = readable(statement)
    sets, _, where = sql.partition(" WHERE ")

    assert sets.removeprefix("UPDATE users ") in shown(function.__doc__), sql
    assert f"WHERE {where}" in shown(function.__doc__), sql
