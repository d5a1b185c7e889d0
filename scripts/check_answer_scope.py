"""Does the ranker's answer-scoped pass equal the training path on the REAL model? (a one-off check)

Loads SmolLM2 with answer-scoped adapters, scores the first validation examples of a graded run twice:
through ``llm.answer_hidden`` (the ranker's path: base pass with a KV cache, then the last token under a
mixed pos/neg adapter batch) and through the stored base pass (``frozen.answer_query_logits``, what
training optimised, keys/values kept in float16), and prints the largest letter-logit difference next
to each row's logit spread. The unit tests check the same on a tiny model; this checks the real one.

    python scripts/check_answer_scope.py --adapters runs/v9/adapters \\
        --store runs/v8/run/both/base-pass-541ece2f0eca13f3
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import finetune, frozen, llm, prompts  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import prepare  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapters", type=Path, required=True)
    p.add_argument("--store", type=Path, required=True, help="a base-pass-<digest> folder of the same data")
    p.add_argument("--first-layer", type=int, default=12)
    p.add_argument("--examples", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = replace(finetune.FinetuneConfig(), **finetune.GRADED_DATA)  # the v6/v8 data (docs/BENCHMARKS.md §2)
    ds, split = prepare(cfg.dataset)
    train_users, val_users = finetune.split_users(split, cfg)
    catalog = finetune.with_ratings(Catalog(ds.items), split, [*train_users, *val_users])
    retriever, _ = finetune.default_retriever(split, Path("assets/sasrec/ml-latest-small"), cfg.seed)
    val = finetune.build_examples(split, val_users, cfg, retriever, cfg.seed + 1)[: args.examples]
    stored = torch.load(args.store / "val-00000.pt", weights_only=True, mmap=True)
    model, tokenizer = llm.load_base(cfg.base_model, cfg.cache_dir, "cpu")
    ranker = llm.LetterRanker(model, tokenizer, {n: args.adapters / n for n in llm.ADAPTER_NAMES}, catalog)
    assert ranker.scope == "answer", "these adapters are not answer-scoped"
    letter_ids = ranker.letter_ids[: cfg.n_candidates]
    worst = 0.0
    with torch.no_grad():
        for ex, plain in zip(val, stored, strict=False):
            fast = {q.task: lg for q, lg in frozen.answer_query_logits(
                ranker.model, frozen.from_plain(plain, ex.queries), args.first_layer, letter_ids, 2)}
            shown = ranker.texts(ex.candidates, candidates=True)
            rows = [llm.prompt_ids(tokenizer, prompts.build(q.task, ranker.texts(q.history), shown)) for q in ex.queries]
            hidden = llm.answer_hidden(ranker.model, rows, ranker.pad_id, [q.task for q in ex.queries])
            ref = llm.letter_logits(ranker.model, hidden, letter_ids)
            for row, q in enumerate(ex.queries):
                diff = float((ref[row] - fast[q.task][0]).abs().max())
                worst = max(worst, diff)
                print(f"{q.task}: max |difference| {diff:.4f}, logit spread (sd) {float(ref[row].std()):.3f}")
    print(f"largest difference: {worst:.4f}")


if __name__ == "__main__":
    main()
