"""Where does the base model keep a candidate's mean rating? Linear probes on its hidden states.

The adapters never learned to use the "rated x.y" the prompt prints beside each candidate
(docs/BENCHMARKS.md §2). For the answer position to point at the lowest-rated candidate, the value
must reach that candidate's LETTER token (the "C" of "(C)"), whose state the answer can attend to. This
probe runs the base model (no adapters) over graded validation prompts (``finetune --labels rated``),
takes the hidden state entering each layer at two places per candidate, the last digit of its rating
and its letter token, and fits a ridge regression to (a) the printed mean rating and (b) the person's
own rating, cross-validated by example. High R² at the letter token of layer L: the value is there,
routing it to the answer is the adapters' job from layer L up. Low R²: LoRA must start lower.
``--template letters-v10`` prints the rating as a word ("rated great") instead; the "digit" rows are then
that word's token.

    python scripts/probe_hidden.py --examples 60 --layers 6 12 18 24 30
    python scripts/probe_hidden.py --examples 60 --layers 12 18 24 30 --template letters-v10
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, cross_val_predict
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import finetune, llm, prompts  # noqa: E402
from recsys.catalog import Catalog  # noqa: E402
from recsys.data import prepare  # noqa: E402


def positions(tokenizer, prompt: prompts.Prompt, n: int) -> tuple[list[int], list[int]]:
    """Token index (in prompt_ids) of each candidate's letter and of the last digit of its rating."""
    offset = len(llm.encode(tokenizer, prompt.prefix))
    enc = tokenizer(prompt.suffix, add_special_tokens=False, return_offsets_mapping=True)
    spans = enc["offset_mapping"]

    def token_at(char: int) -> int:
        return next(t for t, (a, b) in enumerate(spans) if a <= char < b)

    start = prompt.suffix.index(prompts.CANDIDATES_HEADER)
    letters, digits = [], []
    for letter in prompts.letters(n):
        at = prompt.suffix.index(f"({letter})\n", start)
        letters.append(offset + token_at(at + 1))
        digits.append(offset + token_at(at - 2))  # "... rated 4.1 (C)": the "1" ("... rated great (C)": " great")
        start = at + 3
    return letters, digits


def bin_of(rating: float) -> int:
    """The index of ``rating``'s word in ``prompts.RATING_WORDS`` (letters-v10): 0 'awful' ... 4 'great'."""
    return [word for _, word in prompts.RATING_WORDS].index(prompts.rating_word(rating))


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = replace(finetune.FinetuneConfig(), labels="rated", max_examples_per_user=6, val_users=60)
    ds, split = prepare(cfg.dataset)
    train_users, val_users = finetune.split_users(split, cfg)
    catalog = finetune.with_ratings(Catalog(ds.items), split, [*train_users, *val_users])
    examples = finetune.build_examples(split, val_users, cfg, None, cfg.seed + 1)[: args.examples]
    model, tokenizer = llm.load_base(cfg.base_model, Path(".cache"), "cpu")
    feats: dict[tuple[str, int], list[np.ndarray]] = {}
    means, own, groups = [], [], []
    for e, ex in enumerate(tqdm(examples, desc="examples", mininterval=10)):
        q = ex.queries[0]  # the "pos" prompt: liked movies, then the candidates
        shown = prompts.texts([catalog[i] for i in ex.candidates], cfg.show_year, candidates=True, template=args.template)
        prompt = prompts.build(q.task, prompts.texts([catalog[i] for i in q.history], cfg.show_year), shown,
                               template=args.template)
        letter_pos, digit_pos = positions(tokenizer, prompt, len(ex.candidates))
        ids = torch.tensor([llm.prompt_ids(tokenizer, prompt)])
        with torch.inference_mode():
            hidden = model.model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in args.layers:
            h = hidden[layer][0].float().numpy()
            feats.setdefault(("letter", layer), []).append(h[letter_pos])
            feats.setdefault(("digit", layer), []).append(h[digit_pos])
        means += [catalog[i].rating for i in ex.candidates]
        own += list(q.ratings)
        groups += [e] * len(ex.candidates)
    y = {"printed mean rating": np.asarray(means),
         "the printed rating's word (bin 0-4)": np.asarray([bin_of(m) for m in means], dtype=float),
         "the person's rating": np.asarray(own)}
    g = np.asarray(groups)
    print(f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`; {datetime.now(UTC):%Y-%m-%d}; "
          f"{len(examples)} graded validation prompts x 20 candidates; ridge, 5-fold CV grouped by prompt; "
          f"model dtype {model.dtype}\n")
    print(f"template: {args.template}\n")
    print("| token | layer | R² printed mean rating | R² its word's bin | R² person's rating | Spearman person's rating |")
    print("|---|---|---|---|---|---|")
    for (where, layer), rows in feats.items():
        x = np.concatenate(rows)
        cells = []
        for name, target in y.items():
            pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 4, 13)), x, target, groups=g,
                                     cv=GroupKFold(5))
            r2 = 1 - ((target - pred) ** 2).sum() / ((target - target.mean()) ** 2).sum()
            cells.append(f"{r2:.3f}")
            if name == "the person's rating":
                cells.append(f"{spearmanr(pred, target).statistic:.3f}")
        print(f"| {where} | {layer} | " + " | ".join(cells) + " |")
    base = spearmanr(y["printed mean rating"], y["the person's rating"]).statistic
    print(f"\nreference: Spearman of the printed mean rating itself with the person's rating: {base:.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=60)
    p.add_argument("--layers", type=int, nargs="+", default=[6, 12, 18, 24, 30])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--template", choices=["letters-v5", "letters-v10"], default="letters-v5",
                   help="letters-v10: each candidate's rating as one of five words, 'rated great'")
    main(p.parse_args())
