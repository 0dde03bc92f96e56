"""InMemoryFeatureStore: the FeatureStore contract in plain dicts, for unit tests and notebooks (no network).

It executes the same update plans as the Redis store's Lua script, with the same dedup. TTLs are recorded per key
(`ttl_s`) but never enforced: nothing expires in memory.
"""
from __future__ import annotations

from collections.abc import Sequence

from feature_store import decode, keys
from feature_store.base import FeatureStore, FeatureUpdate, ItemCounters, ItemFeatures, StoreConfig, UserFeatures
from feature_store.updates import DecayOp, IncrOp, Plan, PushOp, decay_add, plan


class InMemoryFeatureStore(FeatureStore):
    """Counts its "round trips" (one per read or batch call) in `round_trips`, so tests can check call shapes."""

    def __init__(self, prefix: str = "mem", history_len: int = 50, user_ttl_s: int = StoreConfig.user_ttl_s,
                 item_ttl_s: int = StoreConfig.item_ttl_s, dedup_ttl_s: int = StoreConfig.dedup_ttl_s):
        self.config = StoreConfig(prefix=prefix, history_len=history_len, user_ttl_s=user_ttl_s,
                                  item_ttl_s=item_ttl_s, dedup_ttl_s=dedup_ttl_s)
        self.lists: dict[str, list[str]] = {}
        self.hashes: dict[str, dict[str, float | int | str]] = {}
        self.marks: set[str] = set()
        self.ttl_s: dict[str, int] = {}
        self.round_trips = 0
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("the feature store is closed")
        self.round_trips += 1

    async def start(self) -> None:
        if self.closed:
            raise RuntimeError("the feature store is closed")

    async def get_user(self, user_id: str, now_s: float) -> UserFeatures:
        self._check_open()
        p = self.config.prefix
        history = self.lists.get(keys.history_key(p, user_id), [])[:self.config.history_len]
        return decode.user_features(user_id, history, self.hashes.get(keys.profile_key(p, user_id), {}),
                                    self.hashes.get(keys.user_topic_key(p, user_id), {}), now_s)

    async def get_item_counters(self, news_ids: Sequence[str], now_s: float) -> ItemCounters:
        self._check_open()
        rows = []
        for news_id in news_ids:
            h = self.hashes.get(keys.item_counter_key(self.config.prefix, news_id), {})
            rows.append([h.get(f) for f in decode.ITEM_COUNTER_FIELDS])
        return decode.item_counters(news_ids, rows, now_s)

    async def get_item_features(self, news_ids: Sequence[str]) -> list[ItemFeatures | None]:
        self._check_open()
        return [decode.item_features(n, self.hashes.get(keys.item_features_key(self.config.prefix, n), {}))
                for n in news_ids]

    async def put_items(self, items: Sequence[ItemFeatures]) -> None:
        self._check_open()
        for item in items:
            key = keys.item_features_key(self.config.prefix, item.news_id)
            self.hashes[key] = dict(decode.item_features_fields(item))
            self.ttl_s[key] = self.config.item_ttl_s

    async def apply_updates(self, updates: Sequence[FeatureUpdate]) -> list[bool]:
        self._check_open()
        plans = [plan(u, self.config) for u in updates]  # validate the whole batch before applying any of it
        return [self._apply(p) for p in plans]

    async def close(self) -> None:
        self.closed = True

    def _apply(self, p: Plan) -> bool:
        """The Lua script's semantics (redis_store.APPLY_LUA), op for op."""
        if p.dedup_key in self.marks:
            return False
        self.marks.add(p.dedup_key)
        self.ttl_s[p.dedup_key] = p.dedup_ttl_s
        for op in p.ops:
            if isinstance(op, PushOp):
                lst = self.lists.setdefault(op.key, [])
                if op.side == "L":
                    lst[:0] = reversed(op.values)
                else:
                    lst.extend(op.values)
                del lst[op.bound:]
            elif isinstance(op, IncrOp):
                h = self.hashes.setdefault(op.key, {})
                h[op.field] = int(h.get(op.field, 0)) + op.amount
            elif isinstance(op, DecayOp):
                h = self.hashes.setdefault(op.key, {})
                for t_field, terms in op.groups:
                    t_last = h.get(t_field)
                    for field, half_life_s, w in terms:
                        h[field] = decay_add(float(h.get(field, 0.0)), t_last, p.t_s, half_life_s, w)
                    h[t_field] = p.t_s if t_last is None else max(float(t_last), p.t_s)
            self.ttl_s[op.key] = op.ttl_s
        return True
