"""Contract test of recsys/vllm_backend.py against a stand-in for vLLM's OpenAI-compatible server.

The stand-in (http.server on 127.0.0.1 in a thread) checks each request's shape (POST /v1/completions,
model "pos" or "neg", max_tokens=1, logprobs) and answers with canned top log-probabilities that favour
one movie per adapter, found by its title in the lettered list of the prompt. No vLLM, no model.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from recsys import prompts
from recsys.vllm_backend import VLLMConfig, VLLMRanker, letter_scores, prompt_order
from settings import Settings
from tests.test_app_handlers import fake_services, last
from webapp import handlers
from webapp.views import notices_html

FAVOURITE = {"pos": "Heat", "neg": "Alien"}  # what each stand-in adapter answers


class StandIn(BaseHTTPRequestHandler):
    """Answers /v1/completions like vLLM: one token, its top logprobs; records every request body."""

    requests: list[dict[str, Any]] = []
    fail = False

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, **body})
        if self.fail:
            self._send(500, {"error": "adapter not loaded"})
            return
        letters = {letter: title for title, letter in re.findall(r"^(.+) \((\w)\)$", body["prompt"], flags=re.MULTILINE)}
        best = next(letter for letter, title in letters.items() if title.split(" [")[0] == FAVOURITE[body["model"]])
        top = {best: -0.1, " " + best: -5.0, "B" if best != "B" else "C": -2.0, "(": -3.0}
        top |= {letter: -4.0 - i * 0.1 for i, letter in enumerate(list(letters)[:5]) if letter not in top}
        self._send(200, {"choices": [{"text": best, "logprobs": {"tokens": [best], "top_logprobs": [top]}}]})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[str]:
    StandIn.requests, StandIn.fail = [], False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_letter_scores_take_the_best_spelling_and_floor_the_missing():
    top = {"A": -1.0, " A": -0.5, "C": -3.0, "(": -2.0, "Z": -0.1}
    assert letter_scores(top, 4).tolist() == pytest.approx([-0.5, -3.0, -3.0, -3.0])
    assert np.isneginf(letter_scores({}, 3)).all()


def test_requests_have_the_vllm_shape_and_the_shared_prompts(server, toy_catalog):
    ranker = VLLMRanker(toy_catalog, VLLMConfig(base_url=server, api_key="k"))
    candidates = [1, 3, 15, 9, 14, 6]
    pos, neg = ranker.score([12, 13], [4], candidates)
    assert [(r["path"], r["model"]) for r in sorted(StandIn.requests, key=lambda r: r["model"])] == [
        ("/v1/completions", "neg"), ("/v1/completions", "pos")]
    for r in StandIn.requests:
        assert r["max_tokens"] == 1 and r["logprobs"] == 20 and r["temperature"] == 0.0
        order = prompt_order(candidates, 0)
        shown = [prompts.movie_text(toy_catalog[candidates[i]]) for i in order]
        history = [prompts.movie_text(toy_catalog[i]) for i in ([12, 13] if r["model"] == "pos" else [4])]
        assert r["prompt"] == prompts.build(r["model"], history, shown).text
    assert candidates[int(np.argmax(pos))] == 15 and candidates[int(np.argmax(neg))] == 1
    assert pos.dtype == np.float32 and pos.shape == (len(candidates),)


def test_a_side_without_history_sends_nothing(server, toy_catalog):
    ranker = VLLMRanker(toy_catalog, VLLMConfig(base_url=server))
    assert ranker.sides_independent and not VLLMRanker(toy_catalog, VLLMConfig(template="letters-v6")).sides_independent
    pos, neg = ranker.score([12], [], [1, 15, 3])
    assert neg is None and pos is not None and [r["model"] for r in StandIn.requests] == ["pos"]
    assert ranker.score([], [], [1, 2]) == (None, None) and len(StandIn.requests) == 1


def test_same_candidate_order_as_the_in_process_ranker():
    llm = pytest.importorskip("recsys.llm")
    candidates = [25, 3, 17, 8, 1, 12, 19]
    for seed in (0, 7):
        me = SimpleNamespace(config=llm.RankerConfig(seed=seed))
        assert prompt_order(candidates, seed).tolist() == llm.LetterRanker.prompt_order(me, candidates).tolist()


def test_a_failing_server_leaves_retriever_order_with_the_notice(server, toy_catalog, db_url, tmp_path):
    StandIn.fail = True
    settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache")
    svc = fake_services(settings, toy_catalog, ranker=VLLMRanker(toy_catalog, VLLMConfig(base_url=server)))
    view = handlers.start(svc, settings, None)
    after = last(handlers.click(svc, settings, view.state, 1, "like", 0.6))
    assert after.cards and "Preference models unavailable" in notices_html(after.notices)
    assert StandIn.requests  # it did try


TOKENIZER = Path(__file__).resolve().parents[1] / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1" / "tokenizer.json"


@pytest.mark.skipif(not TOKENIZER.exists(), reason="the SmolLM2 tokenizer is unpacked into .cache by the first app start")
def test_one_string_tokenises_like_prefix_plus_suffix(toy_catalog):
    """vLLM tokenises the whole prompt; LetterRanker tokenises prefix and suffix apart: same ids."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZER))
    titles = [prompts.movie_text(m) for m in toy_catalog]
    for task, template in itertools.product(("pos", "neg"), prompts.TEMPLATES):
        for start in range(0, 20, 5):
            p = prompts.build(task, titles[start : start + 3], titles[start + 3 : start + 13], titles[start + 13 : start + 15],
                              template)
            apart = tok.encode(p.prefix, add_special_tokens=False).ids + tok.encode(p.suffix, add_special_tokens=False).ids
            assert tok.encode(p.text, add_special_tokens=False).ids == apart


def test_app_uses_the_vllm_ranker_when_a_url_is_set(toy_catalog):
    from app import load_ranker
    from recsys.vllm_backend import VLLMRanker
    from settings import Settings

    ranker, versions, status = load_ranker(Settings(vllm_url="http://127.0.0.1:9"), toy_catalog)
    assert isinstance(ranker, VLLMRanker) and status == "" and versions["pos"] == "vllm:pos"
    assert ranker.config.base_url == "http://127.0.0.1:9"


def test_app_warns_when_the_local_adapters_are_answer_scoped(toy_catalog, tmp_path, caplog):
    from app import load_ranker
    from settings import Settings

    for name in ("pos", "neg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(json.dumps({"adapter_scope": "answer"}))
    with caplog.at_level(logging.WARNING, logger="app"):
        load_ranker(Settings(vllm_url="http://127.0.0.1:9", adapters_dir=tmp_path), toy_catalog)
    assert "answer position only" in caplog.text
    caplog.clear()
    (tmp_path / "pos" / "metadata.json").write_text("{not json")
    (tmp_path / "neg" / "metadata.json").write_text(json.dumps({"adapter_scope": "all"}))
    with caplog.at_level(logging.WARNING, logger="app"):
        load_ranker(Settings(vllm_url="http://127.0.0.1:9", adapters_dir=tmp_path), toy_catalog)
    assert "answer position only" not in caplog.text
