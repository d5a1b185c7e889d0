"""The swappable parts of the ranking pipeline, as small Protocols. Items are raw catalog ids everywhere.

Each has a fake in tests/fakes.py. Not for: implementations (sasrec.py, text.py, llm.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

import numpy as np


class Retriever(Protocol):
    """Proposes candidates from a person's liked sequence (oldest first)."""

    def retrieve(self, history: Sequence[int], exclude: Collection[int], k: int) -> list[int]:
        """The top ``k`` item ids, best first, none of them in ``history`` or ``exclude``."""
        ...


class TextEncoder(Protocol):
    """Sentences -> L2-normalised embeddings, shape (n, d), float32."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class PreferenceRanker(Protocol):
    """Scores candidates against likes (adapter "pos") and dislikes (adapter "neg") in one batch.

    Returns two float32 arrays aligned with ``candidates``: higher = more recommended (pos) and
    higher = more likely to be disliked (neg). A side with no history returns None.
    """

    def score(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[np.ndarray | None, np.ndarray | None]: ...
