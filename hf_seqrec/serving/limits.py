"""Bounds on what one request may cost the service: the bytes of its body, and its time.

Histories, batches and ``top_k`` are bounded by the request schema, but only once the body has been
read and parsed: without a byte limit a 20 MB body is read and parsed in full before validation
refuses it. So the body is refused with 413 before it is parsed, on its ``Content-Length`` header
when it has one, and while it is read otherwise (a chunked body has no length up front): reading
stops at the first byte over ``max_body_bytes``.

A request that has no answer after ``request_timeout_s`` (a model stuck behind a long queue, a
client sending its body byte by byte) gets 503 with ``Retry-After`` instead of holding its
connection open; its histories, if still waiting for the model, are dropped from the queue.
Both refusals are counted in ``seqrec_rejected_requests_total{reason}``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_REQUEST_TIMEOUT_S = 30.0
BODY_TOO_LARGE = "body_too_large"
TIMEOUT = "timeout"


class BodyTooLarge(HTTPException):
    """A request body over the limit: a 413 naming the body, what was sent and what is accepted.

    An ``HTTPException`` so that FastAPI, which turns other errors raised while it reads a body into a
    400, passes it on and Starlette answers it like any other HTTP error.
    """

    def __init__(self, received: str, limit: int) -> None:
        message = f"the request body is {received}; at most {limit} bytes are accepted (max_body_bytes)"
        super().__init__(status_code=413, detail=[{"type": BODY_TOO_LARGE, "loc": ["body"], "msg": message}])


class RequestLimitsMiddleware:
    """ASGI middleware: 413 for a body over ``max_body_bytes``, 503 for a request over ``request_timeout_s``.

    The body limit acts where the body is read (the ``receive`` the app calls), so routes that never
    read a body are not affected and the route that does is known when the request is counted.
    ``on_reject(reason)`` is called once per refused request.
    """

    def __init__(
        self, app: Any, *, max_body_bytes: int, request_timeout_s: float, on_reject: Callable[[str], None] = lambda reason: None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s
        self.on_reject = on_reject

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        received = 0
        response_started = False

        def refuse(size: str) -> BodyTooLarge:
            self.on_reject(BODY_TOO_LARGE)
            return BodyTooLarge(size, self.max_body_bytes)

        async def limited_receive() -> dict:
            nonlocal received
            if declared is not None and declared > self.max_body_bytes:
                raise refuse(f"{declared} bytes (Content-Length)")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise refuse(f"more than {self.max_body_bytes} bytes (read so far: {received})")
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, limited_receive, tracked_send), self.request_timeout_s)
        except BodyTooLarge as error:  # raised past the app (a route without Starlette's error handling)
            if response_started:
                raise
            await _send_json(send, error.status_code, {"detail": error.detail})
        except asyncio.TimeoutError:
            if response_started:
                raise
            detail = f"no answer within {self.request_timeout_s:g} s (request_timeout_s); retry shortly"
            await _send_json(send, 503, {"detail": detail}, {"retry-after": "1"})
            self.on_reject(TIMEOUT)


def _content_length(scope: dict) -> int | None:
    """The declared body length, or None (no header, or one the server would have refused as malformed)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Callable[[dict], Awaitable[None]], status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    raw_headers += [(key.encode("latin-1"), value.encode("latin-1")) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
