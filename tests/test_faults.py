"""Faults: the app process killed with SIGKILL mid-session, and preference models that fail.

The first test launches the real app process (``scripts/load_test.py serve --models fake``: app.build_app
with the real catalog and the test fakes, a temp SQLite file), drives clicks through gradio_client, kills
the process group with SIGKILL while a click is in flight, restarts it on the same database and checks
that every acknowledged click is stored and ``PRAGMA integrity_check`` says ok. The others go through
the handlers: a ranker that fails to load or to score leaves a working retriever-only page that says so.
Not for: hostile input (test_hostile_input.py) or load (scripts/load_test.py).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from sqlalchemy import select

import app
from settings import Settings
from storage.db import make_engine, make_sessionmaker
from storage.models import FeedbackEvent, Impression, User
from tests.fakes import FakeRanker
from tests.test_app_handlers import fake_services, last
from webapp import handlers
from webapp.services import UNAVAILABLE, attach_ranker
from webapp.views import notices_html

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "load_test.py"
_spec = importlib.util.spec_from_file_location("load_test", SCRIPT)
load_test = importlib.util.module_from_spec(_spec)
sys.modules["load_test"] = load_test  # dataclasses look their module up there
_spec.loader.exec_module(load_test)


class AppProcess:
    """The app in a child process on a free port; ``kill()`` is SIGKILL to its whole process group."""

    def __init__(self, db_url: str, cache_dir: Path):
        self.db_url, self.cache_dir = db_url, cache_dir
        self.child = None

    def start(self) -> str:
        port = load_test.free_port()
        self.child = load_test.launch("fake", self.db_url, True, port, self.cache_dir)
        url = f"http://127.0.0.1:{port}"
        load_test.wait_until_up(url, self.child, timeout=120)
        return url

    def kill(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait(timeout=30)
            assert self.child.returncode == -signal.SIGKILL


@pytest.fixture
def app_process(db_url, tmp_path) -> Iterator[AppProcess]:
    proc = AppProcess(db_url, tmp_path / "cache")
    try:
        yield proc
    finally:
        proc.kill()


def stored_clicks(db_url: str, public_id: str) -> tuple[list[tuple[int, str]], str]:
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        user = s.scalars(select(User).where(User.public_id == public_id)).one()
        events = s.scalars(select(FeedbackEvent).where(FeedbackEvent.user_id == user.id).order_by(FeedbackEvent.id)).all()
        sqlite = engine.dialect.name == "sqlite"
        integrity = s.connection().exec_driver_sql("PRAGMA integrity_check").scalar() if sqlite else "ok"
    engine.dispose()
    return [(e.item_id, e.kind) for e in events], integrity


def test_acknowledged_clicks_survive_sigkill_and_restart(app_process, db_url):
    client = Client(app_process.start(), verbose=False)
    out = client.predict("", api_name="/start")
    public_id, shown, acked = out[0], load_test.card_ids(out), []
    for rank, kind in ((1, "dislike"), (2, "like"), (1, "dislike"), (3, "like")):
        out = client.predict(rank, kind, 0.6, api_name="/feedback")
        assert "saved." in out[0]
        acked.append((shown[rank - 1], kind))
        shown = load_test.card_ids(out)
    in_flight = threading.Thread(target=lambda: client.submit(2, "dislike", 0.6, api_name="/feedback"), daemon=True)
    in_flight.start()  # may or may not be committed when the kill lands; either way nothing may break
    app_process.kill()
    stored, integrity = stored_clicks(db_url, public_id)
    assert integrity == "ok"
    assert stored[: len(acked)] == acked and len(stored) <= len(acked) + 1

    client = Client(app_process.start(), verbose=False)  # restart on the same database, same browser id
    back = client.predict(public_id, api_name="/start")
    assert back[0] == public_id
    out = client.predict(1, "like", 0.6, api_name="/feedback")
    assert "saved." in out[0]
    stored_after, integrity = stored_clicks(db_url, public_id)
    assert integrity == "ok" and stored_after[: len(stored)] == stored and len(stored_after) == len(stored) + 1


class Boom:
    def score(self, likes, dislikes, candidates):
        raise RuntimeError("CUDA error: out of memory")


class FailsLater(FakeRanker):
    """Scores normally, then starts failing (a GPU lost mid-session)."""

    broken = False

    def score(self, likes, dislikes, candidates):
        if self.broken:
            raise RuntimeError("adapter went away")
        return super().score(likes, dislikes, candidates)


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache", k=10, n_candidates=20)


@pytest.mark.parametrize(("cpu_dtype", "device", "want"), [("auto", "cpu", None), ("float32", "cpu", "float32"),
                                                           ("bfloat16", "cpu", "bfloat16"), ("float32", "cuda", None)])
def test_the_cpu_dtype_setting_reaches_the_model(settings, toy_catalog, monkeypatch, cpu_dtype, device, want):
    import torch

    import recsys.llm

    seen = {}

    def fake_load(*args, **kwargs):
        seen.update(kwargs)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(recsys.llm, "load_ranker", fake_load)
    monkeypatch.setattr(recsys.llm, "resolve_device", lambda d: device)
    chosen = settings.model_copy(update={"use_llm": True, "cpu_dtype": cpu_dtype, "device": device})
    assert app.load_ranker(chosen, toy_catalog)[0] is None
    assert seen["dtype"] == (getattr(torch, want) if want else None)  # on a GPU the setting does not apply


@pytest.mark.parametrize(("compile_pass", "compile_attention"), [(False, False), (True, False), (False, True)])
def test_the_compile_settings_reach_the_ranker(settings, toy_catalog, monkeypatch, tmp_path, compile_pass,
                                              compile_attention):
    import recsys.llm

    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["compile_attention"] and not defaults["compile"]  # the app's defaults: the attention alone
    seen = []
    monkeypatch.setattr(recsys.llm, "load_ranker", lambda *args, **kwargs: seen.append(args[4]) or 1 / 0)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # records the real value, restored after the test
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    chosen = settings.model_copy(update={"use_llm": True, "compile": compile_pass,
                                         "compile_attention": compile_attention, "cache_dir": tmp_path})
    assert app.load_ranker(chosen, toy_catalog)[0] is None  # the ZeroDivisionError leaves a retriever-only app
    assert seen[0].compile is compile_pass and seen[0].compile_attention is compile_attention
    # compiled kernels are cached beside the other caches, so a later start reuses them
    compiled = compile_pass or compile_attention
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == (str(tmp_path.resolve() / "inductor") if compiled else None)


def test_ranker_that_fails_to_load_leaves_retriever_only(settings, toy_catalog, tmp_path):
    broken = settings.model_copy(update={"use_llm": True, "adapters_dir": tmp_path / "no-adapters"})
    ranker, versions, status = app.load_ranker(broken, toy_catalog)
    assert ranker is None and versions == {} and status.startswith(UNAVAILABLE) and "FileNotFoundError" in status
    svc = fake_services(settings, toy_catalog, ranker=None)
    attach_ranker(svc, ranker, versions, status)
    view = handlers.start(svc, settings, None)
    after = last(handlers.click(svc, settings, view.state, 1, "like", 0.6))
    assert after.cards and after.final and "Preference models unavailable" in notices_html(after.notices)
    with svc.sessions() as s:
        assert s.get(Impression, after.state.impression_id).degraded


def test_ranker_that_fails_to_score_serves_retriever_order_and_says_so(settings, toy_catalog):
    svc = fake_services(settings, toy_catalog, ranker=Boom())
    view = handlers.start(svc, settings, None)
    views = list(handlers.click(svc, settings, view.state, 2, "dislike", 0.6))
    assert views[-1].cards and "Preference models unavailable" in notices_html(views[-1].notices)
    assert "CUDA" not in notices_html(views[-1].notices)  # no internals on the page
    with svc.sessions() as s:
        assert s.scalars(select(FeedbackEvent)).one().kind == "dislike"


def test_ranker_failing_mid_session_degrades_then_recovers(settings, toy_catalog):
    ranker = FailsLater(toy_catalog)
    svc = fake_services(settings, toy_catalog, ranker=ranker)
    view = handlers.start(svc, settings, None)
    ok = last(handlers.click(svc, settings, view.state, 1, "like", 0.6))
    assert "Preference models unavailable" not in notices_html(ok.notices)
    ranker.broken = True
    bad = last(handlers.click(svc, settings, ok.state, 1, "like", 0.6))
    assert bad.cards and "Preference models unavailable" in notices_html(bad.notices)
    ranker.broken = False
    good = last(handlers.click(svc, settings, bad.state, 1, "like", 0.6))
    assert "Preference models unavailable" not in notices_html(good.notices)
    assert good.n_likes == 3
