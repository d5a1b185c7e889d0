"""The clear case (recsys/clear_case.py) for an adapter pair, in more than the app's one candidate order.

tests/test_real_smollm.py checks the shipped pair's margins in the order the app shows (config seed 0, float32);
a margin of a few hundredths there can be one order's letter noise. This prints both adapters' margins, and the
base model's zero-shot ones, for several prompt orders and dtypes, with their mean over the orders:

    .venv/bin/python scripts/check_horror.py [ADAPTERS_DIR] [--seeds 0 1 2 3 4 5 6 7] [--dtypes float32 bfloat16]

``--record`` also writes the float32 summary into both adapters' metadata.json under ``clear_case``, as
``recsys.finetune`` does for a pair it trains (for a pair put together from two trainings, e.g. a letters-v7
"pos" beside a letters-v5 "neg").
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys import clear_case, finetune, llm  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapters", type=Path, nargs="?", default=ROOT / "assets" / "adapters")
    p.add_argument("--seeds", type=int, nargs="+", default=list(clear_case.ORDERS))
    p.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base-model", default=finetune.FinetuneConfig().base_model, help="the adapters' base model")
    p.add_argument("--record", action="store_true",
                   help="write the float32 summary over the default orders into each adapter's metadata.json")
    args = p.parse_args()
    if args.record and ("float32" not in args.dtypes or args.seeds != list(clear_case.ORDERS)):
        p.error("--record needs float32 among --dtypes (the dtype the adapters were trained in) and the default --seeds")
    torch.set_num_threads(args.threads)
    print(f"command: {shlex.join(['scripts/check_horror.py', *sys.argv[1:]])}")
    print(f"machine: {platform.machine()} ({platform.processor() or 'cpu'}), {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; date {datetime.now(UTC).isoformat(timespec='minutes')}")
    print("| dtype | scorer | neg margin, seed 0 | pos margin, seed 0 | neg mean over seeds (min) | "
          "pos mean over seeds (min) |")
    print("|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        ranker = llm.load_ranker(args.base_model, ROOT / ".cache", args.adapters, clear_case.catalog(),
                                 device="cpu", dtype=getattr(torch, dtype))
        check = {}
        for name, zero_shot in (("adapters", False), ("base model, zero-shot", True)):
            s = check["zero_shot" if zero_shot else "adapters"] = clear_case.summary(ranker, zero_shot, args.seeds)
            first = clear_case.margins(ranker, zero_shot, 0)
            print(f"| {dtype} | {name} | {first.neg:+.3f} | {first.pos:+.3f} | {s['neg_mean']:+.3f} ({s['neg_min']:+.3f}) "
                  f"| {s['pos_mean']:+.3f} ({s['pos_min']:+.3f}) |", flush=True)
        if args.record and dtype == "float32":
            record(args.adapters, ranker, check)


def record(folder: Path, ranker: llm.LetterRanker, check: dict[str, dict[str, float]] | None = None) -> None:
    """``finetune.with_clear_case`` of the pair in ``folder`` (``check``: its summaries, when already computed),
    written back into its metadata files."""
    metas = {task: llm.read_metadata(folder / task) for task in llm.ADAPTER_NAMES}
    finetune.write_metadata(folder, finetune.with_clear_case(metas, ranker, check))
    print(f"recorded clear_case in {folder}/{{pos,neg}}/metadata.json", flush=True)


if __name__ == "__main__":
    main()
