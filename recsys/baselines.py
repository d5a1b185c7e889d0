"""The seed paper's baselines: most-popular and GRU4Rec (Hidasi et al., 2016), same training loop as SASRec.

Not for: anything the app serves (the app's retriever is SASRec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recsys.data import Split


class MostPopular:
    """Scores every item by its training-interaction count (the same for everyone)."""

    def __init__(self, split: Split):
        counts = np.bincount(
            np.concatenate([split.train(u) for u in range(len(split.sequences))]), minlength=split.n_items + 1
        ).astype(np.float32)
        counts[0] = -np.inf
        self.counts = counts

    def score_all(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


@dataclass(frozen=True)
class GRU4RecConfig:
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.2


class GRU4Rec(nn.Module):
    """Item embedding -> GRU -> dot product with the (shared) item embeddings."""

    def __init__(self, n_items: int, cfg: GRU4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True)
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item indices -> (B, L, d). Left padding keeps the last step real."""
        out, _ = self.gru(self.drop(self.item_emb(seq)))
        return out
