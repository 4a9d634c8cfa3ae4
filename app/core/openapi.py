"""The OpenAPI document as clients read it: what FastAPI generates, made to say what it means.

An optional query or header parameter is one a client leaves out, never one
it sends as null (a header or a query string cannot carry null). FastAPI
types `str | None = None` as `anyOf: [string, null]`, which Swagger UI shows
as `string | (string | null)` and client generators turn into nullable
types; here it becomes the plain schema it is.
"""

from typing import Any

from fastapi import FastAPI

_NULL = {"type": "null"}


def refine_openapi(app: FastAPI) -> None:
    """Install the refinements on top of whatever builds the document now."""
    build = app.openapi
    refined: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal refined
        if refined is None:
            refined = build()
            for methods in refined.get("paths", {}).values():
                for operation in methods.values():
                    for parameter in operation.get("parameters", []):
                        _drop_null_from_optional(parameter)
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
