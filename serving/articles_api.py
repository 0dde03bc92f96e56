"""Publishing an article: POST /v1/articles (the CMS, the demo page's "publish breaking story") puts an ArticleEvent
on `articles` and answers 202 once the broker acked it; the article worker and every replica take it from there.
GET /v1/articles/{news_id}/status says whether this replica serves it yet (demo, freshness benchmark)."""
from __future__ import annotations

import secrets
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data.schema import NEWS_ID_PATTERN
from serving.bounded_body import bounded_body
from serving.errors import InvalidInput, NotReady
from serving.settings import ServeSettings
from streaming.events import ArticleEvent, Label
from streaming.producer import PublishError

MAX_LIFETIME_H = 30 * 24.0
RETRY_AFTER_S = 2


class ArticleIn(BaseModel):
    """What a newsroom sends; the service adds the event id, the publish time (its clock) and the expiry."""
    model_config = ConfigDict(extra="forbid")
    news_id: str | None = Field(default=None, pattern=NEWS_ID_PATTERN.pattern, description="default: a new id")
    title: str = Field(min_length=1, max_length=1_000, pattern=r"^[^\t\n\r]+$")
    abstract: str = Field(default="", max_length=5_000, pattern=r"^[^\t\n\r]*$")
    category: Label
    subcategory: Label
    lifetime_h: float = Field(default=48.0, gt=0, le=MAX_LIFETIME_H, description="hours until it expires")


def new_news_id() -> str:
    """A 12-digit id: far above the catalogue's and MIND's (5-6 digits), so collisions are a 1e-11 event."""
    return f"N{100_000_000_000 + secrets.randbelow(900_000_000_000)}"


def articles_router(settings: ServeSettings) -> APIRouter:
    router = APIRouter()
    schema = {"requestBody": {"required": True,
                              "content": {"application/json": {"schema": ArticleIn.model_json_schema()}}}}

    @router.post("/v1/articles", status_code=202, openapi_extra=schema)
    async def publish_article(request: Request) -> JSONResponse:
        body = await bounded_body(request, settings.max_body_bytes)
        try:
            article = ArticleIn.model_validate_json(body)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise InvalidInput(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}") from None
        publisher = getattr(request.app.state, "publisher", None)
        if settings.stream is None or publisher is None:
            raise NotReady("this server has no stream configured (NEWSREC_STREAM__BOOTSTRAP_SERVERS)")
        now = request.app.state.now()
        news_id = article.news_id or new_news_id()
        event = ArticleEvent(event_id=f"article-{news_id}-{secrets.token_hex(6)}", time_s=now, news_id=news_id,
                             category=article.category, subcategory=article.subcategory, title=article.title,
                             abstract=article.abstract, expire_s=now + article.lifetime_h * 3600)
        try:
            await publisher.publish(settings.stream.topics.name("articles"), news_id, [event])
        except PublishError:
            return JSONResponse({"error": "stream_unavailable", "detail": "the broker did not take the article; "
                                 "retry (the same news_id replaces, never duplicates)"}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"news_id": news_id, "event_id": event.event_id, "time_s": now,
                             "expire_s": event.expire_s}, status_code=202)

    @router.get("/v1/articles/{news_id}/status")
    async def article_status(request: Request,
                             news_id: Annotated[str, Path(pattern=NEWS_ID_PATTERN.pattern)]) -> dict:
        """Whether this replica can retrieve the article now (in its live index, inside its lifetime), and when
        it got it from the stream (Unix seconds, this host's wall clock; null for catalogue articles)."""
        if not request.app.state.ready:
            raise NotReady("model and index are still loading")
        p, now = request.app.state.pipeline, request.app.state.now()
        snap = p.index.snapshot
        rows = np.flatnonzero(snap.news_ids == news_id)
        live = rows.size > 0 and snap.publish_s[rows[0]] <= now < snap.expire_s[rows[0]]
        follower = getattr(request.app.state, "stream_follower", None)
        return {"news_id": news_id, "known": news_id in p.items.snapshot.row, "live": bool(live),
                "model_version": p.model_version,
                "streamed_at_s": None if follower is None else follower.applied_at.get(news_id)}

    return router
