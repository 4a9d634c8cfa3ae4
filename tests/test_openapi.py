"""Every route documents itself: summary, tags, response model, and its problem responses."""

from typing import Any

import pytest

from app.main import create_app

SPEC: dict[str, Any] = create_app().openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, methods in SPEC["paths"].items()
    for method, operation in methods.items()
]
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_operation_has_a_summary_and_tags(method: str, path: str, operation: Any) -> None:
    assert operation.get("summary"), f"{method} {path} has no summary"
    assert operation.get("tags"), f"{method} {path} has no tags"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_success_responses_have_a_schema(method: str, path: str, operation: Any) -> None:
    successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
    assert successes, f"{method} {path} documents no success"
    for code, response in successes.items():
        if code == "204":
            assert "content" not in response
            continue
        content = response["content"]
        assert any(media.get("schema") for media in content.values()), (method, path, code)


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_error_responses_are_problem_details(method: str, path: str, operation: Any) -> None:
    errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
    for code, response in errors.items():
        problem = response["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
    has_input = bool(operation.get("parameters") or operation.get("requestBody"))
    assert ("422" in errors) == has_input, f"{method} {path}: 422 iff it takes input"
    if "requestBody" in operation:
        assert "400" in errors, f"{method} {path} reads a body but does not document 400"
