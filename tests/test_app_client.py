"""The launched app (fake models, toy catalog, real SQLite file) driven over HTTP through gradio_client."""

from __future__ import annotations

import re
import socket
from contextlib import contextmanager

import pytest
from gradio_client import Client
from sqlalchemy import select

import app
from settings import Settings
from storage.models import FeedbackEvent, Message
from tests.fakes import FakeRanker
from tests.test_app_handlers import fake_services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def launched(settings, toy_catalog):
    """The app with fake services, launched in-process on a free loopback port, and a gradio_client for it."""
    services = fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog))
    demo = app.build_app(services, settings, secret="test-secret").queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=free_port())
    try:
        yield services, Client(url, verbose=False)
    finally:
        demo.close()


@pytest.fixture
def running(db_url, tmp_path, toy_catalog):
    with launched(Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache"), toy_catalog) as out:
        yield out


def card_ids(outputs: tuple) -> list[int]:
    """Item ids of the shown cards, from the card bodies in a view's outputs."""
    return [int(m.group(1)) for html in outputs for m in re.finditer(r'data-item="(\d+)"', str(html))]


def test_message_then_dislike_over_the_api(running):
    services, client = running
    public_id, *_ = client.predict("", api_name="/start")
    assert public_id
    job = client.submit("a funny space movie", 0.6, api_name="/send")
    job.result()
    shown = card_ids(job.outputs()[-1])
    assert shown and all("Comedy" in services.catalog[i].genres for i in shown)

    job = client.submit(1, "dislike", 0.6, api_name="/feedback")
    job.result()
    quick, fused = job.outputs()
    assert shown[0] not in card_ids(quick) and shown[0] not in card_ids(fused)
    assert "Re-ranking" in quick[0] and "Re-ranking" not in fused[0]  # notices come first

    with services.sessions() as s:
        events = s.scalars(select(FeedbackEvent)).all()
        assert [(e.item_id, e.kind) for e in events] == [(shown[0], "dislike")]
        assert events[0].impression_id is not None
        assert [m.role for m in s.scalars(select(Message))] == ["user", "assistant"]

    again = client.predict(public_id, api_name="/start")  # same browser id: the list comes back
    assert again[0] == public_id and card_ids(again) == card_ids(fused)
