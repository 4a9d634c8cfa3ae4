"""The service as a real uvicorn process: the response never waits for the mail server."""

import httpx

from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually, eventually_async


async def test_signup_answers_while_the_smtp_server_holds_the_message(
    server: ServerProcess, smtp: SMTPServer
) -> None:
    smtp.stall()  # no DATA command will be answered until we say so

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
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
