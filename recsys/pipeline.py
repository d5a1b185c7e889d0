"""The ranking loop the app, the study and the benchmarks all call: retrieve 20, score with the two
preference models, fuse, return the top k with a per-item breakdown.

Conventions: item ids are raw catalog ids; ``likes``/``dislikes`` are newest first (as storage returns
them); at most ``max_likes``/``max_dislikes`` of them reach the prompts, as in the paper.
If the preference ranker fails, the list falls back to the retriever's order and says so (``degraded``).
Not for: I/O, storage or UI text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.catalog import Catalog
from recsys.fusion import fuse, fused_order, ranks_from_scores, reciprocal_rank_fusion
from recsys.protocols import PreferenceRanker, Retriever
from recsys.text import TextRetriever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    n_candidates: int = 20
    k: int = 10
    alpha: float = 0.6
    max_likes: int = 10
    max_dislikes: int = 5
    pool: int = 200  # retrieved before constraints filter, so "no horror" still leaves 20


@dataclass(frozen=True)
class ScoredItem:
    item_id: int
    rank: int  # 1-based position in the shown list
    score: float
    base_rank: int
    pos_rank: float | None = None
    neg_rank: float | None = None


@dataclass(frozen=True)
class Recommendation:
    items: tuple[ScoredItem, ...]
    candidates: tuple[int, ...]  # the retriever's list, in its order
    alpha: float
    llm_used: bool
    degraded: bool = False  # the ranker was asked for but failed
    note: str | None = None
    scores: dict[str, list[float] | None] = field(default_factory=dict)  # raw model scores per candidate

    def ids(self) -> list[int]:
        return [it.item_id for it in self.items]


class Recommender:
    def __init__(
        self,
        catalog: Catalog,
        retriever: Retriever,
        ranker: PreferenceRanker | None = None,
        text: TextRetriever | None = None,
        config: PipelineConfig | None = None,
    ):
        self.catalog, self.retriever, self.ranker, self.text = catalog, retriever, ranker, text
        self.config = config or PipelineConfig()

    def candidates(
        self,
        likes: Sequence[int],
        dislikes: Sequence[int] = (),
        query: str | None = None,
        exclude: Collection[int] = (),
        allowed: Callable[[int], bool] | None = None,
    ) -> list[int]:
        """The base list: SASRec on the liked sequence, blended with free-text retrieval when there is a query
        (text alone when there are no likes). Liked, disliked, excluded and disallowed movies never appear."""
        cfg = self.config
        skip = {*likes, *dislikes, *exclude}
        history = list(reversed(likes))  # the retriever wants oldest first
        lists = []
        if likes or not (query and self.text):
            lists.append(self.retriever.retrieve(history, skip, cfg.pool))
        if query and self.text:
            lists.append(self.text.retrieve(query, skip, cfg.pool))
        merged = lists[0] if len(lists) == 1 else reciprocal_rank_fusion(lists)
        keep = [i for i in merged if i in self.catalog and i not in skip and (allowed is None or allowed(i))]
        return keep[: cfg.n_candidates]

    def ranking_query(
        self,
        likes: Sequence[int],
        dislikes: Sequence[int] = (),
        query: str | None = None,
        exclude: Collection[int] = (),
        allowed: Callable[[int], bool] | None = None,
    ) -> tuple[list[int], list[int], list[int]]:
        """(likes, dislikes, candidates) exactly as ``recommend`` hands them to the ranker (histories cut to
        the configured length), so a caller can have many people's questions scored ahead in one batch."""
        cfg = self.config
        likes, dislikes = list(likes)[: cfg.max_likes], list(dislikes)[: cfg.max_dislikes]
        return likes, dislikes, self.candidates(likes, dislikes, query, exclude, allowed)

    def recommend(
        self,
        likes: Sequence[int],
        dislikes: Sequence[int] = (),
        query: str | None = None,
        exclude: Collection[int] = (),
        k: int | None = None,
        alpha: float | None = None,
        allowed: Callable[[int], bool] | None = None,
        use_llm: bool = True,
    ) -> Recommendation:
        cfg = self.config
        alpha = cfg.alpha if alpha is None else alpha
        likes, dislikes, cands = self.ranking_query(likes, dislikes, query, exclude, allowed)
        pos, neg, degraded, note = None, None, False, None
        if use_llm and self.ranker is not None and cands and (likes or dislikes):
            try:
                pos, neg = self.ranker.score(likes, dislikes, cands)
            except Exception as exc:  # noqa: BLE001 - any ranker failure must still serve a list
                log.exception("preference ranker failed; serving retriever order")
                degraded, note = True, f"Preference models unavailable ({type(exc).__name__}); showing retriever order."
        return self._assemble(cands, pos, neg, alpha, k or cfg.k, degraded, note)

    def _assemble(self, cands, pos, neg, alpha, k, degraded, note) -> Recommendation:
        base = np.arange(1, len(cands) + 1)
        pos_r = ranks_from_scores(pos) if pos is not None else None
        neg_r = ranks_from_scores(neg) if neg is not None else None
        score = fuse(base, pos_r, neg_r, alpha)
        order = fused_order(score, base)[:k]
        items = tuple(
            ScoredItem(
                item_id=cands[j], rank=r, score=float(score[j]), base_rank=int(base[j]),
                pos_rank=None if pos_r is None else float(pos_r[j]),
                neg_rank=None if neg_r is None else float(neg_r[j]),
            )
            for r, j in enumerate(order, start=1)
        )
        raw = {"pos": None if pos is None else [float(x) for x in pos],
               "neg": None if neg is None else [float(x) for x in neg]}
        llm_used = pos is not None or neg is not None
        return Recommendation(items, tuple(cands), alpha, llm_used, degraded, note, raw)
