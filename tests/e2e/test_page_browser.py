"""The news page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against the running
stack (serve + feature and article workers, Redis, the broker): pick a reader, see titled cards, click a story
(Kafka -> feature worker -> Redis), see the feed change, publish a breaking story and see it go live; screenshot."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from playwright.sync_api import expect, sync_playwright

from feature_store import keys

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
FEED_CHANGE_TIMEOUT_MS = 15_000   # a click lands within ~1 s through the stream; the page polls until it shows

pytestmark = [pytest.mark.timeout(180)]


def _stored_history(redis_url: str, prefix: str, user: str) -> list[str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.lrange(keys.history_key(prefix, user), 0, 4)
    finally:
        client.close()


def test_reader_feed_click_changes_the_feed(stack, services):
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/bootstrap.sh does)"
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text} at {msg.location.get('url')}")
                    if msg.type == "error" else None)
            # the first sample-readers answer is the one a store timeout gives: the page must ask again
            readers_calls: list[str] = []

            def first_readers_degraded(route):
                readers_calls.append(route.request.url)
                if len(readers_calls) == 1:
                    route.fulfill(status=200, json={"readers": [], "degraded": ["store_unavailable"]})
                else:
                    route.continue_()

            page.route("**/v1/readers*", first_readers_degraded)
            page.goto(f"{stack.replicas[0]}/")
            expect(page).to_have_title(re.compile("newsrec"))

            # enter an id: a bad one is refused with a reason, a new reader gets the popular (cold-start) feed
            page.get_by_label("Or enter a reader id").fill("X1")
            page.get_by_role("button", name="Show feed").click()
            expect(page.locator("#status")).to_contain_text("not a reader id")
            page.get_by_label("Or enter a reader id").fill("U987654321")
            page.get_by_label("Or enter a reader id").press("Enter")
            expect(page.locator("#feed .card .why").first).to_contain_text("Popular now", timeout=10_000)

            # pick a sample reader (the page lists readers with a click history from Redis)
            options = page.locator("#reader-select option:not([value=''])")
            expect(options.first).to_be_attached(timeout=10_000)
            assert len(readers_calls) >= 2, readers_calls
            reader = options.first.get_attribute("value")
            assert re.fullmatch(r"U\d+", reader)
            page.get_by_label("Reader", exact=True).select_option(reader)

            cards = page.locator("#feed .card")
            expect(cards).to_have_count(10, timeout=10_000)
            expect(page.locator("#feed-title")).to_have_text(f"Top stories for {reader}")
            first = cards.first
            title = first.locator(".story").inner_text()
            assert title and not title.startswith("Story N"), f"a card without a real title: {title!r}"
            expect(first.locator(".chip")).not_to_be_empty()
            expect(first.locator("time")).to_have_text(re.compile(r"ago|just now"))
            expect(first.locator(".why")).to_contain_text(re.compile(r"model v\d+.*score\s-?\d"))
            before = cards.evaluate_all("els => els.map(e => e.dataset.newsId)")

            # keyboard: Tab from the reader picker reaches a story button
            page.locator("#reader-id").focus()
            for _ in range(4):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.classList.contains('story')"):
                    break
            assert page.evaluate("document.activeElement.classList.contains('story')"), "Tab never reached a story"

            # click a story: the page posts the click event, then polls the feed until it changes
            clicked, clicked_title = before[1], cards.nth(1).locator(".story").inner_text()
            cards.nth(1).locator(".story").click()
            expect(page.locator("#status")).to_contain_text("Feed updated", timeout=FEED_CHANGE_TIMEOUT_MS)
            after = cards.evaluate_all("els => els.map(e => e.dataset.newsId)")
            assert after != before and clicked not in after
            assert _stored_history(services.redis_url, stack.cfg.prefix, reader)[0] == clicked
            expect(page.locator("#history .h-title").first).to_have_text(clicked_title)
            expect(page.locator("#feed .card.is-new").first).to_be_visible()

            # side panel: trending with titles, live latency from this page's own requests
            expect(page.locator("#trending li")).to_have_count(5, timeout=10_000)
            # the server refreshes popularity from Redis every 5 s and the panel every 5 s: clicks show up
            expect(page.locator("#trending .t-meta").first).to_contain_text(re.compile(r"[1-9]\d* recent click"),
                                                                         timeout=12_000)
            expect(page.locator("#lat-p50")).to_have_text(re.compile(r"^\d+ ms$"))
            expect(page.locator("#stages li").first).to_contain_text("ms")

            # publish a breaking story: to Kafka, through the article worker's item tower, into this replica's index
            with page.expect_response(lambda r: r.url.endswith("/v1/articles") and r.request.method == "POST") as rsp:
                page.get_by_role("button", name="Publish breaking story").click()
            assert rsp.value.status == 202, f"POST /v1/articles: {rsp.value.status} {rsp.value.text()[:300]}"
            expect(page.locator("#publish-status")).to_contain_text(f"{rsp.value.json()['news_id']} is live",
                                                                    timeout=FEED_CHANGE_TIMEOUT_MS)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
        finally:
            browser.close()
    assert not errors, errors
