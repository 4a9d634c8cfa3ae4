"""The mailer against a real SMTP server: connections reused, failures classified."""

import asyncio
import email
import email.base64mime
import email.quoprimime
import string
from email import policy

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.integrations.errors import PermanentDeliveryError, TransientDeliveryError
from app.integrations.mailer import Mailer, NotSendable, OutgoingMessage, compose
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer


def message(number: int) -> OutgoingMessage:
    return compose(
        sender="Signup Service <no-reply@example.com>",
        to=f"user{number}@example.com",
        subject="Hello",
        text="plain",
        html="<p>html</p>",
        message_id=f"<m{number}@example.com>",
    )


def mailer_for(smtp: SMTPServer, pool_size: int = 2) -> Mailer:
    return Mailer(host=smtp.host, port=smtp.port, timeout=5, pool_size=pool_size)


async def test_messages_reuse_pooled_connections(smtp: SMTPServer) -> None:
    mailer = mailer_for(smtp, pool_size=2)
    try:
        await asyncio.gather(*(mailer.send(message(n)) for n in range(20)))
    finally:
        await mailer.close()

    assert len(smtp.messages) == 20
    assert smtp.connections <= 2


async def test_a_failed_send_does_not_poison_the_next_one(smtp: SMTPServer) -> None:
    mailer = mailer_for(smtp, pool_size=1)
    smtp.reply_to_data("451 4.3.0 busy")
    try:
        with pytest.raises(TransientDeliveryError, match="451"):
            await mailer.send(message(1))
        await mailer.send(message(2))
    finally:
        await mailer.close()

    assert [m.message_id for m in smtp.messages] == ["<m2@example.com>"]


async def test_5xx_is_permanent(smtp: SMTPServer) -> None:
    mailer = mailer_for(smtp)
    smtp.reply_to_data("554 5.7.1 rejected")
    try:
        with pytest.raises(PermanentDeliveryError, match="554"):
            await mailer.send(message(1))
    finally:
        await mailer.close()


async def test_a_closed_port_is_transient() -> None:
    mailer = Mailer(host="127.0.0.1", port=free_port(), timeout=2)

    with pytest.raises(TransientDeliveryError, match="connection failed"):
        await mailer.send(message(1))


def test_compose_refuses_a_header_value_with_a_line_break() -> None:
    with pytest.raises(NotSendable, match="line break"):
        compose(
            sender="a@example.com",
            to="b@example.com",
            subject="Hi\r\nBcc: mallory@example.com",
            text="t",
            html="h",
            message_id="<x@example.com>",
        )


# Encoded words (RFC 2047) with line breaks and headers in them, in q and b encodings.
encoded_breaks = st.builds(
    lambda encode, charset, text: encode(text.encode(charset), charset),
    st.sampled_from([email.base64mime.header_encode, email.quoprimime.header_encode]),
    st.sampled_from(["utf-8", "iso-8859-1", "us-ascii"]),
    st.builds(
        lambda before, brk, header, after: f"{before}{brk}{header}: {after}",
        st.text(alphabet=string.ascii_letters + " ", max_size=8),
        st.sampled_from(["\r\n", "\n", "\r", "\r\n\r\n"]),
        st.sampled_from(["Bcc", "Reply-To", "From", "To", "Content-Type"]),
        st.sampled_from(["victim@example.com", "text/html"]),
    ),
)
subjects = st.one_of(
    st.text(min_size=1, max_size=80),
    encoded_breaks,
    st.builds(
        lambda a, b, c: f"{a} {b} {c}", st.text(max_size=10), encoded_breaks, st.text(max_size=10)
    ),
)
COMPOSED_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]


@settings(max_examples=500, deadline=None)
@given(subjects)
@example("=?utf-8?q?Hi=0D=0ABcc:_victim@example.com?=")
def test_a_composed_message_reads_back_with_only_its_own_headers_and_the_subject_as_written(
    subject: str,
) -> None:
    """On the interpreter running the suite: either compose refuses, or the message as
    it goes on the wire, parsed again, has exactly its own headers and the subject."""
    try:
        message = compose(
            sender="Signup Service <no-reply@example.com>",
            to="ada@example.com",
            subject=subject,
            text="t",
            html="h",
            message_id="<x@example.com>",
        )
    except NotSendable:
        return

    parsed = email.message_from_bytes(message.as_bytes(), policy=policy.default)

    assert sorted(parsed.keys()) == sorted(COMPOSED_HEADERS)
    # Spaces between "Subject:" and the text are the header's, not the text's
    # (RFC 5322 folding): a reader never shows them, whoever sends the mail.
    assert parsed["Subject"] == subject.lstrip(" ")
