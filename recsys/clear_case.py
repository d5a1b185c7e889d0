"""The clear case every adapter pair must get right (issue 3), shared by tests/test_real_smollm.py and
scripts/check_horror.py.

A catalog of 15 horror films and 15 light ones (family, comedy, romance), each shown with the same mean
rating, so only titles and genre tags differ. Someone who disliked five horror films: the negative adapter
must score the other horror films as more dislikable than the light ones. Someone who liked five light
films: the positive adapter must prefer the light candidates. The margins are mean letter-logit gaps
between the two halves of the 20 candidates, in the direction each adapter should lean (> 0: right).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import pandas as pd

from recsys.catalog import Catalog

HORROR = [
    "The Exorcist", "Halloween", "A Nightmare on Elm Street", "Friday the 13th", "Saw",  # disliked
    "The Texas Chainsaw Massacre", "Scream", "The Ring", "The Conjuring", "Poltergeist",
    "Hellraiser", "Child's Play", "The Evil Dead", "The Omen", "Insidious",
]
LIGHT = [
    "Toy Story", "Finding Nemo", "The Lion King", "Notting Hill", "Forrest Gump",
    "Mary Poppins", "Shrek", "Sleepless in Seattle", "Babe", "The Sound of Music",
    "Amelie", "Mamma Mia!", "Paddington", "Singin' in the Rain", "Up",  # liked
]
HORROR_IDS = list(range(1, 16))
LIGHT_IDS = list(range(16, 31))
DISLIKED, LIKED = HORROR_IDS[:5], LIGHT_IDS[10:]
CANDIDATES = HORROR_IDS[5:] + LIGHT_IDS[:10]  # 10 horror, then 10 light (the ranker shuffles them)


def catalog() -> Catalog:
    # every movie shows the same mean rating (as prompts do since letters-v5), so only titles and genres differ
    rows = [(i + 1, t, None, "Horror" if t in HORROR else "Comedy", 3.5) for i, t in enumerate(HORROR + LIGHT)]
    return Catalog(pd.DataFrame(rows, columns=["item_id", "title", "year", "genres", "rating"]))


@dataclass(frozen=True)
class Margins:
    neg: float  # mean "neg" logit of the horror candidates minus the light ones' (> 0: horror looks more dislikable)
    pos: float  # mean "pos" logit of the light candidates minus the horror ones' (> 0: the light films look more likable)


def margins(ranker, zero_shot: bool = False, seed: int | None = None) -> Margins:
    """The clear case's margins for ``ranker`` (an llm.LetterRanker over ``catalog()``): its adapters, or the
    base model with ``zero_shot``; ``seed``: another candidate order in the prompt (the ranker's config seed)."""
    saved = ranker.config
    if seed is not None:
        ranker.config = replace(saved, seed=seed)
    try:
        score = ranker.score_zero_shot if zero_shot else ranker.score
        pos, neg = score(LIKED, DISLIKED, CANDIDATES)
    finally:
        ranker.config = saved
    return Margins(neg=float(neg[:10].mean() - neg[10:].mean()), pos=float(pos[10:].mean() - pos[:10].mean()))


ORDERS = range(8)  # the candidate orders the check averages over (the ranker's config seeds)


def summary(ranker, zero_shot: bool = False, orders: Iterable[int] = ORDERS) -> dict[str, float]:
    """The margins' mean and minimum over ``orders`` (what metadata.json and scripts/check_horror.py report)."""
    ms = [margins(ranker, zero_shot, seed) for seed in orders]
    neg, pos = [m.neg for m in ms], [m.pos for m in ms]
    return {"orders": len(ms), "neg_mean": round(sum(neg) / len(ms), 4), "neg_min": round(min(neg), 4),
            "pos_mean": round(sum(pos) / len(ms), 4), "pos_min": round(min(pos), 4)}
