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
    """What email-validator alone says under the service's rule: ASCII before the @ (no
    SMTPUTF8), at most 64 characters there (strict), no DNS: ('ok', normalised) or
    ('error', its message)."""
    try:
        result = validate_email(
            value, check_deliverability=False, allow_smtputf8=False, strict=True
        )
        return "ok", result.normalized.lower()
    except EmailNotValidError as exc:
        return "error", str(exc)


def fast_email(value: str) -> tuple[str, str]:
    try:
        return "ok", normalize_email(value)
    except ValueError as exc:
        return "error", str(exc)


# Characters that look like ASCII ones: fullwidth forms, Cyrillic and Greek
# letters, mathematical alphanumerics, a combining accent, a zero-width space,
# the Kelvin sign (NFKC folds it to K).
LOOK_ALIKES = (
    "\uff41\uff44\uff21\uff10\uff20\uff0e"  # fullwidth a d A 0 @ .
    "\u0435\u043e\u0430\u03bf\u0391\u2102\U0001d41a"  # Cyrillic e o a, Greek o A, C, bold a
    "\u0301\u200b\u212a"  # combining acute, zero-width space, Kelvin sign
)
look_alike_locals = st.builds(
    lambda prefix, odd, suffix: prefix + odd + suffix,
    st.text(alphabet=ATEXT, max_size=8),
    st.text(alphabet=LOOK_ALIKES, min_size=1, max_size=3),
    st.text(alphabet=ATEXT, max_size=8),
)
# Lengths at the limits: 64 characters before the @, 254 in all, 63 in a label.
at_limits = (
    st.builds(
        lambda local, label, tld: f"{'a' * local}@{'b' * label}.{tld}",
        st.integers(min_value=62, max_value=66),
        st.sampled_from([1, 62, 63, 64]),
        st.sampled_from(["com", "de"]),
    )
    | st.builds(
        lambda local, total: (
            f"{'a' * local}@{'b' * (total - local - 5)}.com" if total - local - 5 > 0 else "a@b.com"
        ),
        st.integers(min_value=1, max_value=66),
        st.integers(min_value=252, max_value=256),
    )
    | st.builds(
        lambda local, labels: f"{'a' * local}@{'.'.join('c' * 63 for _ in range(labels))}.com",
        st.integers(min_value=1, max_value=66),
        st.integers(min_value=2, max_value=4),
    )
)

# Local parts around the dot-atom rule: good ones, misplaced dots, quotes, spaces,
# non-ASCII letters, and lengths on both sides of 64.
local_parts = st.one_of(
    look_alike_locals,
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
    at_limits,
    st.builds(lambda local, domain: f"{local}@{domain}", look_alike_locals, st.just("example.com")),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        atoms,
        st.sampled_from(
            [
                "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
                "ex\u0430mple.com",
                "EXÄMPLE.com",
                "xn--exmple-cua.com",
            ]
        ),
    ),
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
@example("a" * 65 + "@example.com")  # one past the 64 before the @
@example("\uff41\uff44\uff41@example.com")  # a fullwidth look-alike of ada@example.com
@example("josé@example.com")  # needs SMTPUTF8
@example("ada@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com")  # the domain folds to example.com
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
    fields.plain_domain.cache_clear()

    emails = [normalize_email(f"User.{n}@Cached-Domain.example.com") for n in range(100)]

    assert emails[7] == "user.7@cached-domain.example.com"
    assert calls == ["a@Cached-Domain.example.com"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("josé@example.com", "Internationalized characters before the @-sign"),
        ("\uff41\uff44\uff41@example.com", "Internationalized characters before the @-sign"),
        ("\u0430da@example.com", "Internationalized characters before the @-sign"),  # a Cyrillic a
        ("a" * 65 + "@example.com", "too long before the @-sign"),
    ],
)
def test_an_address_the_service_cannot_deliver_is_refused_with_its_reason(
    address: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        clean_email(address)


def test_an_internationalised_domain_is_kept_in_unicode_and_a_look_alike_domain_folds() -> None:
    assert clean_email("User@Exämple.com") == "user@exämple.com"
    assert clean_email("user@xn--exmple-cua.com") == "user@exämple.com"
    assert clean_email("ada@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com") == "ada@example.com"
    assert clean_email("a" * 64 + "@example.com") == "a" * 64 + "@example.com"
