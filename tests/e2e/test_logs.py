"""What the service logs about people: their ids, never their addresses or names."""

import asyncio
from pathlib import Path

from tests.support.keys import SERVER_KEY
from tests.support.server import ServerProcess
from tests.support.waiting import eventually_async

PEOPLE = [(f"person{n}@example.com", f"Quinlan Voss{n}") for n in range(12)]
REJECTED = [("mallory@example.com", "Mallory\u0007Bell"), ("not-an-email", "Ottoline Quark")]


async def test_a_busy_runs_log_carries_ids_and_no_address_or_name(tmp_path: Path) -> None:
    """The embedded default (its local mail capture included) at DEBUG, through every
    path that handles an address: signups, a duplicate, refusals, an import with
    rejected rows, email notifications, a resend, lookups by address."""
    server = ServerProcess(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "DEBUG",
            "RECOVERY_GRACE_SECONDS": "0",
            "BOOTSTRAP_API_KEY": SERVER_KEY,
        },
        tmp_path / "server.log",
    ).start()
    try:
        async with server.client(timeout=30) as http:
            signups = await asyncio.gather(
                *(http.post("/signups", json={"email": e, "name": n}) for e, n in PEOPLE)
            )
            user_ids = [response.json()["id"] for response in signups]
            duplicate = await http.post("/signups", json={"email": PEOPLE[0][0], "name": "X"})
            for email, name in REJECTED:
                await http.post("/signups", json={"email": email, "name": name})
            rows = "".join(f"{e},{n}\n" for e, n in [("imported@example.com", "Imra Dunmore")])
            rows += "".join(f"{e},{n}\n" for e, n in REJECTED)
            upload = await http.post(
                "/uploads", files={"file": ("people.csv", f"email,name\n{rows}", "text/csv")}
            )
            for user_id in user_ids[:4]:
                await http.post(
                    f"/users/{user_id}/notifications",
                    json={"channel": "email", "subject": "Report", "body": "Ready."},
                )
            await http.post(f"/users/{user_ids[0]}/welcome-email/resend")
            # Lookups by address put it in the URL, which the access log shows.
            await http.get("/users", params={"email": PEOPLE[1][0]})
            await http.get("/console/people/search", params={"query": PEOPLE[2][0]})

            async def every_message_captured() -> bool:
                mail = list((tmp_path / "data" / "mail").glob("*.eml"))
                imported = (await http.get(upload.headers["location"])).json()
                return len(mail) >= len(PEOPLE) + 4 + 1 + 1 and imported["status"] == "succeeded"

            await eventually_async(every_message_captured, timeout=30, what="the mail")
    finally:
        server.stop()

    assert duplicate.status_code == 409
    log = server.log()
    assert "mail captured" in log
    assert any(user_id in log for user_id in user_ids)  # lines name the rows they are about
    for email, name in [*PEOPLE, *REJECTED, ("imported@example.com", "Imra Dunmore")]:
        assert email not in log
        assert email.replace("@", "%40") not in log
        assert name.split("\u0007")[0] not in log
