"""The service as a real uvicorn process: the response never waits for the mail server."""

from collections.abc import Callable

from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually, eventually_async
from tests.support.webhooks import Reply, WebhookReceiver


async def test_signup_answers_while_the_smtp_server_holds_the_message(
    server: ServerProcess, smtp: SMTPServer
) -> None:
    smtp.stall()  # no DATA command will be answered until we say so

    async with server.client(timeout=10) as http:
        response = await http.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
        assert response.status_code == 201
        user_url = response.headers["location"]
        await eventually(lambda: smtp.data_commands >= 1, what="the send to start")
        during = (await http.get(user_url)).json()["welcome_email"]

        smtp.unstall()

        async def settled() -> dict[str, object]:
            state: dict[str, object] = (await http.get(user_url)).json()["welcome_email"]
            return state if state["status"] == "succeeded" else {}

        after = await eventually_async(settled, timeout=20, what="the welcome email to succeed")

    assert during["status"] == "running"
    assert after["attempts"] == 2  # the stalled attempt was answered 451, the next one sent
    assert len(smtp.messages) == 1


async def test_a_notification_is_answered_while_the_webhook_receiver_holds_its_reply(
    server_env: dict[str, str], start_server: Callable[..., ServerProcess]
) -> None:
    env = {**server_env, "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true", "WEBHOOK_TIMEOUT_SECONDS": "10"}
    server = start_server(env)
    with WebhookReceiver() as receiver:
        receiver.reply_with(Reply(200, delay=4))  # held well past the 202
        async with server.client(timeout=10) as http:
            signup = await http.post(
                "/signups",
                json={"email": "ada@example.com", "name": "Ada", "webhook_url": receiver.url},
            )
            receiver.secret = signup.json()["webhook_secret"]

            response = await http.post(
                f"/users/{signup.json()['id']}/notifications",
                json={"channel": "webhook", "subject": "Hi", "body": "There"},
            )
            await eventually(receiver.count, what="the delivery to start")
            during = (await http.get(response.headers["location"])).json()["status"]

            async def settled() -> str:
                status: str = (await http.get(response.headers["location"])).json()["status"]
                return status if status == "succeeded" else ""

            await eventually_async(settled, timeout=20, what="the delivery to succeed")

    assert response.status_code == 202
    assert during == "running"  # answered while the receiver still held its reply
    [request] = receiver.requests
    assert request.verified
