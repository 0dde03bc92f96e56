"""Structured logs: one JSON object per line, each carrying the id of the request it was written under.

`RequestIdMiddleware` (pure ASGI) takes a well-formed `X-Request-Id` from the client or makes one, keeps it in a
context variable and `scope["state"]` for the request's duration, and returns it on every response."""
from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

from serving.admission import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
# A client's id is echoed into our logs and headers: accept only short, plain ids, never arbitrary text.
REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_request_id: ContextVar[str | None] = ContextVar("newsrec_request_id", default=None)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def current_request_id() -> str | None:
    """The id of the request this code runs for, or None outside a request."""
    return _request_id.get()


def request_id_of(state: Any) -> str:
    """The request id of a Starlette `request.state` (set by the middleware), or a fresh one."""
    return getattr(state, "request_id", None) or uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        header = (REQUEST_ID_HEADER, request_id.encode())
        # scope["state"] is what request.state reads: the app's 500 handler runs outside this middleware
        # (Starlette's outermost ServerErrorMiddleware), after the context variable below is reset.
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = _request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode() if REQUEST_ID_OK.match(value) else None
    return None


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", "request_id"?, "exc"?, and any `extra=` fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            out["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def install_json_logging(logger_name: str = "newsrec", level: int = logging.INFO) -> logging.Handler:
    """Send `logger_name`'s records to stderr as JSON lines; idempotent (one handler however often called)."""
    logger = logging.getLogger(logger_name)
    for handler in logger.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
