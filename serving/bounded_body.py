"""Reading a request body under a size limit, for the routes that parse JSON themselves (events, articles)."""
from __future__ import annotations

from fastapi import Request

from serving.errors import PayloadTooLarge


async def bounded_body(request: Request, max_bytes: int) -> bytes:
    """The body, or PayloadTooLarge (413) when its declared or actual size is over max_bytes."""
    size = int(request.headers.get("content-length") or 0)
    body = await request.body() if size <= max_bytes else b""
    if size > max_bytes or len(body) > max_bytes:
        raise PayloadTooLarge(f"body over {max_bytes} bytes")
    return body
