"""Field types shared by the API and the CSV importer, so both validate alike."""

import unicodedata
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, StringConstraints

# Control characters, and the Unicode line and paragraph separators: none belong
# in a name, and CR/LF in particular must never reach an email header.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def normalize_email(value: str) -> str:
    """Validate syntax (no DNS lookups) and normalise: IDNA domain, lower case throughout.

    Lower-casing the local part too is what makes `Ada@Example.com` and
    `ada@example.com` one account; nearly every mail system treats them alike.
    """
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()


def check_person_name(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in value):
        raise ValueError("must not contain control characters or line breaks")
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=320),
    AfterValidator(normalize_email),
    Field(examples=["ada@example.com"], json_schema_extra={"format": "email"}),
]

PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(check_person_name),
    Field(examples=["Ada Lovelace"]),
]

# The SSRF guard decides what a webhook URL may be (app.integrations.ssrf); the
# schema only bounds its size and keeps control characters out.
WebhookUrl = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=2000, pattern=r"^[^\x00-\x20\x7f]+$"
    ),
    Field(examples=["https://hooks.example.com/signup-service"]),
]

# A line of text that may end up in a mail header: no control characters at all.
Subject = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(check_person_name),
    Field(examples=["Your export is ready"]),
]
