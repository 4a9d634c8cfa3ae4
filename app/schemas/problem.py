"""RFC 9457 problem details: the one shape every error response takes."""

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the bad value is, e.g. ['body', 'email'].")
    msg: str
    type: str


class Problem(BaseModel):
    type: str = Field(description="A URI naming the kind of problem; 'about:blank' for plain HTTP.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The path the problem happened at.")
    errors: list[FieldError] | None = Field(
        default=None, description="Field errors, for validation problems."
    )
