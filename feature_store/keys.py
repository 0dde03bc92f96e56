"""The online store's one key scheme: every Redis key and hash field name the feature store reads or writes.

Keys live under a configurable prefix. A user's keys share the hash tag {u:USER} so a Redis Cluster keeps them on
one node and get_user stays one round trip; an item's keys share {i:NEWS_ID}.
"""
from __future__ import annotations

USER_TOPIC_LEVELS = ("subcategory", "category")
_LEVEL_CODE = {"subcategory": "s", "category": "c"}
_CODE_LEVEL = {v: k for k, v in _LEVEL_CODE.items()}


def history_key(prefix: str, user_id: str) -> str:
    """List of news ids the user clicked, most recent first (LPUSH + LTRIM to the history bound)."""
    return f"{prefix}:u:{{u:{user_id}}}:hist"


def profile_key(prefix: str, user_id: str) -> str:
    """Hash of per-user scalars (field HISTORY_LEN)."""
    return f"{prefix}:u:{{u:{user_id}}}:prof"


def user_topic_key(prefix: str, user_id: str) -> str:
    """Hash of the user's decayed clicks / expected clicks per topic (fields from user_topic_field)."""
    return f"{prefix}:u:{{u:{user_id}}}:topic"


def item_counter_key(prefix: str, news_id: str) -> str:
    """Hash of the item's decayed popularity counters (fields CLICKS_T, clicks_field(h), SHOWS_T, ...)."""
    return f"{prefix}:i:{{i:{news_id}}}:cnt"


def item_features_key(prefix: str, news_id: str) -> str:
    """Hash of the item's metadata (fields ITEM_FEATURE_FIELDS)."""
    return f"{prefix}:i:{{i:{news_id}}}:feat"


def dedup_key(prefix: str, event_id: str) -> str:
    """Mark that an event id was applied (SET NX with a TTL inside the update script)."""
    return f"{prefix}:ev:{event_id}"


# --- hash fields ---------------------------------------------------------------------------------------------------
HISTORY_LEN = "history_len"
ITEM_FEATURE_FIELDS = ("category", "subcategory", "title", "publish_s", "expire_s")

# Counters updated by the same events share one last-update time field: clicks at every popularity half-life
# move together, and so do shows and expected clicks.
CLICKS_T = "clicks:t"
SHOWS_T = "shows:t"


def clicks_field(half_life_h: float) -> str:
    return f"clicks:{half_life_h:g}"


def shows_field(half_life_h: float) -> str:
    return f"shows:{half_life_h:g}"


def expected_field(half_life_h: float) -> str:
    return f"expected:{half_life_h:g}"


def user_topic_t_field(kind: str, level: str, topic: str) -> str:
    """Last-update time of the user's `kind` ("clicks" | "expected") counters for one topic."""
    return f"{kind[0]}t|{_LEVEL_CODE[level]}|{topic}"


def user_topic_field(kind: str, level: str, topic: str, half_life_h: float) -> str:
    """Decayed value of the user's `kind` counter for one topic at one half-life. The topic comes last, so topic
    names may contain any character."""
    return f"{kind[0]}{half_life_h:g}|{_LEVEL_CODE[level]}|{topic}"


def parse_user_topic_field(field: str) -> tuple[str, str, str, str]:
    """Inverse of the two functions above: (kind, level, topic, "t" or the half-life as written)."""
    head, level_code, topic = field.split("|", 2)
    kind = "clicks" if head[0] == "c" else "expected"
    return kind, _CODE_LEVEL[level_code], topic, head[1:]
