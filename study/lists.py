"""The recommender as one study condition sees it: the app's own pipeline with the condition's α and only
the condition's preference models, and preferences counted inside the condition's block only.

``SelectedModels`` wraps the shared preference ranker so that a ``[pos]`` condition never runs (or uses)
the dislikes model; ``condition_recommender`` builds a per-call Recommender around the app's parts
(cheap: it holds references), so the models the app loads in the background are picked up when ready.
Not for: storage or screens (study/flow.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np

from dialogue.turn import parse
from recsys.pipeline import Recommendation, Recommender
from recsys.protocols import PreferenceRanker
from study.config import Condition
from webapp.flow import Request, allowed_by
from webapp.services import Services


class SelectedModels:
    """A PreferenceRanker that runs only some of the two preference models."""

    def __init__(self, ranker: PreferenceRanker, pos: bool, neg: bool):
        self.ranker, self.pos, self.neg = ranker, pos, neg

    def score(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        likes = likes if self.pos else ()
        dislikes = dislikes if self.neg else ()
        if not likes and not dislikes:
            return None, None
        pos, neg = self.ranker.score(likes, dislikes, candidates)  # an empty side is not scored at all
        return (pos if self.pos else None), (neg if self.neg else None)


def condition_recommender(services: Services, condition: Condition, k: int) -> Recommender:
    base = services.recommender
    ranker = base.ranker
    if ranker is not None and condition.use_llm:
        selected: PreferenceRanker | None = SelectedModels(ranker, "pos" in condition.models, "neg" in condition.models)
    else:
        selected = None
    return Recommender(base.catalog, base.retriever, selected, base.text, replace(base.config, k=k))


def parse_request(services: Services, text: str) -> Request:
    """What a participant typed for the task ('a funny space movie, no horror') as a ranking request."""
    text = (text or "").strip()
    if not text:
        return Request()
    turn = parse(text, services.resolver, services.genres)
    return Request(text, turn.seed_ids, turn.constraints)


@dataclass(frozen=True)
class Ranked:
    rec: Recommendation
    degraded: bool  # the condition asked for preference models that did not run


def rank_for(
    services: Services, condition: Condition, k: int, likes: Sequence[int], dislikes: Sequence[int],
    request: Request, exclude: Collection[int],
) -> Ranked:
    """One list for one condition; already-rated movies of the block are excluded."""
    recommender = condition_recommender(services, condition, k)
    seeded = tuple(dict.fromkeys((*request.seeds, *likes)))
    rec = recommender.recommend(
        seeded, dislikes, query=request.query or None, exclude=exclude, alpha=condition.alpha,
        allowed=allowed_by(services, request.constraints), use_llm=condition.use_llm,
    )
    wanted = ("pos" in condition.models and seeded) or ("neg" in condition.models and dislikes)
    missing = bool(wanted) and (services.recommender.ranker is None or not rec.llm_used)
    return Ranked(rec, rec.degraded or missing)
