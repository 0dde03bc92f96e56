"""The feature store's key scheme and update plans: prefixes, hash tags, field names, validation, the JSON encoding
the Lua script reads, and the decayed-counter write rule."""
from __future__ import annotations

import json

import pytest

from feature_store import keys
from feature_store.base import ClickUpdate, HistorySeed, ImpressionUpdate, StoreConfig
from feature_store.redis_store import RedisFeatureStore, encode_plan
from feature_store.updates import DecayOp, IncrOp, Plan, PushOp, decay_add, plan

CFG = StoreConfig(prefix="pfx", history_len=3, user_ttl_s=100, item_ttl_s=50, dedup_ttl_s=20)


def test_every_key_lives_under_the_prefix_and_shares_its_owners_hash_tag() -> None:
    user_keys = [f("pfx", "U7") for f in (keys.history_key, keys.profile_key, keys.user_topic_key)]
    item_keys = [f("pfx", "N7") for f in (keys.item_counter_key, keys.item_features_key)]
    all_keys = [*user_keys, *item_keys, keys.dedup_key("pfx", "click-1-2")]
    assert all(k.startswith("pfx:") for k in all_keys) and len(set(all_keys)) == len(all_keys)
    assert all("{u:U7}" in k for k in user_keys) and all("{i:N7}" in k for k in item_keys)
    assert keys.history_key("pfx", "U7") != keys.history_key("pfx", "U70")


@pytest.mark.parametrize("topic", ["soccer", "a|b:c", "news us"])
def test_user_topic_fields_parse_back(topic: str) -> None:
    for kind in ("clicks", "expected"):
        for level in keys.USER_TOPIC_LEVELS:
            assert keys.parse_user_topic_field(keys.user_topic_field(kind, level, topic, 168.0)) == (
                kind, level, topic, "168")
            assert keys.parse_user_topic_field(keys.user_topic_t_field(kind, level, topic)) == (kind, level, topic, "t")


@pytest.mark.parametrize("kwargs", [{"prefix": ""}, {"prefix": "p", "history_len": 0}, {"prefix": "p", "user_ttl_s": 0},
                                    {"prefix": "p", "dedup_ttl_s": -1}])
def test_store_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        StoreConfig(**kwargs)


def test_redis_store_rejects_bad_timeouts() -> None:
    with pytest.raises(ValueError):
        RedisFeatureStore("redis://127.0.0.1:1/0", "p", socket_timeout_ms=0)
    with pytest.raises(ValueError):
        RedisFeatureStore("redis://127.0.0.1:1/0", "p", connect_timeout_ms=-1)


def test_a_click_plan_touches_history_profile_item_and_topics() -> None:
    p = plan(ClickUpdate("c1", "U1", "N1", "soccer", "sports", 10.0), CFG)
    assert p.dedup_key == keys.dedup_key("pfx", "c1") and p.dedup_ttl_s == 20 and p.t_s == 10.0
    push, incr, item, topics = p.ops
    assert push == PushOp(keys.history_key("pfx", "U1"), "L", ("N1",), 3, 100)
    assert incr == IncrOp(keys.profile_key("pfx", "U1"), keys.HISTORY_LEN, 1, 100)
    assert item.key == keys.item_counter_key("pfx", "N1") and item.ttl_s == 50
    assert [f for f, _, _ in item.groups[0][1]] == [keys.clicks_field(h) for h in (1.0, 6.0, 24.0)]
    assert len(topics.groups) == 2 and topics.ttl_s == 100


def test_an_impression_plan_sums_weights_per_topic() -> None:
    items = (("N1", "soccer", "sports", 0), ("N2", "soccer", "sports", 9))
    p = plan(ImpressionUpdate("i1", "U1", items, 5.0, (0.5, 0.25)), CFG)
    topic_op = p.ops[-1]
    groups = dict(topic_op.groups)
    assert groups[keys.user_topic_t_field("expected", "subcategory", "soccer")][0][2] == 0.75
    empty = plan(ImpressionUpdate("i2", "U1", (), 5.0, (0.5,)), CFG)
    assert empty.ops == ()  # only the dedup mark


def test_a_seed_plan_appends_at_the_tail_and_is_bounded() -> None:
    p = plan(HistorySeed("U1", ("N4", "N3", "N2", "N1"), 9), CFG)
    assert p.dedup_key == keys.dedup_key("pfx", "seed-U1")
    assert p.ops[0] == PushOp(keys.history_key("pfx", "U1"), "R", ("N4", "N3", "N2"), 3, 100)
    assert p.ops[1].amount == 9


def test_plan_rejects_what_is_not_an_update() -> None:
    with pytest.raises(TypeError):
        plan("a click", CFG)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan(ImpressionUpdate("i1", "U1", (("", "soccer", "sports", 0),), 1.0, (0.1,)), CFG)
    with pytest.raises(ValueError):
        plan(ClickUpdate("c1", "U1", "N1", "soccer", "sports", float("inf")), CFG)


def test_encode_plan_lists_each_key_once_with_its_longest_ttl() -> None:
    p = Plan("pfx:ev:e", 20, 1.5, (IncrOp("k1", "f", 1, 10), PushOp("k2", "L", ("a",), 2, 5), IncrOp("k1", "g", 2, 30)))
    key_list, args = encode_plan(p)
    assert key_list == ["pfx:ev:e", "k1", "k2"]
    assert args[:2] == ["20", "1.5"]
    assert json.loads(args[2]) == {"ops": [["I", 2, "f", 1], ["P", 3, "L", 2, ["a"]], ["I", 2, "g", 2]],
                                   "ttl": [30, 5]}
    with pytest.raises(TypeError):
        encode_plan(Plan("pfx:ev:e", 20, 1.5, ("not an op",)))  # type: ignore[arg-type]
    decay = Plan("d", 1, 2.0, (DecayOp("k", (("t", (("v", 3600.0, 0.1),)),), 9),))
    assert json.loads(encode_plan(decay)[1][2])["ops"] == [["D", 2, [["t", [["v", 3600.0, 0.1]]]]]]


def test_decay_add_in_order_and_late() -> None:
    assert decay_add(0.0, None, 100.0, 10.0, 2.0) == 2.0
    assert decay_add(4.0, 0.0, 10.0, 10.0, 1.0) == pytest.approx(3.0)       # 4 * 2^-1 + 1
    assert decay_add(4.0, 10.0, 0.0, 10.0, 1.0) == pytest.approx(4.5)       # late: 1 * 2^-1 added
