"""The shared field rules: the fast email path agrees with email-validator on every address."""

import string
import unicodedata

import jsonschema_rs
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from app.schemas.fields import PersonName, clean_email, clean_person_name, normalize_email

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"


def reference_email(value: str) -> tuple[str, str]:
    """What email-validator alone says: ('ok', normalised) or ('error', its message)."""
    try:
        return "ok", validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return "error", str(exc)


def fast_email(value: str) -> tuple[str, str]:
    try:
        return "ok", normalize_email(value)
    except ValueError as exc:
        return "error", str(exc)


# Local parts around the dot-atom rule: good ones, misplaced dots, quotes, spaces,
# non-ASCII letters, and lengths on both sides of 64 (email-validator does not
# enforce 64 by default, only the 254-byte total).
local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", min_size=0, max_size=80),
    st.text(alphabet=ATEXT, min_size=1, max_size=250),
    st.text(alphabet=ATEXT + '."\\ @<>()[],;:ÄéßΩ\u200b\x00\t', min_size=0, max_size=20),
)
labels = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=0, max_size=70),
    st.sampled_from(["xn--bcher-kva", "xn--4dbc", "xn--", "xn--zz", "ab--cd", "1", "-a", "a-"]),
    st.text(alphabet="aébüßΩЖא日本\uff0e\u3002_ ", min_size=1, max_size=8),
)
tlds = st.sampled_from(
    ["com", "org", "de", "co.uk", "local", "localhost", "test", "invalid", "arpa", "onion",
     "example", "123", "c0m", "COM", "xn--p1ai", ""]
)  # fmt: skip
domains = st.one_of(
    st.builds(lambda parts, tld: ".".join([*parts, tld]), st.lists(labels, max_size=4), tlds),
    st.text(alphabet=string.ascii_lowercase + ".-", min_size=0, max_size=260),
    st.text(max_size=30),
)
# Mostly valid addresses, so the fast path's acceptances are tested as hard as its refusals.
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=12)
hostname_labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
plausible = st.builds(
    lambda local, parts, tld: f"{'.'.join(local)}@{'.'.join([*parts, tld])}",
    st.lists(atoms, min_size=1, max_size=4),
    st.lists(st.one_of(hostname_labels, hostname_labels, labels), min_size=1, max_size=3),
    st.one_of(st.sampled_from(["com", "org", "de", "io", "co.uk", "xn--p1ai"]), tlds),
)
valid_shaped = st.builds(
    lambda local, parts, tld: f"{'.'.join(local)}@{'.'.join([*parts, tld])}",
    st.lists(atoms, min_size=1, max_size=20),
    st.lists(hostname_labels, min_size=1, max_size=3),
    st.sampled_from(["com", "ORG", "de", "io", "co.uk", "xn--p1ai", "xn--bcher-kva.ch"]),
)
addresses = st.one_of(
    valid_shaped,
    plausible,
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.builds(lambda local, domain: f"{local}@@{domain}", local_parts, domains),
    st.text(max_size=60),
)


@settings(max_examples=4000, deadline=None)
@given(addresses)
@example("Ada@Example.COM")
@example("postmaster@example.com")
@example("a@b.c.d.e.f.example.com")
@example("ada@xn--bcher-kva.example")
@example("ada@BÜCHER.example")
@example("a" * 64 + "@" + "b" * 63 + ".com")
@example("a" * 200 + "@" + "b" * 49 + ".com")  # 254: the longest allowed
@example("a" * 200 + "@" + "b" * 50 + ".com")  # 255: one too many
@example("a" * 180 + "@xn--bcher-kva." + "b" * 50 + ".com")  # longer once decoded?
@example("ada@localhost")
@example("ada@example.local")
@example("Ada <ada@example.com>")
@example('"ada"@example.com')
@example("ada@[127.0.0.1]")
@example("ada.@example.com")
@example(".ada@example.com")
@example("a..da@example.com")
@example("ada@example..com")
@example("ada@-example.com")
def test_the_fast_path_accepts_and_normalises_exactly_what_email_validator_does(
    address: str,
) -> None:
    assert fast_email(address) == reference_email(address)


def reference_person_name(value: str) -> tuple[str, str]:
    """The rule as the schema's pattern states it, by Unicode category."""
    if any(unicodedata.category(char) in {"Cc", "Zl", "Zp"} for char in value):
        return "error", ""
    if not value.strip():
        return "error", ""
    value = unicodedata.normalize("NFC", value.strip())
    return ("ok", value) if len(value) <= 100 else ("error", "")


# What a client or schemathesis checks a name against: its JSON Schema, with ECMA regexes.
schema_person_name = jsonschema_rs.validator_for(TypeAdapter(PersonName).json_schema()).is_valid


names = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=string.printable, max_size=120),
    st.text(
        alphabet=" \t\n\r\x0b\x0c\x1c\x85\xa0\u1680\u2000\u2028\u2029\u3000Ada\x00\x7f", max_size=8
    ),
)


@settings(max_examples=2000, deadline=None)
@given(names)
@example("Ada\n")
@example(" \u3000")
@example("\u0958" * 60)  # twice as long in NFC
def test_the_api_accepts_a_name_exactly_when_its_schema_and_the_rule_do(name: str) -> None:
    try:
        outcome = "ok", clean_person_name(name)
    except ValueError:
        outcome = "error", ""

    assert outcome == reference_person_name(name)
    if outcome[0] == "ok":
        assert schema_person_name(name)
    elif len(unicodedata.normalize("NFC", name.strip())) <= 100:
        assert not schema_person_name(name)


def test_clean_email_applies_the_api_rules_strip_length_and_normalisation() -> None:
    assert clean_email("  Ada@Example.COM ") == "ada@example.com"
    with pytest.raises(ValueError, match="at least 3 characters"):
        clean_email("a@")
    with pytest.raises(ValueError, match="must have an @-sign"):
        clean_email("not-an-email")


def test_clean_person_name_applies_the_api_rules() -> None:
    assert clean_person_name("  Ada Lovelace ") == "Ada Lovelace"
    with pytest.raises(ValueError, match="at most 100 characters"):
        clean_person_name("x" * 101)
    with pytest.raises(ValueError, match="control characters"):
        clean_person_name("Eve\r\nBcc: mallory@example.com")
    with pytest.raises(ValueError, match="control characters"):
        clean_person_name("Ada\n")  # refused as sent, not trimmed into shape
    with pytest.raises(ValueError, match="blank"):
        clean_person_name(" \u3000 ")


def test_email_validator_is_asked_once_per_domain_for_plain_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.schemas import fields  # noqa: PLC0415

    calls: list[str] = []

    def counting(value: str, **options: object) -> object:
        calls.append(value)
        return validate_email(value, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(fields, "validate_email", counting)
    fields._domain_forms.cache_clear()

    emails = [normalize_email(f"User.{n}@Cached-Domain.example.com") for n in range(100)]

    assert emails[7] == "user.7@cached-domain.example.com"
    assert calls == ["a@Cached-Domain.example.com"]
