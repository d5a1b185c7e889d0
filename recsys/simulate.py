"""Feedback-loop evaluation: simulated people answer 👍/👎 from held-out ratings, round after round.

(work in progress)
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from recsys.sasrec import SASRecConfig, SASRecRetriever, popularity_order, train_sasrec
from recsys.sim.split import RatingSplit, history_split
from recsys.training import TrainConfig

log = logging.getLogger(__name__)
RUNS = Path("runs/sim")


def history_retriever(rs: RatingSplit, seed: int, cache: Path = RUNS / "sasrec", device: str = "auto") -> SASRecRetriever:
    """SASRec trained on the history parts only, cached under ``cache/<dataset>-seed<seed>``."""
    folder = cache / f"{rs.split.name}-seed{seed}"
    if (folder / "model.pt").exists():
        return SASRecRetriever.load(folder)
    hist = history_split(rs)
    cfg, train_cfg = SASRecConfig(), TrainConfig(seed=seed, device=device)
    model, stats = train_sasrec(hist, cfg, train_cfg)
    meta = {
        "dataset": rs.split.name, "filter": "5-core",
        "split": "rating-aware: history = all but the last 20% (>= 5) of each user's ratings",
        "train": asdict(train_cfg), "stats": stats,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    retriever = SASRecRetriever(model, hist.item_ids, popularity_order(hist), meta)
    retriever.save(folder)
    log.info("saved %s (%s)", folder, json.dumps(stats))
    return retriever
