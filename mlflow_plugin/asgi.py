"""MLflow's own scoring app behind two guards: a request-body cap and short error replies.

``mlflow models serve`` reads a whole request body into memory before any model code
runs (a 16 MB body cost 25 s and 530 MB of RSS) and echoes the input back in its
error replies (all 5 MB of a bad JSON body; kilobytes of pixels before the reason of
a 400). Neither is configurable in MLflow, and the pyfunc sees the request only after
both happened. So :func:`guard` wraps MLflow's unchanged scoring app (same routes,
same request and response formats) in an ASGI middleware that:

* answers ``413`` as soon as ``Content-Length`` (or the streamed body) exceeds
  ``max_body_bytes``, without reading the rest;
* rewrites an error reply so that the reason comes first and the echoed input is cut
  to a short excerpt (``max_error_chars`` in all), stack traces included.

``odin-monitor serve`` (and :func:`mlflow_plugin.serving.running_server` with
``guarded=True``) runs it with uvicorn; ``mlflow_plugin._server_app:app`` is the
uvicorn target, configured by the environment variables :data:`MAX_BODY_ENV` and
:data:`MAX_ERROR_ENV`. For stock ``mlflow models serve``, put a proxy with a body
limit in front (e.g. nginx ``client_max_body_size``).

Example:
    >>> async def app(scope, receive, send): ...
    >>> guarded = guard(app, max_body_bytes=1024)
    >>> guarded.max_body_bytes
    1024
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ERROR_CHARS",
    "MAX_BODY_ENV",
    "MAX_ERROR_ENV",
    "BodyCapMiddleware",
    "guard",
    "shorten_error",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: 64 MiB: a batch of 256 CIFAR-sized images as float JSON is about 16 MiB.
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
DEFAULT_MAX_ERROR_CHARS = 2000
MAX_BODY_ENV = "ODIN_SERVE_MAX_BODY_BYTES"
MAX_ERROR_ENV = "ODIN_SERVE_MAX_ERROR_CHARS"
_EXCERPT = 200

# MLflow's echoes: "Failed to predict data '<data>'. \nError: <reason>" and
# "Ensure that input is a valid JSON formatted string. Error: '<err>'\nInput: \n<body>\n".
_PREDICT_ECHO = re.compile(
    r"^Failed to predict data '(?P<data>.*)'\. \nError: (?P<reason>.*)$", re.S
)
_JSON_ECHO = re.compile(r"^(?P<reason>.*?)\nInput: \n(?P<data>.*)$", re.S)


def _excerpt(text: str, limit: int = _EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters cut)"


def shorten_error(message: str, max_chars: int = DEFAULT_MAX_ERROR_CHARS) -> str:
    """The reason first, the echoed input cut to an excerpt, at most ``max_chars`` in all.

    Example:
        >>> shorten_error("Failed to predict data '[[1.0, 2.0]]'. \\nError: Expected [0, 1]")
        'Expected [0, 1] (input: [[1.0, 2.0]])'
    """
    for pattern in (_PREDICT_ECHO, _JSON_ECHO):
        found = pattern.match(message)
        if found:
            reason = found.group("reason").strip()
            message = f"{reason} (input: {_excerpt(found.group('data'))})"
            break
    if len(message) > max_chars:
        message = f"{message[: max(max_chars - 40, 0)]}… ({len(message)} characters in all)"
    return message


async def _reply(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyCapMiddleware:
    """Pure ASGI middleware: cap request bodies and shorten error replies.

    Args:
        app: The wrapped ASGI app (MLflow's scoring app).
        max_body_bytes: Largest request body accepted; larger ones get 413.
        max_error_chars: Longest ``message`` (and ``stack_trace``) of an error reply.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_error_chars: int = DEFAULT_MAX_ERROR_CHARS,
    ) -> None:
        if max_body_bytes < 1 or max_error_chars < 80:
            raise ValueError(
                f"Expected max_body_bytes >= 1 and max_error_chars >= 80, but got "
                f"{max_body_bytes} and {max_error_chars}."
            )
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.max_error_chars = int(max_error_chars)

    def _too_large(self, size: int | str) -> dict[str, str]:
        return {
            "error_code": "REQUEST_TOO_LARGE",
            "message": (
                f"Expected a request body of at most {self.max_body_bytes} bytes, but got "
                f"{size}. Send fewer images per request (or raise {MAX_BODY_ENV})."
            ),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (HTTP requests are capped, errors shortened)."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _reply(
                    send, 400, {"error_code": "BAD_REQUEST", "message": "Bad Content-Length."}
                )
                return
            if size > self.max_body_bytes:
                await _reply(send, 413, self._too_large(size))
                return
        # Read the body here, counting, so a chunked body cannot grow past the cap.
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_body_bytes:
                await _reply(send, 413, self._too_large(f"more than {self.max_body_bytes}"))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def replayed() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, replayed, self._shortening(send))

    def _shortening(self, send: Send) -> Send:
        state: dict[str, Any] = {"start": None, "body": []}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) >= 400:
                state["start"] = message
                return
            if message["type"] == "http.response.body" and state["start"] is not None:
                state["body"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await self._send_short(send, state["start"], b"".join(state["body"]))
                return
            await send(message)

        return wrapped

    async def _send_short(self, send: Send, start: Message, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            for key in ("message", "stack_trace"):
                if isinstance(payload.get(key), str):
                    payload[key] = shorten_error(payload[key], self.max_error_chars)
            data = json.dumps(payload).encode()
        else:
            data = shorten_error(body.decode("utf-8", "replace"), self.max_error_chars).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def guard(
    app: ASGIApp,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_error_chars: int = DEFAULT_MAX_ERROR_CHARS,
) -> BodyCapMiddleware:
    """Wrap an ASGI app (MLflow's scoring app) with :class:`BodyCapMiddleware`."""
    return BodyCapMiddleware(app, max_body_bytes=max_body_bytes, max_error_chars=max_error_chars)
