"""Fakes of every Protocol in recsys/protocols.py: deterministic, instant, no model files."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence

import numpy as np

from recsys.catalog import Catalog


class FakeRetriever:
    """Returns catalog items in catalog order, skipping history and exclusions."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def retrieve(self, history: Sequence[int], exclude: Collection[int], k: int) -> list[int]:
        skip = set(history) | set(exclude)
        return [i for i in self.catalog.ids() if i not in skip][:k]


class FakeEncoder:
    """Bag-of-words hashed into 64 dims, L2-normalised: similar words -> similar vectors."""

    dim = 64

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


class FakeRanker:
    """pos: prefers candidates sharing genres with the likes; neg: with the dislikes."""

    sides_independent = True  # pos reads the likes only, neg the dislikes only (recsys.memo)

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def _overlap(self, history: Sequence[int], candidates: Sequence[int]) -> np.ndarray:
        genres = {g for i in history for g in self.catalog[i].genres}
        return np.array([len(genres & set(self.catalog[c].genres)) for c in candidates], dtype=np.float32)

    def score(self, likes, dislikes, candidates):
        pos = self._overlap(likes, candidates) if likes else None
        neg = self._overlap(dislikes, candidates) if dislikes else None
        return pos, neg
