"""The FeatureStore conformance suite, run against every implementation: InMemoryFeatureStore and RedisFeatureStore
(real redis-server from the `services` fixture, a unique key prefix per test)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from feature_store.base import (
    ClickUpdate,
    FeatureStore,
    HistorySeed,
    ImpressionUpdate,
    ItemFeatures,
)
from feature_store.memory_store import InMemoryFeatureStore
from feature_store.redis_store import RedisFeatureStore
from recsys.features import POPULARITY_HALF_LIVES_H, USER_TOPIC_HALF_LIVES_H, decayed_counts

pytestmark = pytest.mark.integration
H = 3600.0
T0 = 1_780_000_000.0  # Unix seconds, as the store keeps them
PRIOR = (0.3, 0.2, 0.12, 0.08, 0.05)


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest, unique_name: str) -> Callable[..., None]:
    """run(body, **store_kwargs): build a store of this implementation, await body(store), close it."""
    if request.param == "redis":
        url = request.getfixturevalue("services").redis_url
        request.getfixturevalue("redis_client")  # deletes this test's keys afterwards
        make = lambda **kw: RedisFeatureStore(url, unique_name, **kw)  # noqa: E731
    else:
        make = lambda **kw: InMemoryFeatureStore(unique_name, **kw)  # noqa: E731

    def runner(body: Callable[[FeatureStore], Awaitable[None]], **store_kwargs) -> None:
        async def main() -> None:
            store = make(**store_kwargs)
            try:
                await body(store)
            finally:
                await store.close()
        asyncio.run(main())
    return runner


def click(event_id: str, user: str, news: str, t: float, sub: str = "soccer", cat: str = "sports") -> ClickUpdate:
    return ClickUpdate(event_id, user, news, sub, cat, t)


def test_satisfies_the_protocol_and_starts(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        assert isinstance(store, FeatureStore)
        await store.start()
        assert await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
    run(body)


def test_history_is_most_recent_first_and_bounded(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        for i in range(8):
            assert await store.apply_click(f"c{i}", "U1", f"N{i}", "soccer", "sports", T0 + i)
        user = await store.get_user("U1", T0 + 10)
        assert user.history == ("N7", "N6", "N5", "N4", "N3")
        assert user.history_len == 8
    run(body, history_len=5)


def test_seeded_history_stays_below_clicks_and_is_applied_once(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        await store.apply_click("c1", "U1", "N9", "soccer", "sports", T0)
        assert await store.seed_history("U1", ["N3", "N2", "N1"], history_len=7)
        assert not await store.seed_history("U1", ["N3", "N2", "N1"], history_len=7)
        user = await store.get_user("U1", T0)
        assert user.history == ("N9", "N3", "N2", "N1")
        assert user.history_len == 8
    run(body)


def test_a_redelivered_event_is_applied_once(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        assert await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
        assert not await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
        items = [("N1", "soccer", "sports", 0), ("N2", "tennis", "sports", 1)]
        assert await store.apply_impression("i1", "U1", items, T0, PRIOR)
        assert not await store.apply_impression("i1", "U1", items, T0, PRIOR)
        user = await store.get_user("U1", T0)
        assert user.history == ("N1",) and user.history_len == 1
        assert user.topic_clicks["subcategory", 24.0] == {"soccer": 1.0}
        assert user.topic_expected["category", 24.0] == {"sports": pytest.approx(0.5)}
        counters = await store.get_item_counters(["N1", "N2"], T0)
        np.testing.assert_allclose(counters.clicks[1.0], [1.0, 0.0])
        np.testing.assert_allclose(counters.shows_6h, [1.0, 1.0])
        np.testing.assert_allclose(counters.expected_clicks[24.0], [0.3, 0.2])
    run(body)


def test_apply_updates_reports_each_update_of_a_batch(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        batch = [click("c1", "U1", "N1", T0), HistorySeed("U2", ("N5",), 1), click("c1", "U1", "N1", T0),
                 ImpressionUpdate("i1", "U2", (("N1", "soccer", "sports", 3),), T0, PRIOR)]
        assert await store.apply_updates(batch) == [True, True, False, True]
        assert await store.apply_updates(batch[:2]) == [False, False]
        assert await store.apply_updates([]) == []
    run(body)


def test_counters_decay_by_their_half_lives(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        await store.apply_click("c1", "U1", "N1", "soccer", "sports", T0)
        await store.apply_click("c2", "U1", "N1", "soccer", "sports", T0 + 6 * H)
        # 6 h after the first click and at the second: 2^-(6/hl) + 1
        c = await store.get_item_counters(["N1"], T0 + 6 * H)
        for hl in POPULARITY_HALF_LIVES_H:
            np.testing.assert_allclose(c.clicks[hl], [2 ** (-6 / hl) + 1], rtol=1e-12)
        # a day later everything has decayed by 2^-(24/hl)
        c = await store.get_item_counters(["N1"], T0 + 30 * H)
        for hl in POPULARITY_HALF_LIVES_H:
            np.testing.assert_allclose(c.clicks[hl], [2 ** (-30 / hl) + 2 ** (-24 / hl)], rtol=1e-12)
        user = await store.get_user("U1", T0 + 30 * H)
        for hl in USER_TOPIC_HALF_LIVES_H:
            want = 2 ** (-30 / hl) + 2 ** (-24 / hl)
            assert user.topic_clicks["category", hl]["sports"] == pytest.approx(want, rel=1e-12)
        # a read before the last update (clock skew) is taken at the last update, never amplified
        c = await store.get_item_counters(["N1"], T0)
        np.testing.assert_allclose(c.clicks[24.0], [2 ** (-6 / 24) + 1], rtol=1e-12)
    run(body)


def test_out_of_order_events_give_the_in_order_counters(run: Callable[..., None]) -> None:
    times = T0 + np.array([5.0, 0.5, 3.0, 9.0, 1.0, 7.5]) * H

    async def body(store: FeatureStore) -> None:
        for i, t in enumerate(times):
            await store.apply_click(f"c{i}", "U1", "N1", "soccer", "sports", float(t))
            await store.apply_impression(f"i{i}", "U1", [("N1", "soccer", "sports", i)], float(t), PRIOR)
        now = T0 + 12 * H
        c = await store.get_item_counters(["N1"], now)
        prior = np.array([PRIOR[min(i, len(PRIOR) - 1)] for i in range(times.size)])
        for hl in POPULARITY_HALF_LIVES_H:
            np.testing.assert_allclose(c.clicks[hl], [np.sum(2 ** (-(now - times) / (hl * H)))], rtol=1e-12)
        np.testing.assert_allclose(c.shows_6h, [np.sum(2 ** (-(now - times) / (6 * H)))], rtol=1e-12)
        np.testing.assert_allclose(c.expected_clicks[24.0], [np.sum(prior * 2 ** (-(now - times) / (24 * H)))],
                                   rtol=1e-12)
    run(body)


def test_unknown_users_and_items_read_empty(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        user = await store.get_user("nobody", T0)
        assert user.history == () and user.history_len == 0
        levels = ("subcategory", "category")
        assert set(user.topic_clicks) == {(lv, h) for lv in levels for h in USER_TOPIC_HALF_LIVES_H}
        assert all(v == {} for v in (*user.topic_clicks.values(), *user.topic_expected.values()))
        clicks, expected = user.topic_counts("category", 24.0, ["sports", "news"])
        np.testing.assert_array_equal(clicks, [0.0, 0.0])
        c = await store.get_item_counters(["N404", "N405"], T0)
        assert c.news_ids == ("N404", "N405")
        for array in (*c.clicks.values(), c.shows_6h, *c.expected_clicks.values()):
            np.testing.assert_array_equal(array, [0.0, 0.0])
        empty = await store.get_item_counters([], T0)
        assert empty.shows_6h.shape == (0,)
        assert await store.get_item_features(["N404"]) == [None]
    run(body)


def test_item_features_round_trip(run: Callable[..., None]) -> None:
    items = [ItemFeatures("N1", "sports", "soccer", "A title: with | odd chars", T0, T0 + 48 * H),
             ItemFeatures("N2", "news", "newsus", "", T0 + 0.25, T0 + 1.5)]

    async def body(store: FeatureStore) -> None:
        await store.put_items(items)
        assert await store.get_item_features(["N2", "N3", "N1"]) == [items[1], None, items[0]]
        await store.put_items([])
        assert await store.get_item_features([]) == []
    run(body)


def test_slots_past_the_prior_use_its_last_value(run: Callable[..., None]) -> None:
    async def body(store: FeatureStore) -> None:
        await store.apply_impression("i1", "U1", [("N1", "soccer", "sports", 2), ("N2", "tennis", "sports", 40)],
                                     T0, PRIOR)
        c = await store.get_item_counters(["N1", "N2"], T0)
        np.testing.assert_allclose(c.expected_clicks[6.0], [PRIOR[2], PRIOR[-1]])
        user = await store.get_user("U1", T0)
        assert user.topic_expected["subcategory", 168.0] == pytest.approx({"soccer": PRIOR[2], "tennis": PRIOR[-1]})
        assert user.topic_expected["category", 168.0] == pytest.approx({"sports": PRIOR[2] + PRIOR[-1]})
    run(body)


@pytest.mark.parametrize("bad", [
    ClickUpdate("", "U1", "N1", "soccer", "sports", T0),
    ClickUpdate("c1", "", "N1", "soccer", "sports", T0),
    ClickUpdate("c1", "U1", "N1", "", "sports", T0),
    ClickUpdate("c1", "U1", "N1", "soccer", "sports", float("nan")),
    ImpressionUpdate("i1", "U1", (("N1", "soccer", "sports", 0),), T0, ()),
    ImpressionUpdate("i1", "U1", (("N1", "soccer", "sports", -1),), T0, PRIOR),
    HistorySeed("U1", ("N1", "N2"), history_len=1),
])
def test_invalid_updates_raise_and_change_nothing(run: Callable[..., None], bad) -> None:
    async def body(store: FeatureStore) -> None:
        with pytest.raises(ValueError):
            await store.apply_updates([click("ok", "U1", "N1", T0), bad])
        assert (await store.get_user("U1", T0)).history == ()  # the batch is validated before any of it lands
    run(body)


def test_counters_equal_offline_decayed_counts_on_a_random_stream(run: Callable[..., None]) -> None:
    rng = np.random.default_rng(7)
    n_items, n_users, n_events = 8, 3, 300
    item_sub = rng.integers(0, 4, n_items)               # subcategory code; its category is code // 2
    subs, cats = [f"sub{s}" for s in range(4)], ["catA", "catB"]
    times = np.sort(T0 + rng.uniform(0, 3 * 24 * H, n_events))
    is_click = rng.random(n_events) < 0.3
    users = rng.integers(0, n_users, n_events)
    shown = [rng.choice(n_items, rng.integers(1, 6), replace=False) for _ in range(n_events)]
    queries = np.sort(T0 + rng.uniform(2 * H, 3 * 24 * H + H, 6))
    prior = np.array(PRIOR)
    # the offline event tables: (key, time, weight) rows
    clk_item, clk_user, clk_t, shw_item, shw_user, shw_t, shw_w = [], [], [], [], [], [], []
    for e in range(n_events):
        if is_click[e]:
            clk_item.append(shown[e][0]), clk_user.append(users[e]), clk_t.append(times[e])
        else:
            for pos, item in enumerate(shown[e]):
                shw_item.append(item), shw_user.append(users[e]), shw_t.append(times[e])
                shw_w.append(prior[min(pos, prior.size - 1)])

    def update(e: int):
        if is_click[e]:
            i = int(shown[e][0])
            return click(f"c{e}", f"U{users[e]}", f"N{i}", float(times[e]), subs[item_sub[i]], cats[item_sub[i] // 2])
        items = tuple((f"N{i}", subs[item_sub[i]], cats[item_sub[i] // 2], pos) for pos, i in enumerate(shown[e]))
        return ImpressionUpdate(f"i{e}", f"U{users[e]}", items, float(times[e]), PRIOR)

    async def body(store: FeatureStore) -> None:
        applied = 0
        for q in queries:
            upto = int(np.searchsorted(times, q))
            batch = [update(e) for e in rng.permutation(np.arange(applied, upto))]  # shuffled: out of order too
            assert all(await store.apply_updates(batch))
            applied = upto
            qk = np.arange(n_items)
            qt = np.full(n_items, q)
            got = await store.get_item_counters([f"N{i}" for i in range(n_items)], float(q))
            for hl in POPULARITY_HALF_LIVES_H:
                want = decayed_counts(np.array(clk_item), np.array(clk_t), qk, qt, hl * H)
                np.testing.assert_allclose(got.clicks[hl], want, rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(got.shows_6h, decayed_counts(np.array(shw_item), np.array(shw_t), qk, qt, 6 * H),
                                       rtol=1e-6, atol=1e-12)
            for hl in (6.0, 24.0):
                want = decayed_counts(np.array(shw_item), np.array(shw_t), qk, qt, hl * H, np.array(shw_w))
                np.testing.assert_allclose(got.expected_clicks[hl], want, rtol=1e-6, atol=1e-12)
            for u in range(n_users):
                user = await store.get_user(f"U{u}", float(q))
                for level, code, names in (("subcategory", item_sub, subs), ("category", item_sub // 2, cats)):
                    n_topics, topics = len(names), np.arange(len(names))
                    ck = np.array(clk_user) * n_topics + code[np.array(clk_item, dtype=int)]
                    sk = np.array(shw_user) * n_topics + code[np.array(shw_item, dtype=int)]
                    for hl in USER_TOPIC_HALF_LIVES_H:
                        got_c, got_e = user.topic_counts(level, hl, names)
                        qkey, qtime = u * n_topics + topics, np.full(n_topics, q)
                        want_c = decayed_counts(ck, np.array(clk_t), qkey, qtime, hl * H)
                        want_e = decayed_counts(sk, np.array(shw_t), qkey, qtime, hl * H, np.array(shw_w))
                        np.testing.assert_allclose(got_c, want_c, rtol=1e-6, atol=1e-12)
                        np.testing.assert_allclose(got_e, want_e, rtol=1e-6, atol=1e-12)
        assert applied > 250
    run(body)
