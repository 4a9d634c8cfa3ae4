"""The OpenAPI document as clients read it: what FastAPI generates, made to say what it means.

- Optional query and header parameters: a client leaves them out, never sends
  them as null (a header or a query string cannot carry null). FastAPI types
  `str | None = None` as `anyOf: [string, null]`, which Swagger UI shows as
  `string | (string | null)` and client generators turn into nullable types;
  here it becomes the plain schema it is.
- Examples keep their nulls. FastAPI drops every null from the document it
  builds, examples included, so a user with no webhook URL would be shown
  without the field, and the example that removes one (`{"webhook_url":
  null}`) would be an empty body. Examples therefore go into the document as
  stand-ins, and are put back as they are once it is built.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.models import Example
from pydantic import BaseModel

_NULL = {"type": "null"}
_STAND_IN = "x-verbatim-example"
_VERBATIM: dict[str, Any] = {}


def refine_openapi(app: FastAPI) -> None:
    """Install the refinements on top of whatever builds the document now."""
    build = app.openapi
    refined: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal refined
        if refined is None:
            document = build()
            for methods in document.get("paths", {}).values():
                for operation in methods.values():
                    for parameter in operation.get("parameters", []):
                        _drop_null_from_optional(parameter)
            refined = _restore_examples(document)
        return refined

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_null_from_optional(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    variants = schema.get("anyOf")
    if parameter.get("required") or not variants or _NULL not in variants:
        return
    others = [variant for variant in variants if variant != _NULL]
    if len(others) != 1:
        return
    del schema["anyOf"]
    parameter["schema"] = {**others[0], **schema}


def verbatim(value: Any) -> dict[str, str]:
    """A stand-in for an example value, replaced by the value itself, nulls and all."""
    key = str(len(_VERBATIM))
    _VERBATIM[key] = value
    return {_STAND_IN: key}


def _restore_examples(node: Any) -> Any:
    if isinstance(node, dict):
        if node.keys() == {_STAND_IN}:
            return _VERBATIM[node[_STAND_IN]]
        return {key: _restore_examples(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_restore_examples(item) for item in node]
    return node


def request_examples(examples: Mapping[str, Example]) -> dict[str, Example]:
    """`Body(openapi_examples=...)`, with each value kept as it is."""
    return {
        name: {**example, "value": verbatim(example["value"])} for name, example in examples.items()
    }


def success_response(
    status: int,
    description: str,
    example: BaseModel | str | None = None,
    *,
    examples: Mapping[str, tuple[str, BaseModel]] | None = None,
    media_type: str = "application/json",
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route's success: what it means, and what it looks like
    (one example, or several by name with a summary each)."""
    response: dict[str, Any] = {"description": description}
    if example is not None:
        response["content"] = {media_type: {"example": verbatim(_as_sent(example))}}
    elif examples:
        named = {
            name: {"summary": summary, "value": verbatim(_as_sent(value))}
            for name, (summary, value) in examples.items()
        }
        response["content"] = {media_type: {"examples": named}}
    return {status: response}


def _as_sent(example: BaseModel | str) -> Any:
    return example if isinstance(example, str) else example.model_dump(mode="json")
