"""The demo news page at `/` (plain HTML/CSS/JS from serving/static, no build step, no CDN) and the small read-only
JSON endpoints it needs: article metadata, trending, sample readers, a reader's recent reads, topics."""
from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from data.schema import NEWS_ID_PATTERN, USER_ID_PATTERN
from feature_store import keys
from serving.errors import InvalidInput, NotReady
from serving.pipeline import trending
from serving.settings import ServeSettings

STATIC_DIR = Path(__file__).parent / "static"
STATIC_NAME = re.compile(r"^[a-z0-9_-]{1,64}\.(css|js|svg)$")
MEDIA_TYPES = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}
MAX_ARTICLE_IDS = 100
STORE_READ_S = 0.2         # metadata reads are off the request path's budget, but a page must not hang on them
SCAN_CALLS, SCAN_COUNT = 10, 1_000   # /v1/readers examines at most 10k keys: bounded even on a big keyspace
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _article(news_id: str, title: str, category: str, subcategory: str, publish_s: float, now_s: float) -> dict:
    return {"news_id": news_id, "title": title, "category": category, "subcategory": subcategory,
            "publish_s": publish_s, "age_s": round(max(now_s - publish_s, 0.0), 1)}


def page_router(settings: ServeSettings) -> APIRouter:
    router = APIRouter()
    titles: dict[str, str] = {}      # catalogue titles, read once on first need: the fallback when Redis is out
    titles_read = asyncio.Event()
    titles_lock = asyncio.Lock()

    async def catalogue_titles() -> dict[str, str]:
        async with titles_lock:
            if not titles_read.is_set() and settings.catalogue_dir is not None:
                from feature_store.materialize import read_titles

                titles.update(await asyncio.to_thread(read_titles, settings.catalogue_dir))
            titles_read.set()
        return titles

    def ready(request: Request):
        if not request.app.state.ready:
            raise NotReady("model and index are still loading")
        return request.app.state.pipeline, request.app.state.now()

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if not STATIC_NAME.match(name) or not (STATIC_DIR / name).is_file():
            return JSONResponse({"error": "not_found", "detail": f"no static file {name!r}"}, status_code=404)
        return FileResponse(STATIC_DIR / name, media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
                            headers={"Cache-Control": "no-cache"})

    @router.get("/v1/articles")
    async def articles(request: Request, ids: Annotated[str, Query(max_length=MAX_ARTICLE_IDS * 14,
                                                                   description="Comma-separated news ids")]) -> dict:
        """Title, category, subcategory, publish time and age (by the service's clock) of up to 100 articles:
        from the store's item features (the materializer and the article ingestor write them), else the
        in-process item table with the catalogue's titles."""
        news_ids = list(dict.fromkeys(i.strip() for i in ids.split(",") if i.strip()))
        if not news_ids:
            raise InvalidInput("ids: give at least one news id")
        if len(news_ids) > MAX_ARTICLE_IDS:
            raise InvalidInput(f"ids: at most {MAX_ARTICLE_IDS} news ids")
        bad = next((n for n in news_ids if not NEWS_ID_PATTERN.match(n)), None)
        if bad is not None:
            raise InvalidInput(f"ids: {bad[:20]!r} is not a news id like N123")
        p, now = ready(request)
        degraded: list[str] = []
        try:
            stored = await asyncio.wait_for(p.store.get_item_features(tuple(news_ids)), STORE_READ_S)
        except request.app.state.store_errors:
            stored, degraded = [None] * len(news_ids), ["store_unavailable"]
        table = p.items.snapshot
        rows = table.rows(news_ids)
        fallback = await catalogue_titles() if any(f is None for f in stored) else {}
        found, missing = [], []
        for n, f, row in zip(news_ids, stored, rows):
            if f is not None:
                found.append(_article(n, f.title, f.category, f.subcategory, f.publish_s, now))
            elif row >= 0:
                found.append(_article(n, fallback.get(n, ""), str(table.category[row]), str(table.subcategory[row]),
                                      float(table.publish_s[row]), now))
            else:
                missing.append(n)
        return {"now_s": now, "articles": found, "missing": missing, "degraded": degraded}

    @router.get("/v1/trending")
    async def trending_route(request: Request, k: Annotated[int, Query(ge=1, le=50)] = 5) -> dict:
        """The most-clicked live articles (6 h half-life clicks, category-capped), from the index's counters."""
        p, now = ready(request)
        ids, scores = trending(p, k, now)
        cats = p.items.snapshot.labels(p.items.snapshot.rows(ids), "category")
        return {"now_s": now, "items": [{"news_id": n, "clicks_6h": round(math.expm1(s), 2), "category": str(c)}
                                        for n, s, c in zip(ids, scores, cats)]}

    @router.get("/v1/readers")
    async def readers(request: Request, n: Annotated[int, Query(ge=1, le=50)] = 12) -> dict:
        """Up to n reader ids with a click history, from a bounded SCAN of the store's history keys."""
        p, _ = ready(request)
        # Listing readers is no part of the FeatureStore contract (serving never needs it); a Redis-backed store
        # exposes its client, any other store answers with an empty list that says why.
        redis = getattr(p.store, "redis", None)
        if redis is None:
            return {"readers": [], "degraded": ["store_cannot_list_readers"]}
        head, tail = keys.history_key(p.store.config.prefix, "\0").split("\0")
        pattern = f"{_glob_escape(head)}*{_glob_escape(tail)}"
        found: set[str] = set()
        degraded: list[str] = []
        cursor = 0
        try:
            for _ in range(SCAN_CALLS):
                cursor, batch = await redis.scan(cursor, match=pattern, count=SCAN_COUNT)
                for key in batch:
                    user = key[len(head):len(key) - len(tail)]
                    if USER_ID_PATTERN.match(user):
                        found.add(user)
                if cursor == 0 or len(found) >= n:
                    break
        except request.app.state.store_errors:
            degraded.append("store_unavailable")  # the readers found before the failure are still readers
        return {"readers": sorted(found, key=lambda u: int(u[1:]))[:n], "degraded": degraded}

    @router.get("/v1/users/{user_id}/history")
    async def history(request: Request, user_id: Annotated[str, PathParam(pattern=USER_ID_PATTERN.pattern)],
                      n: Annotated[int, Query(ge=1, le=50)] = 5) -> dict:
        """The reader's most recent clicks, newest first (what the feed's model reads)."""
        p, now = ready(request)
        try:
            user = await asyncio.wait_for(p.store.get_user(user_id, now), STORE_READ_S)
        except request.app.state.store_errors:
            return {"user_id": user_id, "history": [], "history_len": None, "degraded": ["store_unavailable"]}
        return {"user_id": user_id, "history": list(user.history[:n]), "history_len": user.history_len,
                "degraded": []}

    @router.get("/v1/topics")
    async def topics(request: Request) -> dict:
        """Categories and their subcategories known to the item table (the publish form's choices)."""
        p, _ = ready(request)
        table = p.items.snapshot
        pairs = sorted(set(zip(table.category.tolist(), table.subcategory.tolist())))
        out: dict[str, list[str]] = {}
        for c, s in pairs:
            out.setdefault(str(c), []).append(str(s))
        return {"topics": [{"category": c, "subcategories": subs} for c, subs in out.items()]}

    return router

