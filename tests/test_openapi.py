"""Every route documents itself: summary, tags, response model with examples that hold, and its
problem responses."""

from typing import Any

import jsonschema_rs
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


def media_examples(media: dict[str, Any]) -> dict[str, Any]:
    """The example values a media type offers, by name."""
    named = {"example": media["example"]} if "example" in media else {}
    return named | {name: example["value"] for name, example in media.get("examples", {}).items()}


def validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator for a schema of this document, formats included."""
    return jsonschema_rs.Draft202012Validator(
        {**schema, "components": SPEC["components"]}, validate_formats=True
    )


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_success_responses_are_described_with_an_example(
    method: str, path: str, operation: Any
) -> None:
    for code, response in operation["responses"].items():
        if not code.startswith("2"):
            continue
        assert response["description"] != "Successful Response", (method, path, code)
        if method == "HEAD" or code == "204":
            continue  # no body to show
        for media_type, media in response["content"].items():
            assert media_examples(media), f"{method} {path} {code} {media_type} has no example"


EXAMPLES = [
    (f"{method} {path} {where} {name}", media["schema"], value)
    for method, path, operation in OPERATIONS
    for where, media in [
        *((f"{code} {media_type}", media)
          for code, response in operation["responses"].items()
          for media_type, media in response.get("content", {}).items()),
        *((media_type, media)
          for media_type, media in operation.get("requestBody", {}).get("content", {}).items()),
    ]
    for name, value in media_examples(media).items()
]  # fmt: skip


@pytest.mark.parametrize(("where", "schema", "value"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_every_example_is_valid_against_its_schema(where: str, schema: Any, value: Any) -> None:
    errors = [error.message for error in validator(schema).iter_errors(value)]

    assert errors == [], where


PROPERTY_EXAMPLES = [
    (f"{name}.{field}", variant, example)
    for name, component in SPEC["components"]["schemas"].items()
    for field, schema in component.get("properties", {}).items()
    for variant in [schema, *schema.get("anyOf", [])]
    for example in variant.get("examples", [])
]


@pytest.mark.parametrize(
    ("where", "schema", "example"), PROPERTY_EXAMPLES, ids=[e[0] for e in PROPERTY_EXAMPLES]
)
def test_every_property_example_is_valid_against_its_schema(
    where: str, schema: Any, example: Any
) -> None:
    assert validator(schema).is_valid(example), where


OPTIONAL_PARAMETERS = [
    (f"{method} {path} {parameter['name']}", parameter)
    for method, path, operation in OPERATIONS
    for parameter in operation.get("parameters", [])
    if not parameter.get("required")
]


@pytest.mark.parametrize(
    ("where", "parameter"), OPTIONAL_PARAMETERS, ids=[w for w, _ in OPTIONAL_PARAMETERS]
)
def test_an_optional_parameter_is_left_out_not_sent_as_null(where: str, parameter: Any) -> None:
    """Swagger UI showed `string | (string | null)`; a query string or header has no null."""
    schema = parameter["schema"]

    assert "anyOf" not in schema, where
    assert schema.get("type") != "null", where
    assert schema.get("type") or schema.get("enum"), where
