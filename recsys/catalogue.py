"""Articles the service starts with, from a MIND world (news.tsv + news_meta.tsv), as Unix-time arrays; the
stream's article ingestor takes over from here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data import mind
from data.schema import NEWS_FILE, NEWS_META_FILE
from recsys.dataset import Articles


def load_catalogue(world_dir: Path) -> Articles:
    """All articles of the world's last split with publish/expire as Unix seconds (naive times read as UTC)."""
    world_dir = Path(world_dir)
    split = next(d for d in (world_dir / "dev", world_dir / "MINDsmall_dev", world_dir) if (d / NEWS_FILE).exists())
    news = mind.read_news_table(split / NEWS_FILE)
    meta = mind.read_news_meta_table(world_dir / NEWS_META_FILE).set_index("news_id")
    news = news[news["news_id"].isin(meta.index)]
    unix = lambda col: ((news["news_id"].map(meta[col]) - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy()  # noqa: E731
    return Articles(news_ids=news["news_id"].to_numpy(), index={n: i for i, n in enumerate(news["news_id"])},
                    category_name=news["category"].to_numpy(), subcategory_name=news["subcategory"].to_numpy(),
                    text=(news["title"] + " " + news["abstract"]).tolist(),
                    publish_s=unix("publish_time").astype(np.float64), expire_s=unix("expire_time").astype(np.float64))
