"""Field types shared by the API and the CSV import, so both validate alike."""

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from pydantic import AfterValidator, Field, StringConstraints, TypeAdapter, ValidationError

# One line of text with something in it: no control character (Cc), line or
# paragraph separator (Zl, Zp) anywhere, and at least one character that is not
# white space. None of those belong in a name or a subject, and CR/LF in
# particular must never reach an email header. The same pattern is the schema's
# (`pattern`) and the server's rule, applied to the value as sent, before white
# space around it is trimmed.
_LINE_CHAR = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
_VISIBLE_CHAR = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
SINGLE_LINE_PATTERN = rf"^{_LINE_CHAR}*{_VISIBLE_CHAR}{_LINE_CHAR}*$"
_SINGLE_LINE = re.compile(SINGLE_LINE_PATTERN)

# RFC 5322 dot-atom in plain ASCII: the local part nearly every address has.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
ASCII_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_ASCII_DOT_ATOM = re.compile(ASCII_DOT_ATOM)
# email-validator's limit, in UTF-8 bytes, on each form of the address it checks.
_MAX_ADDRESS_BYTES = 254
# RFC 5321's limit before the @, which email-validator enforces in strict mode.
_MAX_LOCAL_CHARS = 64

# The longest name a user may have, in characters.
NAME_MAX_CHARS = 100

# Distinct domains remembered; past that, the least recently seen are validated again.
_DOMAIN_CACHE_SIZE = 16384


def normalize_email(value: str) -> str:
    """Validate by `validate_by_the_rule` and normalise: IDNA domain, lower case throughout.

    Lower-casing the local part too is what makes `Ada@Example.com` and
    `ada@example.com` one account; nearly every mail system treats them alike.
    Only ASCII is allowed before the @, so a look-alike there (fullwidth
    letters, a Cyrillic a) is refused rather than becoming a second account;
    look-alikes in the domain fold into it (IDNA maps a fullwidth `example.com`
    to `example.com`).

    email-validator costs tens of microseconds an address, which dominates a
    million-row import. Nearly every address is a plain ASCII dot-atom at one
    of a few domains, and for those its verdict depends on the local part only
    through the dot-atom rule and the lengths: so the domain's verdict is
    cached, and anything else goes to email-validator itself.
    `tests/schemas/test_fields.py` checks, property-based, that both paths
    agree on every address.
    """
    local, at, domain = value.partition("@")
    if at and value.isascii() and _ASCII_DOT_ATOM.fullmatch(local):
        normalized = plain_address(local, domain)
        if normalized is not None:
            return normalized
    # Anything unusual, and every invalid address: email-validator decides, and
    # its message is the one the caller sees.
    return _validate_with_email_validator(value)


def plain_address(local: str, domain: str) -> str | None:
    """`local@domain` normalised, where `local` is an ASCII dot-atom; None when
    email-validator must decide (and its message be the caller's)."""
    plain = plain_domain(domain)
    if plain is None or len(local) > plain.longest_local:
        return None
    return local.lower() + plain.suffix


@dataclass(frozen=True)
class PlainDomain:
    """A domain email-validator accepts, as it applies to ASCII dot-atom local parts."""

    suffix: str  # "@" and the domain's normalised form, in lower case
    longest_local: int  # the most characters before the @ that every length limit allows


@lru_cache(maxsize=_DOMAIN_CACHE_SIZE)
def plain_domain(domain: str) -> PlainDomain | None:
    """What email-validator says of `domain` (asked with the shortest valid local part);
    None if it refuses it.

    The limits: 64 characters before the @, and 254 in each of the address as
    given, its normalised form in UTF-8, and its ASCII form.
    """
    try:
        result = validate_by_the_rule(f"a@{domain}")
    except EmailNotValidError:
        return None
    suffix = f"@{result.domain}"
    longest = min(
        _MAX_LOCAL_CHARS,
        _MAX_ADDRESS_BYTES - 1 - len(domain),
        _MAX_ADDRESS_BYTES - len(suffix.encode()),
        _MAX_ADDRESS_BYTES - 1 - len(result.ascii_domain),
    )
    return PlainDomain(suffix.lower(), longest)


def validate_by_the_rule(value: str) -> ValidatedEmail:
    """email-validator, under the one rule for every address the service takes (signup,
    import, notification): what it can deliver.

    No DNS lookups; an ASCII local part, since mail goes out without SMTPUTF8
    (a domain may be internationalised: mail goes to its ASCII form); at most
    64 characters before the @ (strict).
    """
    return validate_email(value, check_deliverability=False, allow_smtputf8=False, strict=True)


def _validate_with_email_validator(value: str) -> str:
    try:
        result = validate_by_the_rule(value)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return result.normalized.lower()


def single_line(max_length: int) -> AfterValidator:
    """The rule of SINGLE_LINE_PATTERN, then the value trimmed and in Unicode NFC.

    NFC can lengthen a string (U+0958 becomes two code points), so the length
    is checked again: the column holds `max_length` characters, no more.
    """

    def check(value: str) -> str:
        if _SINGLE_LINE.fullmatch(value) is None:
            if value.isspace():
                raise ValueError("must not be blank")
            raise ValueError("must not contain control characters or line breaks")
        value = value.strip()
        if not value.isascii():
            value = unicodedata.normalize("NFC", value)
            if len(value) > max_length:
                raise ValueError(f"must be at most {max_length} characters in Unicode NFC")
        return value

    return AfterValidator(check)


# An address as the service takes it, normalised; without an example, for a query
# parameter (Swagger UI would send a parameter's example as it stands).
EmailParameter = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=320),
    AfterValidator(normalize_email),
]

Email = Annotated[
    EmailParameter,
    Field(examples=["ada@example.com"], json_schema_extra={"format": "email"}),
]

PersonName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX_CHARS),
    single_line(NAME_MAX_CHARS),
    Field(examples=["Ada Lovelace"], json_schema_extra={"pattern": SINGLE_LINE_PATTERN}),
]

# The SSRF guard decides what a webhook URL may be (app.integrations.ssrf); the
# schema only bounds its size and keeps control characters out.
WebhookUrl = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=2000, pattern=r"^[^\x00-\x20\x7f]+$"
    ),
    Field(examples=["https://example.com/webhooks/signup-service"]),  # a host that resolves
]

# A line of text that ends up in a mail header.
Subject = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    single_line(200),
    Field(examples=["Your export is ready"], json_schema_extra={"pattern": SINGLE_LINE_PATTERN}),
]

_email = TypeAdapter(Email)
_person_name = TypeAdapter(PersonName)


def clean_email(value: str) -> str:
    """An Email as the API would accept it; ValueError with the API's reason otherwise."""
    return _validated(_email, value)


def clean_person_name(value: str) -> str:
    """A PersonName as the API would accept it; ValueError with the API's reason otherwise."""
    return _validated(_person_name, value)


def _validated(adapter: TypeAdapter[str], value: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        message = error["msg"]
        raise ValueError(message.removeprefix("Value error, ")) from None
