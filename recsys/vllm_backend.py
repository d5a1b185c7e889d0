"""A PreferenceRanker served by a vLLM server (OpenAI-compatible API) instead of an in-process model.

The server runs the base model with both LoRA adapters, named "pos" and "neg":
``vllm serve <base> --enable-lora --lora-modules pos=<adapters>/pos neg=<adapters>/neg``.
For each side with history this sends one ``POST /v1/completions`` (model "pos" or "neg") with the same
prompt text as recsys/prompts.py builds (``template``; candidates in the same seeded order as LetterRanker;
with letters-v6 both sides' prompts share everything before the question, which vLLM's prefix caching reuses), ``max_tokens=1``, ``temperature=0`` and ``logprobs=20``, and reads the
scores of the letters A.. from the top log-probabilities of the one generated token (the answer letter
after "("). Letters missing from the top list get the lowest score returned (a tie at the bottom).
Log-probabilities differ from LetterRanker's logits by one constant per prompt, so the order is the same.

Differences from recsys.llm.LetterRanker: the server tokenises prefix + suffix as one string (the
in-process ranker tokenises them separately; the boundary falls after a newline, and the test suite
checks with SmolLM2's tokenizer that both give the same ids), and content-free calibration is not applied.
Adapters trained with ``--adapter-scope answer`` (metadata "adapter_scope": "answer") cannot be served
this way: vLLM applies a LoRA adapter to every token of the prompt, and those adapters were trained to
act at the answer position only (recsys/llm.py), so the server would compute something else; nor can adapters
trained on some of the base model's layers (metadata "base_layers", ``finetune --base-layers``) unless the server
runs the same layers.
Not for: training, or serving the model (that is vLLM's job; see docs/SCALING.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from recsys import prompts
from recsys.catalog import Catalog


@dataclass(frozen=True)
class VLLMConfig:
    """Where the server is and how prompts are built (the last five as in recsys.llm.RankerConfig)."""

    base_url: str = "http://127.0.0.1:8000"
    timeout_s: float = 10.0
    top_logprobs: int = 20  # vLLM's default --max-logprobs is 20
    api_key: str | None = None  # sent as a bearer token when the server was started with --api-key
    max_likes: int = 10
    max_dislikes: int = 5
    seed: int = 0
    show_year: bool = prompts.SHOW_YEAR
    template: str = prompts.TEMPLATE_VERSION  # the adapters' (their metadata's "template_version")


def prompt_order(candidates: Sequence[int], seed: int) -> np.ndarray:
    """Prompt position -> index into ``candidates``: LetterRanker.prompt_order's seeded shuffle of the set."""
    ids = np.asarray(candidates, dtype=np.int64)
    by_id = np.argsort(ids, kind="stable")
    rng = np.random.default_rng([seed, *sorted(int(i) for i in ids)])
    return by_id[rng.permutation(len(ids))]


def completion_request(model: str, prompt: str, top_logprobs: int) -> dict[str, Any]:
    """The JSON body of one scoring call: one greedy token, with its top log-probabilities."""
    return {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": top_logprobs}


def top_logprobs_of(response: Mapping[str, Any]) -> dict[str, float]:
    """The {token: logprob} of the first generated token from a /v1/completions response."""
    logprobs = response["choices"][0].get("logprobs") or {}
    tops = logprobs.get("top_logprobs") or [{}]
    return {str(token): float(value) for token, value in (tops[0] or {}).items()}


def letter_scores(top: Mapping[str, float], n: int) -> np.ndarray:
    """Scores of the first ``n`` letters, in prompt order; (n,) float32.

    A letter may come back as "A" or with a leading space " A": the higher of the two counts. Letters
    not among the top tokens get the lowest score returned (-inf only when nothing came back at all).
    """
    found: dict[str, float] = {}
    for token, value in top.items():
        letter = token.strip()
        if len(letter) == 1 and letter in prompts.letters(n) and not math.isnan(value):
            found[letter] = max(value, found.get(letter, -math.inf))
    floor = min(top.values(), default=-math.inf)
    return np.array([found.get(letter, floor) for letter in prompts.letters(n)], dtype=np.float32)


class VLLMRanker:
    """Implements recsys.protocols.PreferenceRanker against a vLLM server (see the module docstring).

    Raises httpx.HTTPError (or KeyError on a malformed answer) when the server fails; the pipeline then
    serves the retriever's order and the page says so, as for the in-process ranker.
    """

    def __init__(self, catalog: Catalog, config: VLLMConfig | None = None, client: httpx.Client | None = None):
        self.catalog = catalog
        self.config = config or VLLMConfig()
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self.client = client or httpx.Client(base_url=self.config.base_url, timeout=self.config.timeout_s,
                                             headers=headers)

    @property
    def sides_independent(self) -> bool:
        """True for the paper's two prompts; a shared template shows both histories to both sides (recsys.memo)."""
        return self.config.template not in prompts.SHARED_TEMPLATES

    def texts(self, item_ids: Sequence[int], candidates: bool = False) -> list[str]:
        return prompts.texts([self.catalog[i] for i in item_ids], self.config.show_year, candidates,
                             self.config.template)

    def prompts_for(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[dict[str, str], np.ndarray]:
        """({task: full prompt text} for each side with history, prompt order of the candidates)."""
        order = prompt_order(candidates, self.config.seed)
        shown = self.texts([candidates[i] for i in order], candidates=True)
        sides = {"pos": list(likes)[: self.config.max_likes], "neg": list(dislikes)[: self.config.max_dislikes]}
        other = {"pos": "neg", "neg": "pos"}
        texts = {task: prompts.build(task, self.texts(history), shown, self.texts(sides[other[task]]),
                                     self.config.template).text
                 for task, history in sides.items() if history}
        return texts, order

    def complete(self, model: str, prompt: str) -> dict[str, float]:
        body = completion_request(model, prompt, self.config.top_logprobs)
        response = self.client.post("/v1/completions", json=body)
        response.raise_for_status()
        return top_logprobs_of(response.json())

    def score(
        self, likes: Sequence[int], dislikes: Sequence[int], candidates: Sequence[int]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both sides at once (two concurrent requests); a side without history returns None."""
        if not candidates:
            return None, None
        texts, order = self.prompts_for(likes, dislikes, candidates)
        if not texts:
            return None, None
        with ThreadPoolExecutor(max_workers=len(texts)) as pool:
            tops = dict(zip(texts, pool.map(self.complete, texts, texts.values()), strict=True))
        out: dict[str, np.ndarray] = {}
        for task, top in tops.items():
            scores = np.empty(len(candidates), dtype=np.float32)
            scores[order] = letter_scores(top, len(candidates))
            out[task] = scores
        return out.get("pos"), out.get("neg")

    def close(self) -> None:
        self.client.close()
