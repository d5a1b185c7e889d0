"""What every handler shares, loaded once per process: catalog, recommender, title resolver, DB sessions.

``Services`` is plain data; ``services_from_parts`` assembles it from already-built parts (the app passes
the real SASRec/LLM, the tests pass fakes). ``CachedEncoder`` keeps big embedding batches on disk so the
second start is fast; ``SerialRanker`` lets one preference-model pass run at a time, and ``shared_ranker``
puts a ``recsys.memo.CachedRanker`` in front of it (an undo does not pay for the same pass twice).
Not for: reading settings from the environment (app.py builds Settings) or loading model files (app.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from dialogue.profile import is_genre
from dialogue.titles import TitleResolver
from recsys.catalog import Catalog
from recsys.memo import CachedRanker, sides_independent
from recsys.pipeline import PipelineConfig, Recommender
from recsys.protocols import PreferenceRanker, Retriever, TextEncoder
from recsys.text import TextRetriever
from settings import Settings

UNAVAILABLE = "Preference models unavailable — showing retriever order."
LOADING = "Loading the language models — lists use the retriever's order until they are ready."


@dataclass
class Services:
    """The long-lived objects of one app process; shared by every person's events (read-only)."""

    catalog: Catalog
    recommender: Recommender
    resolver: TitleResolver
    sessions: sessionmaker[Session]
    model_version: str
    adapters: dict[str, str] = field(default_factory=dict)
    llm_status: str = ""  # "" when the preference models loaded, else the notice the page shows
    popular: tuple[int, ...] = ()  # cold-start choices, most popular first
    genres: frozenset[str] = frozenset()

    @property
    def has_ranker(self) -> bool:
        return self.recommender.ranker is not None


_still_wanted: ContextVar[Callable[[], bool] | None] = ContextVar("still_wanted", default=None)


@contextmanager
def only_while(check: Callable[[], bool]) -> Iterator[None]:
    """Within this block, a scoring pass that ``check`` says is no longer wanted (the person clicked again
    while it waited for the model) is skipped: SerialRanker returns no scores instead of running."""
    token = _still_wanted.set(check)
    try:
        yield
    finally:
        _still_wanted.reset(token)


class SerialRanker:
    """A PreferenceRanker that runs one scoring pass at a time: the model is shared by every session and
    two concurrent passes on a 2-core CPU are slower than two in a row. A pass that has gone stale while
    queued (see ``only_while``) is skipped, so rapid clicks do not pile up model work."""

    def __init__(self, ranker: PreferenceRanker):
        self.ranker = ranker
        self._lock = threading.Lock()

    @property
    def sides_independent(self) -> bool:
        return sides_independent(self.ranker)

    def score(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        with self._lock:
            wanted = _still_wanted.get()
            if wanted is not None and not wanted():
                return None, None
            return self.ranker.score(likes, dislikes, candidates)


SCORE_CACHE_SIZE = 1024  # (side, history, candidate set) entries of 20 floats: well under 1 MB


def shared_ranker(ranker: PreferenceRanker) -> CachedRanker:
    """The app's ranker: cached answers first (they need no queue), then one pass at a time."""
    return CachedRanker(SerialRanker(ranker), maxsize=SCORE_CACHE_SIZE)


class CachedEncoder:
    """A TextEncoder with two caches: every large batch (the whole catalog) on disk in ``cache_dir``, keyed
    by the texts and the encoder's name, and the most recent small batches (chat queries) in memory, so a
    request that stays in force is encoded once, not again at every click."""

    def __init__(self, encoder: TextEncoder, cache_dir: Path | None, min_batch: int = 100, recent: int = 512):
        self.encoder, self.cache_dir, self.min_batch = encoder, cache_dir, min_batch
        self.name = str(getattr(encoder, "name", type(encoder).__name__))
        self._recent: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._size = recent
        self._lock = threading.Lock()

    def _small(self, texts: Sequence[str]) -> np.ndarray:
        key = tuple(texts)
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
        vectors = self.encoder.encode(texts)
        vectors.setflags(write=False)  # shared between threads
        with self._lock:
            self._recent[key] = vectors
            while len(self._recent) > self._size:
                self._recent.popitem(last=False)
        return vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) < self.min_batch:
            return self._small(texts)
        if self.cache_dir is None:
            return self.encoder.encode(texts)
        key = hashlib.sha256(("\n".join(texts) + "\0" + self.name).encode()).hexdigest()[:16]
        path = self.cache_dir / f"texts-{key}.npy"
        if path.exists():
            return np.load(path)
        vectors = self.encoder.encode(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors


def catalog_genres(catalog: Catalog) -> frozenset[str]:
    return frozenset(g for m in catalog for g in m.genres if is_genre(g))


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        n_candidates=settings.n_candidates,
        k=settings.k,
        alpha=settings.alpha,
        max_likes=settings.max_likes,
        max_dislikes=settings.max_dislikes,
    )


def services_from_parts(
    settings: Settings,
    catalog: Catalog,
    retriever: Retriever,
    sessions: sessionmaker[Session],
    *,
    ranker: PreferenceRanker | None = None,
    encoder: TextEncoder | None = None,
    model_version: str = "unversioned",
    adapters: dict[str, str] | None = None,
    llm_status: str = "",
    popular: Sequence[int] = (),
) -> Services:
    """Wire already-built parts together. Without an encoder there is no free-text retrieval."""
    cached = CachedEncoder(encoder, settings.cache_dir) if encoder is not None else None
    text = TextRetriever(cached, catalog, settings.cache_dir) if cached is not None else None
    recommender = Recommender(
        catalog, retriever, shared_ranker(ranker) if ranker is not None else None, text, pipeline_config(settings)
    )
    if ranker is None and settings.use_llm and not llm_status:
        llm_status = UNAVAILABLE
    return Services(
        catalog=catalog,
        recommender=recommender,
        resolver=TitleResolver(catalog, cached),
        sessions=sessions,
        model_version=model_version,
        adapters=dict(adapters or {}),
        llm_status=llm_status,
        popular=tuple(int(i) for i in popular if int(i) in catalog) or tuple(catalog.ids()[:200]),
        genres=catalog_genres(catalog),
    )


def attach_text(services: Services, encoder: TextEncoder, settings: Settings) -> None:
    """Add free-text retrieval and embedding title matching to running services (background start-up).

    Each swap is one attribute assignment, so a handler running meanwhile sees either the old part or
    the new one, never half of it."""
    cached = CachedEncoder(encoder, settings.cache_dir)
    text = TextRetriever(cached, services.catalog, settings.cache_dir)
    resolver = TitleResolver(services.catalog, cached)
    services.recommender.text = text
    services.resolver = resolver
    services.model_version = f"{services.model_version}+{cached.name}"


def attach_ranker(
    services: Services, ranker: PreferenceRanker | None, adapters: dict[str, str], status: str
) -> None:
    """Add the preference models (or record why they are missing) to running services."""
    if ranker is not None:
        services.adapters = dict(adapters)
        services.recommender.ranker = shared_ranker(ranker)
    services.llm_status = status
