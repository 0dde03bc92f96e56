"""Article text for the synthetic world: titles, abstracts and MIND-style entities drawn from topic words.

Every article mixes words of its subcategory, its category and topic-free filler, so text predicts interest
without being a trivial lookup (filler and shared category words blur it).
"""
from __future__ import annotations

import hashlib

import numpy as np

from data.schema import Entity, NewsArticle
from data.vocab import GENERAL_WORDS, TITLE_TEMPLATES, TOPICS


def _wikidata_id(label: str) -> str:
    return "Q" + str(int(hashlib.sha1(label.encode()).hexdigest()[:8], 16) % 10_000_000)


def _entities(text: str, words: list[str]) -> tuple[Entity, ...]:
    """MIND-style entities for the topic words that occur in `text`, with their character offsets."""
    out, lowered = [], text.lower()
    for w in dict.fromkeys(words):
        at = lowered.find(w)
        if at < 0:
            continue
        surface = text[at:at + len(w)]
        out.append(Entity(label=w.title(), type="O", wikidata_id=_wikidata_id(w), confidence=0.99,
                          occurrence_offsets=(at,), surface_forms=(surface,)))
    return tuple(out[:3])


def make_article(rng: np.random.Generator, news_id: str, category: str, subcategory: str,
                 breaking: bool = False) -> NewsArticle:
    """One article whose words carry its topic: ~half subcategory words, a few category words, filler."""
    sub_words = TOPICS[category][subcategory]
    cat_words = TOPICS[category]["_"]

    def pick(n_sub: int, n_cat: int, n_gen: int) -> list[str]:
        words = (list(rng.choice(sub_words, n_sub, replace=False)) + list(rng.choice(cat_words, n_cat))
                 + list(rng.choice(GENERAL_WORDS, n_gen)))
        rng.shuffle(words)
        return [str(w) for w in words]

    slots = pick(3, 1, 2)
    template = TITLE_TEMPLATES[int(rng.integers(len(TITLE_TEMPLATES)))]
    title = template.format(A=slots[0].capitalize(), a=slots[0], b=slots[1], c=slots[2], d=slots[3],
                            e=slots[4], f=slots[5])
    if breaking:
        title = "Breaking: " + title
    abstract_words = pick(5, 3, 8)
    abstract = " ".join(abstract_words).capitalize() + "."
    if rng.random() < 0.1:
        abstract = ""  # real MIND has many empty abstracts
    url = f"https://assets.newsrec.example/{category}/{news_id}.html"
    return NewsArticle(news_id=news_id, category=category, subcategory=subcategory, title=title,
                       abstract=abstract, url=url, title_entities=_entities(title, sub_words),
                       abstract_entities=_entities(abstract, sub_words))
