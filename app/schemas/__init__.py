"""Pydantic request and response models, the field types and query parameters they share,
and the examples the OpenAPI document shows."""
