"""schemathesis hooks for tests/e2e/test_api_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Every check runs on every case. What is adjusted here is what no schema can
say, or what schemathesis cannot see, and nothing else:

- `webhook_url`: the SSRF guard takes only a URL whose host resolves (to the
  test's receiver on loopback here, the server allowing private targets).
  A generated URL, or the schema's example on example.com where there is no
  DNS, is refused for the state of the world, not for its shape.
- `Idempotency-Key`: the same key with another body is refused (422, as the
  IETF draft says), and Hypothesis favours short keys, so generated requests
  would reuse keys across bodies. Each valid case gets a key of its own;
  replays and reuse are tested in tests/routers.
- Email domains: email-validator refuses the special-use names of RFC 6761
  (.test, .invalid, ...), which `format: email` does not exclude. Valid cases
  (bodies, and the lookup's query) are kept off them, until the Email schema
  says so itself.
- Multipart bodies: every part is text on the wire, so a value schemathesis
  generated as another type (an object, an array) arrives as text a string
  field takes. It reports the server accepting that as accepting invalid
  data, a confusion it already avoids for query and path parameters.
"""

import os
import uuid
from typing import Any

import schemathesis
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from schemathesis import Case, Response
from schemathesis.core.failures import AcceptedNegativeData, Failure
from schemathesis.core.mutations import OperatorKind
from schemathesis.hooks import HookContext

WEBHOOK_URL = os.environ["FUZZ_WEBHOOK_URL"]
AnyCase = Case[Any]


def _valid_for_this_world(case: AnyCase) -> AnyCase:
    if isinstance(case.body, dict):
        body = dict(case.body)
        if body.get("webhook_url") is not None:
            body["webhook_url"] = WEBHOOK_URL
        email = body.get("email")
        if isinstance(email, str):
            body["email"] = _off_special_use_domains(email)
        case.body = body
    if case.query and isinstance(case.query.get("email"), str):  # GET /users?email=
        case.query["email"] = _off_special_use_domains(case.query["email"])
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    return case


def _off_special_use_domains(address: str) -> str:
    local, at, domain = address.rpartition("@")
    for name in SPECIAL_USE_DOMAIN_NAMES:
        if domain.lower() == name or domain.lower().endswith("." + name):
            return f"{local}{at}{domain[: -len(name)]}com"
    return address


@schemathesis.hook
def map_case(context: HookContext, case: AnyCase) -> AnyCase:
    """Generated cases (coverage, fuzzing and stateful phases): the valid ones."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    return _valid_for_this_world(case)


@schemathesis.hook
def before_add_examples(context: HookContext, examples: list[AnyCase]) -> None:
    """The schema's own examples (examples phase)."""
    for case in examples:
        _valid_for_this_world(case)


@schemathesis.hook
def filter_failure(
    context: HookContext, failure: Failure, case: AnyCase, response: Response
) -> bool:
    """Keep every failure except an accepted multipart body whose only "violations" are
    values of another type, which reach the server as the text it expects."""
    if not isinstance(failure, AcceptedNegativeData) or case.media_type != "multipart/form-data":
        return True
    mutations = getattr(case.meta.phase.data, "mutations", ()) if case.meta else ()
    return not (mutations and all(m.operator is OperatorKind.CHANGE_TYPE for m in mutations))
