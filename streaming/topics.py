"""Topic creation: every topic the stream path uses, made explicitly with its configured partitions (Tansu, like a
locked-down Kafka, never auto-creates). Idempotent; called by the API's producer and by every worker at start."""
from __future__ import annotations

from newsrec.service_clients import create_topics
from streaming.settings import StreamSettings

# Keyed, high-volume topics spread over `settings.partitions` (the consumer-group parallelism); a key keeps one
# reader's (or one article's) events in order on one partition.
PARTITIONED = ("clicks", "impressions", "articles", "item_vectors")
# One partition: model-updates must be seen in promotion order; dead letters are rare and read by people.
SINGLE = ("model_updates", "dead_letter")


def topic_partitions(settings: StreamSettings) -> dict[str, int]:
    """Full topic name -> partition count."""
    names = settings.topics
    return {**{names.name(t): settings.partitions for t in PARTITIONED}, **{names.name(t): 1 for t in SINGLE}}


def ensure_topics(settings: StreamSettings) -> dict[str, int]:
    """Create every topic that is missing and wait until each has a leader; returns topic_partitions(settings).

    An existing topic keeps its partition count (Kafka can only add partitions, which would move keys)."""
    wanted = topic_partitions(settings)
    for count in sorted(set(wanted.values())):
        create_topics(settings.bootstrap_servers, [t for t, n in wanted.items() if n == count], partitions=count,
                      replication=settings.replication)
    return wanted
