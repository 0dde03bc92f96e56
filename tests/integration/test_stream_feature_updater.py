"""`newsrec worker features` against the real broker and redis-server: 10,000 clicks (plus impressions and three
malformed records) produced by a plain kafka-python producer as README documents them, the worker SIGKILLed twice
mid-stream and restarted; Redis must equal the truth recomputed from the produced events (0 lost, 0 double-counted),
the malformed records must be on the dead-letter topic, and a SIGTERM must commit everything."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from feature_store import keys
from feature_store.base import ItemFeatures
from feature_store.redis_store import RedisFeatureStore
from newsrec.services import free_port
from recsys.features import POPULARITY_HALF_LIVES_H, USER_TOPIC_HALF_LIVES_H, decayed_counts
from streaming.settings import StreamSettings, Topics
from streaming.topics import ensure_topics

pytestmark = pytest.mark.integration
N_CLICKS, N_IMPRESSIONS, N_USERS, N_ARTICLES = 10_000, 400, 150, 120
PRIOR = [0.12, 0.08, 0.06, 0.05, 0.04]
T0, STEP_S = 1_700_000_000.0, 2.5   # event times span ~7 h: every half-life decays visibly
RATE = 1_000                        # records/s: the stream is still flowing when the worker is killed
HISTORY_LEN = 50


def _labels(n: int) -> tuple[str, str]:
    return f"sub{n % 12}", f"cat{n % 4}"  # (subcategory, category)


def _stream(rng: np.random.Generator) -> list[tuple[str, dict | bytes]]:
    """(topic kind, README-shaped JSON or raw bytes), in produce order: clicks with impressions interleaved and
    three bad records (broken JSON, an unknown article, a wrong event type for the topic)."""
    out: list[tuple[str, dict | bytes]] = []
    for i in range(N_CLICKS):
        user, news = f"U{rng.integers(N_USERS)}", f"N{rng.integers(N_ARTICLES)}"
        out.append(("clicks", {"v": 1, "type": "click", "event_id": f"click-{i}", "time_s": T0 + i * STEP_S,
                               "user_id": user, "news_id": news, "position": int(rng.integers(10))}))
        if i % (N_CLICKS // N_IMPRESSIONS) == 0:
            shown = [f"N{n}" for n in rng.choice(N_ARTICLES, size=8, replace=False)]
            out.append(("impressions", {"v": 1, "type": "impression", "event_id": f"imp-{i}",
                                        "time_s": T0 + i * STEP_S, "user_id": user, "news_ids": shown}))
        if i == 3_000:
            out.append(("clicks", b'{"v": 1, "type": "click", "event_id": "broken'))
        if i == 4_000:
            out.append(("clicks", {"v": 1, "type": "click", "event_id": "unknown-article", "time_s": T0,
                                   "user_id": "U1", "news_id": "N999999"}))
        if i == 5_000:
            out.append(("clicks", {"v": 1, "type": "impression", "event_id": "wrong-topic", "time_s": T0,
                                   "user_id": "U1", "news_ids": ["N1"]}))
    return out


class Worker:
    """One `newsrec worker features` process, its log in a file."""

    def __init__(self, tmp: Path, services, prefix: str, n: int):
        self.port, self.log = free_port(), tmp / f"worker-{n}.log"
        env = dict(os.environ, NEWSREC_POSITION_PRIOR=json.dumps(PRIOR), NEWSREC_REGISTRY=str(tmp / "no-registry"))
        argv = [sys.executable, "-m", "newsrec.cli", "worker", "features", "--bootstrap-servers",
                services.kafka_bootstrap, "--redis-url", services.redis_url, "--prefix", prefix, "--topic-prefix",
                f"{prefix}-", "--group", prefix, "--metrics-port", str(self.port)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.get("/readyz")[0] == 200:
                return time.monotonic() - start
            time.sleep(0.05)
        pytest.fail(f"worker not ready after {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def lag(self) -> dict[str, float]:
        _, text = self.get("/metrics")
        return {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("newsrec_stream_consumer_lag{")}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _applied_clicks(r: redis.Redis, prefix: str) -> int:
    pipe = r.pipeline(transaction=False)
    for u in range(N_USERS):
        pipe.hget(keys.profile_key(prefix, f"U{u}"), keys.HISTORY_LEN)
    return sum(int(v or 0) for v in pipe.execute())


def _wait_for(cond, timeout_s: float, what: str) -> None:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def test_ten_thousand_clicks_two_sigkills_exactly_once(services, unique_name, redis_client, tmp_path):
    prefix = unique_name
    settings = StreamSettings(bootstrap_servers=services.kafka_bootstrap, topics=Topics(prefix=f"{prefix}-"))
    ensure_topics(settings)
    stream = _stream(np.random.default_rng(7))
    asyncio.run(_put_articles(services.redis_url, prefix))

    produced: list = []   # (record metadata future, kind, payload)
    def produce() -> None:
        producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all", linger_ms=2)
        start = time.monotonic()
        for j, (kind, payload) in enumerate(stream):
            value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            key = b"U1" if isinstance(payload, bytes) else payload["user_id"].encode()
            produced.append((producer.send(settings.topics.name(kind), key=key, value=value), kind, payload))
            if j % 100 == 0:  # paced, so the kills land mid-stream
                time.sleep(max(0.0, start + j / RATE - time.monotonic()))
        producer.flush()
        producer.close()
    producing = threading.Thread(target=produce)

    workers = [Worker(tmp_path, services, prefix, 0)]
    try:
        workers[0].wait_ready()
        producing.start()
        kills = []
        for threshold in (2_500, 6_000):
            _wait_for(lambda: _applied_clicks(redis_client, prefix) >= threshold, 40, f"{threshold} clicks")
            workers[-1].proc.send_signal(signal.SIGKILL)
            workers[-1].proc.wait(10)
            kills.append(_applied_clicks(redis_client, prefix))
            workers.append(Worker(tmp_path, services, prefix, len(workers)))
            workers[-1].wait_ready()
        assert all(0 < k < N_CLICKS for k in kills), f"a kill did not land mid-stream: {kills}"
        producing.join(30)
        _wait_for(lambda: _applied_clicks(redis_client, prefix) >= N_CLICKS, 40, "every click")
        ends = _partition_ends(produced)
        _wait_for(lambda: _caught_up(workers[-1], ends), 20, "zero consumer lag")
        workers[-1].proc.send_signal(signal.SIGTERM)  # finish the batch, commit, leave the group, exit 0
        assert workers[-1].proc.wait(15) == 0, workers[-1].log.read_text()[-3000:]
    finally:
        for w in workers:
            w.stop()
        producing.join(30)

    assert _committed(services.kafka_bootstrap, prefix, ends) == ends  # SIGTERM committed every record
    _assert_redis_equals_truth(services.redis_url, prefix, [p for _, _, p in produced])
    letters = _dead_letters(services.kafka_bootstrap, settings.topics.name("dead_letter"))
    reasons = {next(name for name in ("broken", "unknown-article", "wrong-topic") if name in value): reason
               for value, reason in letters}
    assert set(reasons) == {"broken", "unknown-article", "wrong-topic"}, letters
    assert "Invalid JSON" in reasons["broken"] and reasons["unknown-article"] == "unknown news id N999999"
    assert reasons["wrong-topic"] == "unexpected event type 'impression' on this topic"


async def _put_articles(redis_url: str, prefix: str) -> None:
    store = RedisFeatureStore(redis_url, prefix)
    try:
        await store.put_items([ItemFeatures(f"N{n}", _labels(n)[1], _labels(n)[0], f"title {n}", T0 - 3600,
                                            T0 + 86_400) for n in range(N_ARTICLES)])
    finally:
        await store.close()


def _partition_ends(produced) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for future, _, _ in produced:
        md = future.get(timeout=10)
        ends[md.topic, md.partition] = max(ends.get((md.topic, md.partition), 0), md.offset + 1)
    return ends


def _caught_up(worker: Worker, ends: dict[tuple[str, int], int]) -> bool:
    lag = worker.lag()
    return len(lag) == len(ends) and all(v == 0 for v in lag.values())


def _committed(bootstrap: str, group: str, ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {(t, p): c.committed(TopicPartition(t, p)) for t, p in ends}
    finally:
        c.close(autocommit=False)


def _dead_letters(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """(raw value, reason) of every dead letter (a redelivered batch may repeat one: at least once)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=3_000)
    c.assign([TopicPartition(topic, 0)])
    try:
        return [(d["value"], d["reason"]) for d in (json.loads(m.value) for m in c)]
    finally:
        c.close(autocommit=False)


def _assert_redis_equals_truth(redis_url: str, prefix: str, events: list) -> None:
    clicks = [e for e in events if isinstance(e, dict) and e["type"] == "click" and e["event_id"].startswith("click-")]
    imps = [e for e in events if isinstance(e, dict) and e["event_id"].startswith("imp-")]
    assert len(clicks) == N_CLICKS and len(imps) == N_IMPRESSIONS
    now = T0 + N_CLICKS * STEP_S + 60.0
    users, news = [f"U{u}" for u in range(N_USERS)], [f"N{n}" for n in range(N_ARTICLES)]

    async def read():
        store = RedisFeatureStore(redis_url, prefix, socket_timeout_ms=10_000)
        try:
            return ([await store.get_user(u, now) for u in users], await store.get_item_counters(news, now))
        finally:
            await store.close()
    got_users, counters = asyncio.run(read())

    by_user: dict[str, list[str]] = defaultdict(list)
    for e in clicks:  # produce order = partition order for one reader (keyed by user id)
        by_user[e["user_id"]].append(e["news_id"])
    for u in got_users:
        assert u.history == tuple(reversed(by_user[u.user_id]))[:HISTORY_LEN], u.user_id
        assert u.history_len == len(by_user[u.user_id]), u.user_id  # not one click lost or counted twice
    assert sum(u.history_len for u in got_users) == N_CLICKS

    def decayed(keys_, times, weights, half_life_h, query):
        idx = {k: i for i, k in enumerate(query)}
        return decayed_counts(np.array([idx[k] for k in keys_]), np.array(times), np.arange(len(query)),
                              np.full(len(query), now), half_life_h * 3600.0, np.array(weights, np.float64))

    news_i = [int(e["news_id"][1:]) for e in clicks]
    t_click = [e["time_s"] for e in clicks]
    for h in POPULARITY_HALF_LIVES_H:
        want = decayed([f"N{n}" for n in news_i], t_click, np.ones(len(clicks)), h, news)
        np.testing.assert_allclose(counters.clicks[h], want, rtol=1e-9)
    shown = [(n, e["time_s"], PRIOR[min(slot, len(PRIOR) - 1)]) for e in imps for slot, n in enumerate(e["news_ids"])]
    np.testing.assert_allclose(counters.shows_6h, decayed([s[0] for s in shown], [s[1] for s in shown],
                                                          np.ones(len(shown)), 6.0, news), rtol=1e-9)
    for h in (6.0, 24.0):
        np.testing.assert_allclose(counters.expected_clicks[h], decayed(
            [s[0] for s in shown], [s[1] for s in shown], [s[2] for s in shown], h, news), rtol=1e-9)
    # the reader x topic click counters, for the five most active readers
    for u in sorted(got_users, key=lambda u: -u.history_len)[:5]:
        mine = [e for e in clicks if e["user_id"] == u.user_id]
        for h in USER_TOPIC_HALF_LIVES_H:
            subs = Counter()
            for e in mine:
                subs[_labels(int(e["news_id"][1:]))[0]] += 2.0 ** (-(now - e["time_s"]) / (h * 3600.0))
            got = u.topic_clicks["subcategory", h]
            assert set(got) == set(subs) and all(abs(got[k] - v) <= 1e-9 * max(1.0, v) for k, v in subs.items())
