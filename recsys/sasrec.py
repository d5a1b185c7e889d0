"""SASRec (Kang & McAuley, 2018): causal self-attention over a person's item sequence.

Also the live retriever: ``SASRecRetriever`` serves any new sequence of raw catalog ids (people in the
app are not in the training set), masks seen/excluded items and returns the top k.
Train and ship the default: ``python -m recsys.sasrec --dataset ml-latest-small --out assets/sasrec/ml-latest-small``.
Not for: the training loop (training.py) or benchmark tables (evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recsys.data import Split, mean_ratings, prepare
from recsys.training import TrainConfig, score_all, train_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.2
    max_len: int = 100


class SASRec(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.hidden, cfg.heads, cfg.hidden * 4, cfg.dropout, batch_first=True, norm_first=True
            )
            for _ in range(cfg.blocks)
        )
        self.norm = nn.LayerNorm(cfg.hidden)
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5 / 4)  # logits start near 0
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) item indices, left-padded with 0 -> (B, L', d), L' = min(L, max_len) most recent."""
        seq = seq[:, -self.cfg.max_len :]
        length = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1)  # (B, L, 1); padded positions are zeroed after every block
        pos = torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=seq.device)
        x = self.drop(self.item_emb(seq) * math.sqrt(self.cfg.hidden) + self.pos_emb(pos)) * keep
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=seq.device)
        for layer in self.layers:
            x = layer(x, src_mask=causal, is_causal=True) * keep
        return self.norm(x)


class SASRecRetriever:
    """Implements recsys.protocols.Retriever over raw catalog ids."""

    def __init__(self, model: SASRec, item_ids: np.ndarray, popularity: np.ndarray, meta: dict | None = None):
        self.model = model.eval()
        self.item_ids = item_ids  # index -> raw id, [0] = padding
        self.index = {int(raw): i for i, raw in enumerate(item_ids) if i > 0}
        self.popularity = popularity  # item indices, most popular first (cold start)
        self.meta = meta or {}

    def scores(self, history: Sequence[int]) -> np.ndarray:
        """Score of every item index (n_items + 1,), -inf for padding; popularity when history is unknown."""
        seq = np.array([self.index[i] for i in history if i in self.index], dtype=np.int64)
        if len(seq) == 0:
            out = np.full(len(self.item_ids), -np.inf, dtype=np.float32)
            out[self.popularity] = -np.arange(len(self.popularity), dtype=np.float32)
            return out
        return score_all(self.model, [seq], self.model.cfg.max_len)[0]

    def retrieve(self, history: Sequence[int], exclude: Collection[int], k: int) -> list[int]:
        scores = self.scores(history)
        masked = [self.index[i] for i in (*history, *exclude) if i in self.index]
        scores[masked] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [int(self.item_ids[i]) for i in top if np.isfinite(scores[i])]

    def item_vectors(self) -> np.ndarray:
        """Item embeddings (n_items + 1, d), L2-normalised: similarity between catalog movies."""
        w = self.model.item_emb.weight.detach().float().cpu().numpy()
        return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-9)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        np.save(folder / "item_ids.npy", self.item_ids)
        np.save(folder / "popularity.npy", self.popularity)
        meta = {**self.meta, "config": asdict(self.model.cfg)}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> SASRecRetriever:
        meta = json.loads((folder / "meta.json").read_text())
        item_ids = np.load(folder / "item_ids.npy")
        model = SASRec(len(item_ids) - 1, SASRecConfig(**meta["config"]))
        model.load_state_dict(torch.load(folder / "model.pt", map_location=device, weights_only=True))
        return cls(model.to(device), item_ids, np.load(folder / "popularity.npy"), meta)


def popularity_order(split: Split) -> np.ndarray:
    """Item indices by training-interaction count, most popular first (ties by index)."""
    counts = np.bincount(np.concatenate([split.train(u) for u in range(len(split.sequences))]),
                         minlength=split.n_items + 1)
    counts[0] = -1
    return np.argsort(-counts, kind="stable")[: split.n_items]


def train_sasrec(split: Split, cfg: SASRecConfig, train_cfg: TrainConfig) -> tuple[SASRec, dict]:
    model = SASRec(split.n_items, cfg)
    stats = train_model(model, split, train_cfg)
    return model.cpu().eval(), stats


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train SASRec on a MovieLens split and save a retriever.")
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the raw files (ml-1m)")
    p.add_argument("--out", type=Path, default=Path("assets/sasrec/ml-latest-small"))
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto")
    return p


def main(dataset: str, data_dir: Path | None, out: Path, epochs: int, seed: int, device: str) -> None:
    from recsys.catalog import Catalog  # local: only the shipped artifact needs the catalog CSV
    from recsys.evaluate import evaluate_scores

    ds, split = prepare(dataset, data_dir)
    cfg, train_cfg = SASRecConfig(), TrainConfig(epochs=epochs, seed=seed, device=device)
    model, stats = train_sasrec(split, cfg, train_cfg)
    metrics = evaluate_scores(lambda hist: score_all(model, hist, cfg.max_len), split, seed=seed)
    meta = {
        "dataset": dataset, "filter": "5-core", "split": "leave-one-out (train = all but last two)",
        "train": asdict(train_cfg), "stats": stats, "test_metrics": metrics,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    SASRecRetriever(model, split.item_ids, popularity_order(split), meta).save(out)
    Catalog(ds.items).with_ratings(mean_ratings(split)).to_csv(out / "catalog.csv")  # training parts only
    log.info("saved %s: %s", out, json.dumps(metrics))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(**vars(make_parser().parse_args()))
