"""Pure handlers of the feature updater: click and impression events, given their articles' labels, become the
feature store's updates. No I/O here: the worker looks the labels up and writes the updates."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from feature_store.base import ClickUpdate, FeatureUpdate, ImpressionUpdate, ItemFeatures
from streaming.events import ClickEvent, ImpressionEvent

Labels = tuple[str, str]  # (subcategory, category) of one article
UNKNOWN_NEWS_ID = "unknown news id"


@dataclass(frozen=True)
class Rejected:
    """An event that cannot become an update; `reason` goes to the dead-letter topic."""

    reason: str


def news_ids(events: Iterable[ClickEvent | ImpressionEvent]) -> set[str]:
    """Every article the events name (whose labels the updates need)."""
    out: set[str] = set()
    for e in events:
        if isinstance(e, ClickEvent):
            out.add(e.news_id)
        else:
            out.update(e.news_ids)
    return out


def labels_of(items: Sequence[ItemFeatures | None]) -> dict[str, Labels]:
    """news_id -> labels of the items the store knows (None entries, unknown articles, are skipped)."""
    return {i.news_id: (i.subcategory, i.category) for i in items if i is not None}


def click_update(e: ClickEvent, labels: Mapping[str, Labels]) -> ClickUpdate | Rejected:
    if e.news_id not in labels:
        return Rejected(f"{UNKNOWN_NEWS_ID} {e.news_id}")
    subcategory, category = labels[e.news_id]
    return ClickUpdate(e.event_id, e.user_id, e.news_id, subcategory, category, e.time_s)


def impression_update(e: ImpressionEvent, labels: Mapping[str, Labels], position_prior: Sequence[float]
                      ) -> ImpressionUpdate | Rejected:
    """Slot i of the impression is news_ids[i]; an impression naming any unknown article is rejected whole (its
    expected clicks would be wrong otherwise)."""
    if unknown := [n for n in e.news_ids if n not in labels]:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        return Rejected(f"{UNKNOWN_NEWS_ID} {unknown[0]}{more}")
    items = tuple((n, *labels[n], slot) for slot, n in enumerate(e.news_ids))
    return ImpressionUpdate(e.event_id, e.user_id, items, e.time_s, tuple(position_prior))


def to_updates(events: Sequence[ClickEvent | ImpressionEvent], labels: Mapping[str, Labels],
               position_prior: Sequence[float]) -> list[FeatureUpdate | Rejected]:
    """One update or Rejected per event, in the events' order (a reader's history depends on click order)."""
    if not position_prior:
        raise ValueError("position_prior must be non-empty (the served model's FeatureSpec.position_prior)")
    out: list[FeatureUpdate | Rejected] = []
    for e in events:
        if isinstance(e, ClickEvent):
            out.append(click_update(e, labels))
        elif isinstance(e, ImpressionEvent):
            out.append(impression_update(e, labels, position_prior))
        else:
            out.append(Rejected(f"the feature updater does not apply {type(e).__name__}"))
    return out
