"""The app's event handlers called directly: real SQLite file, toy catalog, fake retriever/ranker/encoder."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from recsys.catalog import Catalog
from settings import Settings
from storage.db import init_db, make_engine, make_sessionmaker
from storage.models import FeedbackEvent, Impression, Message, ProfileSnapshot
from storage.repository import current_preferences, impression_items
from tests.fakes import FakeEncoder, FakeRanker, FakeRetriever
from webapp import handlers
from webapp.flow import UiState, View
from webapp.services import Services, services_from_parts
from webapp.views import card_html, chat_messages, notices_html, profile_html

HORROR = {1, 2, 3, 4, 5, 23}


def fake_services(settings: Settings, catalog: Catalog, ranker=None, retriever=None) -> Services:
    engine = make_engine(settings.database_url)
    init_db(engine)
    return services_from_parts(
        settings, catalog, retriever or FakeRetriever(catalog), make_sessionmaker(engine),
        ranker=ranker, encoder=FakeEncoder(), model_version="fake-sasrec", adapters={"pos": "fake", "neg": "fake"},
    )


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache", k=10, n_candidates=20)


@pytest.fixture
def svc(settings, toy_catalog) -> Services:
    return fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog))


def last(views) -> View:
    return list(views)[-1]


def ids(view: View) -> list[int]:
    return [c.item_id for c in view.cards]


def count(svc: Services, model, *where) -> int:
    with svc.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def prefs(svc: Services, user_id: int):
    with svc.sessions() as s:
        return current_preferences(s, user_id=user_id)


class Boom:
    def score(self, likes, dislikes, candidates):
        raise RuntimeError("adapter weights missing")


class CheckingRetriever(FakeRetriever):
    """Records, at ranking time, what a separate connection sees in the database."""

    def __init__(self, catalog: Catalog, probe: Callable[[], object]):
        super().__init__(catalog)
        self.probe, self.seen = probe, []

    def retrieve(self, history, exclude, k):
        self.seen.append(self.probe())
        return super().retrieve(history, exclude, k)


def test_start_shows_a_cold_list_and_saves_it(svc, settings):
    view = handlers.start(svc, settings, None)
    assert len(view.cards) == 10 and view.state.impression_id is not None
    assert count(svc, Impression) == 1 and view.chat == ()


def test_click_is_committed_before_any_ranking(settings, toy_catalog):
    holder: dict[str, Services] = {}

    def probe():
        with holder["svc"].sessions() as s:  # a separate connection: sees committed rows only
            return s.scalar(select(func.count()).select_from(FeedbackEvent))

    retriever = CheckingRetriever(toy_catalog, probe)
    holder["svc"] = svc = fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog), retriever=retriever)
    view = handlers.start(svc, settings, None)
    retriever.seen.clear()
    list(handlers.click(svc, settings, view.state, 1, "dislike", 0.6))
    assert retriever.seen and all(n == 1 for n in retriever.seen)


def test_click_survives_a_failing_ranker_and_says_so(settings, toy_catalog):
    svc = fake_services(settings, toy_catalog, ranker=Boom())
    view = handlers.start(svc, settings, None)
    views = list(handlers.click(svc, settings, view.state, 1, "like", 0.6))
    assert prefs(svc, view.state.user_id).likes == (1,)
    assert "Preference models unavailable" in notices_html(views[-1].notices)
    assert count(svc, Impression, Impression.degraded.is_(True)) == 1


def test_click_is_saved_even_if_reranking_crashes(settings, toy_catalog):
    class Broken(FakeRetriever):
        fail = False

        def retrieve(self, history, exclude, k):
            if self.fail:
                raise RuntimeError("retriever down")
            return super().retrieve(history, exclude, k)

    retriever = Broken(toy_catalog)
    svc = fake_services(settings, toy_catalog, retriever=retriever)
    view = handlers.start(svc, settings, None)
    retriever.fail = True
    with pytest.raises(RuntimeError):
        list(handlers.click(svc, settings, view.state, 2, "dislike", 0.6))
    assert prefs(svc, view.state.user_id).dislikes == (2,)


def test_dislike_removes_the_movie_quick_then_fused(svc, settings):
    view = handlers.start(svc, settings, None)
    target = view.cards[0].item_id
    quick, fused = list(handlers.click(svc, settings, view.state, 1, "dislike", 0.6))
    assert not quick.final and fused.final and target not in ids(quick) and target not in ids(fused)
    assert ("busy", "Re-ranking with your likes and dislikes…") in quick.notices
    later = last(handlers.send_message(svc, settings, fused.state, "something funny", 0.6))
    assert target not in ids(later)


def test_fused_impression_keeps_the_breakdown(svc, settings):
    view = handlers.start(svc, settings, None)
    fused = last(handlers.click(svc, settings, view.state, 3, "like", 0.4))
    with svc.sessions() as s:
        imp = s.get(Impression, fused.state.impression_id)
        items = impression_items(s, impression_id=imp.id)
        assert imp.alpha == pytest.approx(0.4) and imp.model_version == "fake-sasrec" and not imp.degraded
        assert imp.adapters == {"stage": "fused", "pos": "fake", "neg": "fake"}
        assert [it.rank for it in items] == list(range(1, 11))
        assert all(it.base_rank and it.pos_rank and it.explanation for it in items)
        quick = s.get(Impression, imp.id - 1)
        assert quick.adapters == {"stage": "retriever"}
    assert fused.cards[0].pos_rank is not None and 'class="why"' in card_html(fused.cards[0])


def test_undo_restores_the_movie(svc, settings):
    view = handlers.start(svc, settings, None)
    target = view.cards[0].item_id
    after = last(handlers.click(svc, settings, view.state, 1, "dislike", 0.6))
    undone = last(handlers.click(svc, settings, after.state, 5, "undo", 0.6))
    assert prefs(svc, view.state.user_id).dislikes == ()
    assert target in ids(undone) and "Removed your 👎" in notices_html(undone.notices)
    nothing = last(handlers.click(svc, settings, undone.state, 1, "undo", 0.6))
    assert "Nothing to undo" in notices_html(nothing.notices)


def test_double_click_is_stored_once(svc, settings):
    view = handlers.start(svc, settings, None)
    list(handlers.click(svc, settings, view.state, 2, "like", 0.6))
    list(handlers.click(svc, settings, view.state, 2, "like", 0.6))  # same stale state: a double click
    assert count(svc, FeedbackEvent) == 1
    threads = [threading.Thread(target=lambda: list(handlers.click(svc, settings, view.state, 4, "dislike", 0.6)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(svc, FeedbackEvent, FeedbackEvent.kind == "dislike") == 1


def test_click_on_a_stale_list_acts_on_the_movie_seen(svc, settings):
    view = handlers.start(svc, settings, None)
    seen_third = view.cards[2].item_id
    newer = last(handlers.click(svc, settings, view.state, 1, "dislike", 0.6))
    assert newer.cards[2].item_id != seen_third
    list(handlers.click(svc, settings, view.state, 3, "like", 0.6))  # the old tab state
    assert prefs(svc, view.state.user_id).likes == (seen_third,)


def test_profile_is_updated_and_saved(svc, settings):
    view = handlers.start(svc, settings, None)
    state = view.state
    for rank in (1, 1):  # Alien, then Aliens moves up to #1
        state = last(handlers.click(svc, settings, state, rank, "dislike", 0.6)).state
    fused = last(handlers.click(svc, settings, state, 3, "like", 0.6))
    html = profile_html(fused.profile, fused.n_likes, fused.n_dislikes, fused.steering)
    assert "You avoid" in html and "Alien" in html and fused.n_dislikes == 2 and fused.n_likes == 1
    with svc.sessions() as s:
        snap = s.scalars(select(ProfileSnapshot).order_by(ProfileSnapshot.id.desc())).first()
        assert snap.profile["dislikes"] and "text" in snap.profile


def test_chat_request_critique_question_and_ask_back(svc, settings):
    view = handlers.start(svc, settings, None)
    funny = last(handlers.send_message(svc, settings, view.state, "a funny space movie", 0.6))
    assert funny.cards and all({"Comedy", "Sci-Fi"} <= set(c.genres) for c in funny.cards)
    no_horror = last(handlers.send_message(svc, settings, funny.state, "anything, no horror", 0.6))
    assert no_horror.cards and not HORROR & set(ids(no_horror))
    why = last(handlers.send_message(svc, settings, no_horror.state, "why #2?", 0.6))
    assert why.chat[-1][0] == "assistant" and why.chat[-1][1].startswith("#2 ")
    assert why.state.impression_id == no_horror.state.impression_id  # a question does not re-rank
    ask = last(handlers.send_message(svc, settings, why.state, "I hated blade", 0.6))
    assert "Did you mean Blade Runner (1982)?" in ask.chat[-1][1]
    assert count(svc, Message) == 8


def test_chat_feedback_by_card_number(svc, settings):
    view = handlers.start(svc, settings, None)
    first = view.cards[0].item_id
    after = last(handlers.send_message(svc, settings, view.state, "not #1", 0.6))
    assert prefs(svc, view.state.user_id).dislikes == (first,) and first not in ids(after)
    assert "Noted: 👎" in after.chat[-1][1]


def test_everything_rendered_is_escaped(svc, settings):
    view = handlers.start(svc, settings, None)
    evil = '<img src=x onerror="alert(1)"> loved <b>Heat</b>'
    after = last(handlers.send_message(svc, settings, view.state, evil, 0.6))
    rendered = chat_messages(after.chat)
    assert "<img" not in str(rendered) and "&lt;img" in rendered[0]["content"]
    html = "".join(card_html(c) for c in after.cards) + profile_html(after.profile, 1, 0, after.steering)
    assert "<img" not in html and "<b>Heat" not in html
    dumb = next(c for c in last(handlers.send_message(svc, settings, after.state, "comedy", 0.6)).cards
                if c.item_id == 9)
    assert "Dumb &amp; Dumber" in card_html(dumb)


def test_no_ranker_shows_the_notice_and_marks_degraded(settings, toy_catalog):
    svc = fake_services(settings, toy_catalog, ranker=None)
    view = handlers.start(svc, settings, None)
    assert "Preference models unavailable" in notices_html(view.notices)
    views = list(handlers.click(svc, settings, view.state, 1, "like", 0.6))
    assert len(views) == 1 and views[0].final
    with svc.sessions() as s:
        assert s.get(Impression, views[0].state.impression_id).degraded


def test_returning_user_gets_list_profile_and_chat_back(settings, toy_catalog):
    svc = fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog))
    view = handlers.start(svc, settings, None)
    after = last(handlers.send_message(svc, settings, view.state, "not #2", 0.6))
    restarted = fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog))  # a new process
    back = handlers.start(restarted, settings, view.state.public_id)
    assert back.state == after.state and ids(back) == ids(after)
    assert back.n_dislikes == 1 and [r for r, _ in back.chat] == ["user", "assistant"]
    stranger = handlers.start(restarted, settings, "not-a-known-id")
    assert stranger.state.user_id != view.state.user_id


def test_search_and_quick_start(svc, settings):
    view = handlers.start(svc, settings, None)
    found = handlers.search(svc, "matrix")
    assert found[0] == ("The Matrix (1999)", 14)
    liked = last(handlers.rate_title(svc, settings, view.state, 14, "like", 0.6))
    again = last(handlers.rate_title(svc, settings, liked.state, 14, "like", 0.6))
    assert "already liked" in notices_html(again.notices) and count(svc, FeedbackEvent) == 1
    started = last(handlers.quick_start(svc, settings, again.state, [12, 11], [3, 4], 0.6))
    assert started.n_likes == 3 and started.n_dislikes == 2 and not {3, 4, 11, 12, 14} & set(ids(started))


def test_api_client_without_page_load_gets_a_user(svc, settings):
    views = list(handlers.click(svc, settings, UiState(), 1, "like", 0.6))
    assert views[-1].state.user_id and "no longer on the list" in notices_html(views[-1].notices)


class CountingRanker(FakeRanker):
    calls = 0

    def score(self, likes, dislikes, candidates):
        self.calls += 1
        return super().score(likes, dislikes, candidates)


def test_a_fused_list_overtaken_by_a_newer_click_is_skipped(settings, toy_catalog):
    ranker = CountingRanker(toy_catalog)
    svc = fake_services(settings, toy_catalog, ranker=ranker)
    view = handlers.start(svc, settings, None)
    first = handlers.click(svc, settings, view.state, 1, "like", 0.6)
    quick = next(first)  # the quick list is on screen, its fused list not yet computed...
    newer = last(handlers.click(svc, settings, quick.state, 1, "dislike", 0.6))  # ...and the person clicks again
    calls = ranker.calls
    assert list(first) == [] and ranker.calls == calls  # the stale pass neither ran nor replaced the list
    with svc.sessions() as s:
        assert s.scalar(select(func.max(Impression.id))) == newer.state.impression_id


def test_undo_serves_the_earlier_fused_list_without_a_new_pass(settings, toy_catalog):
    ranker = CountingRanker(toy_catalog)
    svc = fake_services(settings, toy_catalog, ranker=ranker)
    view = handlers.start(svc, settings, None)
    one = last(handlers.click(svc, settings, view.state, 1, "like", 0.6))
    two = last(handlers.click(svc, settings, one.state, 2, "like", 0.6))
    calls = ranker.calls
    assert calls == 2  # each click's state was new
    back = last(handlers.click(svc, settings, two.state, 1, "undo", 0.6))
    assert back.final and ranker.calls == calls  # the state before the second like: its scores were cached
    assert ids(back) == ids(one) and [c.pos_rank for c in back.cards] == [c.pos_rank for c in one.cards]
