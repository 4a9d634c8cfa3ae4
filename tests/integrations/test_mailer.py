"""The mailer against a real SMTP server: connections reused, failures classified."""

import asyncio
from email.message import EmailMessage

import pytest

from app.integrations.errors import PermanentDeliveryError, TransientDeliveryError
from app.integrations.mailer import Mailer, compose
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer


def message(number: int) -> EmailMessage:
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
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        compose(
            sender="a@example.com",
            to="b@example.com",
            subject="Hi\r\nBcc: mallory@example.com",
            text="t",
            html="h",
            message_id="<x@example.com>",
        )
