"""Shared training loop for next-item sequence models (SASRec, GRU4Rec).

A model here is an ``nn.Module`` with ``item_emb`` (n_items + 1, d; row 0 = padding) and
``encode(seq: LongTensor (B, L)) -> (B, L, d)``; item scores are ``h @ item_emb.weight.T``.
Training: full-softmax cross-entropy on every next item of the training sequence (much stronger than
the original one-negative BCE, cf. gSASRec / "Turning Dross Into Gold Loss"), early stopping on
validation NDCG@10 under full ranking. Not for: evaluation tables (evaluate.py).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from recsys.data import Split
from recsys.metrics import ndcg_at_k, target_rank

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    max_len: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 200
    eval_every: int = 2
    patience: int = 5  # evaluations without improvement before stopping
    seed: int = 42
    device: str = "auto"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pad_left(seqs: list[np.ndarray], max_len: int) -> torch.Tensor:
    """Left-pad (keep the most recent ``max_len`` items) -> LongTensor (B, max_len)."""
    out = np.zeros((len(seqs), max_len), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-max_len:]
        if len(s):
            out[row, -len(s):] = s
    return torch.from_numpy(out)


def last_hidden(model: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, d): the representation after the most recent item."""
    return model.encode(seq)[:, -1]


@torch.no_grad()
def score_all(model: nn.Module, histories: list[np.ndarray], max_len: int, batch: int = 256) -> np.ndarray:
    """Scores of every item for each history -> (n, n_items + 1) float32; column 0 is padding (-inf)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(histories), batch):
        seq = pad_left(histories[i : i + batch], max_len).to(device)
        logits = last_hidden(model, seq) @ model.item_emb.weight.T  # (B, n_items + 1)
        logits[:, 0] = -torch.inf
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.item_emb.num_embeddings), np.float32)


def mask_seen(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """Set the score of every item already in the history to -inf (in place) and return scores."""
    for row, h in enumerate(histories):
        scores[row, h] = -np.inf
    return scores


def validation_ndcg(model: nn.Module, split: Split, max_len: int) -> float:
    users = range(len(split.sequences))
    hist = [split.train(u) for u in users]
    scores = mask_seen(score_all(model, hist, max_len), hist)
    targets = np.array([split.valid_target(u) for u in users])
    return ndcg_at_k(target_rank(scores, targets), 10)


def _batches(split: Split, cfg: TrainConfig, rng: np.random.Generator):
    users = rng.permutation([u for u in range(len(split.sequences)) if len(split.train(u)) > 1])
    for i in range(0, len(users), cfg.batch_size):
        seqs = [split.train(u) for u in users[i : i + cfg.batch_size]]
        window = [s[-(cfg.max_len + 1) :] for s in seqs]
        yield pad_left([w[:-1] for w in window], cfg.max_len), pad_left([w[1:] for w in window], cfg.max_len)


def train_model(model: nn.Module, split: Split, cfg: TrainConfig) -> dict[str, float]:
    """Train in place, keep the best validation state; return {"best_val_ndcg10", "epochs", "seconds"}."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    best, best_state, bad, start, epoch = -1.0, None, 0, time.perf_counter(), 0
    bar = tqdm(range(1, cfg.epochs + 1), desc=type(model).__name__, leave=False)
    for epoch in bar:
        model.train()
        for inp, tgt in _batches(split, cfg, rng):
            inp, tgt = inp.to(device), tgt.to(device)
            real = tgt > 0  # softmax only where there is a next item: padding costs nothing
            logits = model.encode(inp)[real] @ model.item_emb.weight.T  # (N, n_items + 1)
            loss = F.cross_entropy(logits, tgt[real])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch % cfg.eval_every:
            continue
        val = validation_ndcg(model, split, cfg.max_len)
        bar.set_postfix(loss=f"{loss.item():.3f}", val_ndcg10=f"{val:.4f}")
        if val > best:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    seconds = time.perf_counter() - start
    log.info("%s: best val NDCG@10 %.4f after %d epochs, %.0f s", type(model).__name__, best, epoch, seconds)
    return {"best_val_ndcg10": best, "epochs": epoch, "seconds": seconds}
