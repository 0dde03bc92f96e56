"""Responses by path and status (the golden signals' traffic and errors), counted by a pure ASGI middleware that
also sees admission sheds and the 500s Starlette renders outside it."""
from __future__ import annotations

from prometheus_client import Counter

from serving.admission import ASGIApp, Message, Receive, Scope, Send

COUNTED_PATHS = ("/v1/recommend", "/v1/events", "/v1/articles")  # every other path is "other": bounded labels


class ResponseCounter:
    def __init__(self, app: ASGIApp, responses: Counter, paths: tuple[str, ...] = COUNTED_PATHS) -> None:
        self.app, self.responses, self.paths = app, responses, frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = None

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if status is None:
                status = 500  # Starlette's outermost ServerErrorMiddleware answers it, beyond this send
            raise
        finally:
            if status is not None:  # None: the client went away before any answer
                self.responses.labels(path, str(status)).inc()
