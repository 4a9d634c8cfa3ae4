"""`python -m bench.webhook_sink --port P`: an HTTP receiver that answers 200 to every POST.

Run by the webhook benchmark as its own process, so its work does not share
the load generator's interpreter. It counts requests and distinct
`webhook-id`s per path; `GET /stats` returns them as JSON.
"""

import argparse
import json
from collections import defaultdict

import uvicorn
from starlette.types import Receive, Scope, Send

_counts: defaultdict[str, int] = defaultdict(int)
_ids: defaultdict[str, set[str]] = defaultdict(set)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    body = b""
    if scope["method"] == "GET" and scope["path"] == "/stats":
        stats = {path: {"requests": n, "ids": len(_ids[path])} for path, n in _counts.items()}
        body = json.dumps(stats).encode()
    else:
        _counts[scope["path"]] += 1
        for name, value in scope["headers"]:
            if name == b"webhook-id":
                _ids[scope["path"]].add(value.decode())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        interface="asgi3",
    )


if __name__ == "__main__":
    main()
