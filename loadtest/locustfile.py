"""Locust readers that behave like the news app: open the feed (recommend + an impression event for the shown list),
read stories (click events), refresh, now and then as an unknown reader (cold start). Readers are drawn from a
world with its activity skew. A 503 shed by admission control is a deliberate answer, reported under its own name.

  locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --newsrec-readers var/worlds/small   (web UI)
  NEWSREC_SHAPE=ramp locust -f loadtest/locustfile.py --headless --host URL --csv var/locust/ramp
Shapes and their NEWSREC_SHAPE_* parameters: loadtest/shapes.py. Every --newsrec-* option has a NEWSREC_LOCUST_* twin.
"""
from __future__ import annotations

import functools
import itertools
import os
import random
import time
import uuid
from pathlib import Path

from locust import FastHttpUser, events, task

from loadtest import shapes
from loadtest.readers import Readers, load_readers
from loadtest.stats_window import EVENTS, PREFETCH_SHED, RECOMMEND, RECOMMEND_PREFETCH, RECOMMEND_SHED

# option -> (environment variable, type, default, help)
OPTIONS = {
    "readers": ("NEWSREC_LOCUST_WORLD", str, "var/worlds/small",
                "A world directory (its behaviors.tsv) or a readers file (user_id<TAB>weight lines)."),
    "unknown_share": ("NEWSREC_LOCUST_UNKNOWN_SHARE", float, 0.05, "Share of sessions by unknown readers."),
    "user_rps": ("NEWSREC_LOCUST_USER_RPS", float, 1.0, "Tasks per second per simulated reader (1-2 requests each)."),
    "prefetch_share": ("NEWSREC_LOCUST_PREFETCH_SHARE", float, 0.1,
                       "Share of reads followed by a prefetch of the next feed (X-Prefetch: 1)."),
    "k": ("NEWSREC_LOCUST_K", int, 10, "Items per feed."),
    "honor_retry_after": ("NEWSREC_LOCUST_HONOR_RETRY_AFTER", int, 1,
                          "1: after a shed, wait Retry-After (jittered) like the app does; 0: keep the pace."),
    "replicas": ("NEWSREC_LOCUST_REPLICAS", str, "",
                 "More replicas' base URLs, comma separated: readers are spread round robin over --host and these, "
                 "each sticking to one (as a Kubernetes Service spreads connections)."),
}
_next_reader = itertools.count()
MAX_BACKOFF_S = 10.0

# Locust runs every shape class it finds in this module: bind only the one NEWSREC_SHAPE names (none: -u/-r/-t).
_shape = shapes.shape_from_env()
if _shape is not None:
    globals()[_shape.__name__] = _shape


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    for name, (env, kind, default, text) in OPTIONS.items():
        parser.add_argument(f"--newsrec-{name.replace('_', '-')}", dest=f"newsrec_{name}", type=kind,
                            env_var=env, default=default, help=text)


def option(environment, name: str):
    """A --newsrec-* option; its environment variable or default where Locust runs as a library (no options)."""
    value = getattr(environment.parsed_options, f"newsrec_{name}", None)
    if value is not None:
        return value
    env, kind, default, _ = OPTIONS[name]
    return kind(os.environ.get(env, default))


@functools.cache
def readers(source: str, unknown_share: float) -> Readers:
    return load_readers(Path(source), unknown_share)


@events.init.add_listener
def _load_readers(environment, **_) -> None:
    readers(option(environment, "readers"), option(environment, "unknown_share"))  # a bad path fails at start


@events.test_stop.add_listener
def _write_shape_results(environment, **_) -> None:
    if isinstance(environment.shape_class, shapes.RecordedShape):
        environment.shape_class.stop()


class Reader(FastHttpUser):
    """One simulated app: a sequence of reading sessions, each by a reader drawn from the world."""

    host = "http://127.0.0.1:8000"

    def __init__(self, environment) -> None:
        more = [url for url in option(environment, "replicas").split(",") if url]
        if more:  # before FastHttpUser builds its client on self.host
            hosts = [environment.host or self.host, *more]
            self.host = hosts[next(_next_reader) % len(hosts)]
        super().__init__(environment)

    def on_start(self) -> None:
        env = self.environment
        self.readers = readers(option(env, "readers"), option(env, "unknown_share"))
        self.k, self.prefetch_share = option(env, "k"), option(env, "prefetch_share")
        self.user_rps = option(env, "user_rps")
        self.honor_retry_after = bool(option(env, "honor_retry_after"))
        self.backoff_s = 0.0
        self.rng = random.Random()
        self.next_task_at = time.monotonic() + self.rng.expovariate(self.user_rps)  # a random phase from the start
        self.user_id: str | None = None
        self.feed: list[str] = []

    def wait_time(self) -> float:
        """Tasks start as a Poisson process of rate user_rps (exponential gaps, measured from the last start, so a
        slow answer does not lower the rate), or after Retry-After when shed.

        Not constant_throughput: Locust starts a step's readers at once, and fixed periods kept them in lockstep,
        every one asking in the same millisecond once per period. That burst alone queued the server (measured at
        0.3 C: p50 25 ms and 40% shed, while an open-loop generator beside it saw p50 3 ms); app readers are not
        synchronized."""
        now = time.monotonic()
        self.next_task_at = max(self.next_task_at + self.rng.expovariate(self.user_rps), now)
        wait, self.backoff_s = max(self.next_task_at - now, self.backoff_s), 0.0
        if wait == self.backoff_s and wait > 0:
            self.next_task_at = now + wait
        return wait

    @task(4)
    def open_feed(self) -> None:
        """A session starts: a new reader opens the app."""
        self.user_id = self.readers.draw(self.rng)
        self.show_feed()

    @task(3)
    def read(self) -> None:
        """Click a story of the feed on screen (top slots more often); sometimes prefetch the next feed."""
        if not self.feed:
            self.open_feed()
            return
        slot = self.rng.choices(range(len(self.feed)), weights=[1 / (i + 1) for i in range(len(self.feed))])[0]
        self.send_event({"type": "click", "news_id": self.feed[slot]})
        if self.rng.random() < self.prefetch_share:
            self.recommend(prefetch=True)

    @task(2)
    def refresh(self) -> None:
        """Pull to refresh: the same reader asks again."""
        if self.user_id is None:
            self.open_feed()
        else:
            self.show_feed()

    def show_feed(self) -> None:
        items = self.recommend(prefetch=False)
        if items is not None:
            self.feed = items
            if items:
                self.send_event({"type": "impression", "news_ids": items})

    def recommend(self, prefetch: bool) -> list[str] | None:
        """The feed's news ids; None when shed or failed (Locust records which)."""
        headers = {"X-Prefetch": "1"} if prefetch else None
        with self.client.get(f"/v1/recommend?user_id={self.user_id}&k={self.k}", headers=headers,
                             name=RECOMMEND_PREFETCH if prefetch else RECOMMEND, catch_response=True) as r:
            if _shed(r, PREFETCH_SHED if prefetch else RECOMMEND_SHED):
                self.back_off(r)
                return None
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
                return None
            try:
                return [item["news_id"] for item in r.json()["items"]]
            except (ValueError, KeyError, TypeError) as exc:
                r.failure(f"bad body: {type(exc).__name__}")
                return None

    def send_event(self, event: dict) -> None:
        event |= {"event_id": f"lt-{uuid.uuid4().hex}", "user_id": self.user_id}
        with self.client.post("/v1/events", json={"events": [event]}, name=EVENTS, catch_response=True) as r:
            if _shed(r, f"{EVENTS} (shed)"):
                self.back_off(r)
            elif r.status_code != 202:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")

    def back_off(self, r) -> None:
        """The app keeps its cached feed and asks again after Retry-After, jittered so readers do not return in
        one wave."""
        if self.honor_retry_after:
            try:
                retry_after = min(float(r.headers.get("retry-after") or 1), MAX_BACKOFF_S)
            except ValueError:
                retry_after = 1.0
            self.backoff_s = retry_after * self.rng.uniform(0.5, 1.5)


def _shed(r, name: str) -> bool:
    """A 503 from admission control (body error "overloaded"): mark it a success under its own name."""
    if r.status_code != 503:
        return False
    try:
        overloaded = r.json().get("error") == "overloaded"
    except (ValueError, AttributeError):
        overloaded = False
    if overloaded:
        r.request_meta["name"] = name
        r.success()
    return overloaded
