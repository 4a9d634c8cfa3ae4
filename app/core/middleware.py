"""Request ids (one per request, on every log line, in the response, and in audit entries),
and the end of a shutdown's grace."""

import asyncio
import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import ServiceUnavailable, render_problem
from app.core.logging import log_context
from app.core.shutdown import Shutdown

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Plain ASGI rather than BaseHTTPMiddleware: it stays in the call that runs the
    background tasks, so they log with the request id of the request that made them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = (
            dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        )
        # A caller's id is kept when it is harmless, so a trace spans services.
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class ShutdownCutoffMiddleware:
    """A request cut off because the shutdown grace ran out ends quietly.

    When SHUTDOWN_GRACE_SECONDS is over, uvicorn cancels the requests still
    running, background tasks included. The runner hands their rows back,
    and uvicorn says once how many it cancelled; left alone, the cancellation
    would also reach uvicorn as an "Exception in ASGI application", with a
    traceback per request, for what is the expected end of a shutdown. So it
    stops here: a request that has not answered yet gets a 503 (retry
    elsewhere), one that has is done. Any other cancellation goes on.
    """

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app = app
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered = False

        async def noting_send(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.shutdown.requested.is_set() or task is None:
                raise
            task.uncancel()
            logger.debug("cut off by the end of the shutdown grace: %s", scope["path"])
            if not answered:
                shutting_down = ServiceUnavailable(
                    "The server is shutting down; retry the request."
                )
                response = render_problem(
                    shutting_down, scope["path"], {"Connection": "close", "Retry-After": "1"}
                )
                await response(scope, receive, send)
