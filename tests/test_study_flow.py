"""Study mode end to end: fake models, toy catalog, real SQLite file. Join, consent, counterbalanced
conditions, ratings tied to impressions, re-ranking from ratings, blinding, exports, results, admin secret."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import replace

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from settings import Settings
from storage.models import (
    FeedbackEvent,
    Impression,
    ImpressionItem,
    Message,
    StudyParticipant,
    StudyRating,
    User,
)
from study import access, export, flow, results
from study.config import parse_study
from study.flow import Screen, StudyEnv, StudyState
from study.latin import order_for
from tests.fakes import FakeRanker
from tests.test_app_handlers import fake_services

CONDITIONS = ("arm_retriever", "arm_pos", "arm_posneg")
STUDY_YAML = """
id: toy-study
title: Toy study
join_code: TOY-123
completion_code: DONE-777
consent: "We store your ratings under a random id."
conditions:
  - {name: arm_retriever, alpha: 1.0, models: []}
  - {name: arm_pos, alpha: 0.5, models: [pos]}
  - {name: arm_posneg, alpha: 0.5, models: [pos, neg]}
rounds: 2
list_length: 5
tasks: ["Find a movie for tonight"]
feedback: {question: relevance, like_at_least: 4, dislike_at_most: 2}
demographics:
  - {id: age_group, text: "Your age", kind: choice, options: ["18-34", "35+"], required: false}
item_questions:
  - {id: relevance, text: "Fits the task?", scale: [1, 5]}
  - {id: seen, text: "Seen it?", kind: yesno}
list_questions:
  - {id: satisfaction, text: "Satisfied with this list?", scale: [1, 5]}
block_questions:
  - {id: resque_accuracy, text: "Matched my interests", scale: [1, 5]}
end_questions:
  - {id: preferred_list, text: "Best list?", kind: choice, options: ["List A", "List B", "List C"]}
"""
SECRET_REQUEST = "zebra-quartz request 91"


@pytest.fixture
def study():
    return parse_study(STUDY_YAML, "toy.yaml")


@pytest.fixture
def env(db_url, tmp_path, toy_catalog, study) -> StudyEnv:
    settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache", admin_secret="s3cret-admin")
    services = fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog))
    return StudyEnv(services, settings, {study.id: study})


def count(env: StudyEnv, model, *where) -> int:
    with env.services.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def join(env: StudyEnv) -> tuple[StudyState, Screen]:
    state, screen = flow.open_study(env, "toy-123")
    assert screen.kind == "consent"
    return flow.give_consent(env, state, True)


def relevance_for(card) -> int:
    """Deterministic answers: even ranks fit the task (5), odd ranks do not (1)."""
    return 5 if card.rank % 2 == 0 else 1


def answer(env: StudyEnv, state: StudyState, screen: Screen) -> tuple[StudyState, Screen]:
    """Answer every question on the screen (first option, or the rule above for cards)."""
    values = [q.choices()[0][1] for q in screen.questions]
    cards = [[relevance_for(card), 0] for card in screen.cards]
    return flow.submit(env, state, values, cards)


def run_through(env: StudyEnv, request: str = "") -> tuple[StudyState, list[Screen]]:
    state, screen = join(env)
    seen = [screen]
    while screen.kind != "done":
        if screen.kind == "task" and request and "round 1" in screen.title:
            state, screen = flow.ask_for(env, state, request)
            seen.append(screen)
        state, screen = answer(env, state, screen)
        seen.append(screen)
        assert not screen.error, screen.error
    return state, seen


def test_join_with_a_wrong_code_or_link_is_refused(env):
    state, screen = flow.open_study(env, "nope")
    assert screen.kind == "join" and "No study" in screen.error and state == StudyState()
    state, screen = flow.from_link(env, "toy-study", "WRONG")
    assert screen.kind == "join" and screen.error
    assert flow.from_link(env, "", "") is None
    assert flow.from_link(env, "toy-study", "TOY-123")[1].kind == "consent"
    assert count(env, User) == 0


def test_declining_consent_stores_nothing(env):
    state, _ = flow.open_study(env, "TOY-123")
    state, screen = flow.give_consent(env, state, False)
    assert screen.kind == "declined" and count(env, User) == 0 and count(env, StudyParticipant) == 0


def test_participants_get_latin_square_rows_in_join_order(env, study):
    orders = []
    for _ in range(7):
        state, screen = join(env)
        assert screen.kind == "questions" and screen.title == "About you"
        with env.services.sessions() as s:
            orders.append(s.scalar(select(StudyParticipant.conditions).join(User).where(
                User.public_id == state.participant)))
    assert orders == [order_for(i, study.condition_names) for i in range(7)]
    assert orders[0] != orders[1] and orders[6] == orders[0]  # 3 conditions: 6 rows, then again
    assert all(sorted(o) == sorted(CONDITIONS) for o in orders)
    with env.services.sessions() as s:
        assert {u.kind for u in s.scalars(select(User))} == {"participant"}
        assert all(len(u.public_id) == 32 and u.display_name is None for u in s.scalars(select(User)))


def test_a_whole_study_ratings_point_to_what_was_shown(env, study):
    state, screens = run_through(env)
    assert screens[-1].kind == "done" and screens[-1].code == "DONE-777"
    with env.services.sessions() as s:
        participant = s.scalar(select(StudyParticipant))
        assert participant.completed_at is not None
        order = list(participant.conditions)
        card_ratings = s.scalars(select(StudyRating).where(StudyRating.rank.is_not(None))).all()
        assert len(card_ratings) == 3 * 2 * 5 * 2  # conditions x rounds x cards x item questions
        for rating in card_ratings:
            item = s.scalar(select(ImpressionItem).where(ImpressionItem.impression_id == rating.impression_id,
                                                         ImpressionItem.rank == rating.rank))
            assert item is not None and item.item_id == rating.item_id
            impression = s.get(Impression, rating.impression_id)
            assert impression.session_id == rating.session_id and rating.study_id == "toy-study"
        list_ratings = s.scalars(select(StudyRating).where(StudyRating.question == "satisfaction")).all()
        assert len(list_ratings) == 6 and all(r.impression_id and r.rank is None for r in list_ratings)
        rated = [s.get(Impression, r.impression_id) for r in list_ratings]
    # The blocks ran in the participant's counterbalanced order, each list marked with its condition.
    assert [i.condition for i in rated] == [c for c in order for _ in range(2)]
    tasks = [sc for sc in screens if sc.kind == "task"]
    assert [t.title for t in tasks] == [f"List {b} — round {r} of 2" for b in "ABC" for r in (1, 2)]


def test_each_condition_runs_its_own_models_and_alpha(env):
    run_through(env)
    with env.services.sessions() as s:
        impressions = s.scalars(select(Impression).order_by(Impression.id)).all()
        by_condition = {c: [i for i in impressions if i.condition == c] for c in CONDITIONS}
    for condition, shown in by_condition.items():
        first, second = shown
        assert first.alpha == second.alpha == (1.0 if condition == "arm_retriever" else 0.5)
        assert all(it.pos_rank is None and it.neg_rank is None for it in first.items)  # no history yet
        assert not first.degraded and not second.degraded
        has_pos = any(it.pos_rank is not None for it in second.items)
        has_neg = any(it.neg_rank is not None for it in second.items)
        assert (has_pos, has_neg) == {"arm_retriever": (False, False), "arm_pos": (True, False),
                                      "arm_posneg": (True, True)}[condition]
        # round 2 never repeats a movie rated in round 1 of the same block
        assert not {it.item_id for it in first.items} & {it.item_id for it in second.items}


def test_ratings_become_feedback_inside_their_block_only(env):
    run_through(env)
    with env.services.sessions() as s:
        events = s.scalars(select(FeedbackEvent)).all()
        impressions = {i.id: i for i in s.scalars(select(Impression))}
        assert len(events) == 3 * 2 * 5  # every card rated 1 or 5: each is a like or a dislike
        for event in events:
            shown = impressions[event.impression_id]
            assert event.session_id == shown.session_id
            rank = next(it.rank for it in shown.items if it.item_id == event.item_id)
            assert event.kind == ("like" if rank % 2 == 0 else "dislike")


def test_a_condition_that_wants_models_that_are_missing_is_marked_degraded(db_url, tmp_path, toy_catalog, study):
    settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache")
    env = StudyEnv(fake_services(settings, toy_catalog, ranker=None), settings, {study.id: study})
    run_through(env)
    with env.services.sessions() as s:
        second_rounds = s.scalars(select(Impression).order_by(Impression.id)).all()[1::2]
    assert {i.condition: i.degraded for i in second_rounds} == {
        "arm_retriever": False, "arm_pos": True, "arm_posneg": True}


def test_participants_never_see_condition_names_or_scores(env):
    _, screens = run_through(env, request="something funny")
    text = repr(screens)
    assert not any(name in text for name in CONDITIONS)
    assert "alpha" not in text and "score" not in text


def test_missing_answers_store_nothing_and_keep_the_step(env):
    state, screen = join(env)
    state, screen = answer(env, state, screen)  # demographics
    assert screen.kind == "task"
    cards = [[5, 0] for _ in screen.cards]
    cards[2] = [None, 0]
    again_state, again = flow.submit(env, state, [3], cards)
    assert again.kind == "task" and "movie 3" in again.error and again_state.step == state.step
    assert again_state.impression_id == state.impression_id
    assert count(env, StudyRating, StudyRating.rank.is_not(None)) == 0
    bad = flow.submit(env, state, [9], [[5, 0] for _ in screen.cards])[1]
    assert "the list" in bad.error and count(env, StudyRating, StudyRating.question == "satisfaction") == 0


def test_a_double_submit_is_stored_once(env):
    state, screen = join(env)
    state, screen = answer(env, state, screen)
    values, cards = [4], [[3, 1] for _ in screen.cards]
    first_state, first = flow.submit(env, state, values, cards)
    _, second = flow.submit(env, state, values, cards)  # same old state: the step was already answered
    assert count(env, StudyRating, StudyRating.question == "satisfaction") == 1
    assert second.title == first.title == "List A — round 2 of 2"


def test_a_reload_resumes_where_the_participant_left_off(env):
    state, screen = join(env)
    state, screen = answer(env, state, screen)
    shown = [c.item_id for c in screen.cards]
    resumed_state, resumed = flow.from_link(env, "toy-study", "TOY-123", stored=state.participant)
    assert resumed.kind == "task" and [c.item_id for c in resumed.cards] == shown
    assert resumed_state.impression_id == state.impression_id
    assert flow.resume(env, "no-such-id") is None


def test_a_new_request_replaces_the_unrated_list(env):
    state, screen = join(env)
    state, screen = answer(env, state, screen)
    new_state, new = flow.ask_for(env, state, "something funny")
    assert new.request == "something funny" and new_state.impression_id != state.impression_id
    # Rating the replaced list is refused; the list on screen is the one that counts.
    stale = flow.submit(env, state, [3], [[3, 0] for _ in screen.cards])[1]
    assert "changed" in stale.error and count(env, StudyRating, StudyRating.impression_id.is_not(None)) == 0


# ------------------------------------------------------------------------------------------ exports


def exported(env: StudyEnv, study) -> tuple[list[dict], str, str]:
    with env.services.sessions() as s:
        rows = export.rating_rows(s, study)
    return rows, export.to_csv(rows, export.columns(study)), export.to_jsonl(rows)


def test_export_has_one_row_per_rating_and_no_free_text(env, study):
    with env.services.sessions.begin() as s:  # a named person elsewhere in the database
        s.add(User(kind="person", display_name="Dr Jane Secretname"))
    run_through(env, request=SECRET_REQUEST)
    rows, text_csv, text_jsonl = exported(env, study)
    assert len(rows) == count(env, StudyRating)
    assert list(csv.DictReader(io.StringIO(text_csv)))[0].keys() == set(export.COLUMNS) | set()
    assert [json.loads(line) for line in text_jsonl.splitlines()] == json.loads(json.dumps(rows))
    for blob in (text_csv, text_jsonl):
        assert SECRET_REQUEST not in blob and "zebra" not in blob and "Secretname" not in blob
        assert "s3cret-admin" not in blob
    with env.services.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Message).where(Message.text == SECRET_REQUEST)) == 3
    card = next(r for r in rows if r["question"] == "relevance" and r["round"] == 2)
    assert card["condition"] in CONDITIONS and card["list_label"] in ("List A", "List B", "List C")
    assert card["rank"] and card["item_id"] and card["impression_id"] and card["shown_at"] and card["rated_at"]
    assert card["base_rank"] is not None and card["score"] is not None and card["alpha"] in (0.5, 1.0)
    end = next(r for r in rows if r["question"] == "preferred_list")
    assert end["answer"] == "List A" and end["condition"] is None and end["question_group"] == "end"
    block = next(r for r in rows if r["question"] == "resque_accuracy")
    assert block["condition"] in CONDITIONS and block["impression_id"] is None


def test_export_free_text_only_when_the_study_asks(env, study):
    chatty = study.model_copy(update={"export_free_text": True})
    env = replace(env, studies={chatty.id: chatty})
    run_through(env, request=SECRET_REQUEST)
    rows, text_csv, _ = exported(env, chatty)
    assert "request" in export.columns(chatty) and SECRET_REQUEST in text_csv
    assert {r["request"] for r in rows if r["round"] == 1} == {SECRET_REQUEST}


def test_progress_and_results(env, study):
    for _ in range(3):
        run_through(env)
    join(env)  # a fourth participant who has only just started
    with env.services.sessions() as s:
        progress = results.progress(s, study)
        rows = export.rating_rows(s, study)
    assert progress.participants == 4 and progress.completed == 3
    assert progress.rows == {0: 1, 1: 1, 2: 1, 3: 1}
    assert [(c.condition, c.completed, c.lists, c.degraded) for c in progress.conditions] == [
        (c, 3, 6, 0) for c in CONDITIONS]
    summaries = results.summarise(study, rows)
    relevance = [x for x in summaries if x.question == "relevance"]
    assert [x.condition for x in relevance] == list(CONDITIONS)
    assert all(x.participants == 3 and x.ratings == 30 and x.mean == pytest.approx(2.6) for x in relevance)
    assert all(x.low == pytest.approx(2.6) == x.high for x in relevance)  # every participant answered alike
    assert {x.question for x in summaries} == {"relevance", "seen", "satisfaction", "resque_accuracy"}
    png = results.plot_png(study, summaries)
    assert png.startswith(b"\x89PNG")


def test_mean_ci_matches_a_hand_computed_interval():
    mean, low, high = results.mean_ci([2.0, 4.0, 3.0, 5.0])
    half = 3.182 * (1.2909944 / 2)  # t(0.975, 3) * sd / sqrt(n)
    assert (mean, low, high) == pytest.approx((3.5, 3.5 - half, 3.5 + half))
    assert results.t_critical(40) == pytest.approx(2.021, abs=1e-3)
    assert results.t_critical(1000) == pytest.approx(1.962, abs=1e-3)


# ------------------------------------------------------------------------------------------ admin secret


def test_admin_secret_is_required_and_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    expected = SecretStr("s3cret-admin")
    assert access.is_admin(expected, "s3cret-admin")
    assert not access.is_admin(expected, "wrong-guess-1")
    assert not access.is_admin(expected, "")
    assert not access.is_admin(expected, None)
    assert not access.is_admin(None, "s3cret-admin") and not access.is_admin(SecretStr(""), "")
    assert access.refusal(None) == access.NOT_CONFIGURED and access.refusal(expected) == access.REFUSED
    assert "s3cret-admin" not in caplog.text and "wrong-guess-1" not in caplog.text
    assert "refused" in caplog.text


def test_blocks_that_start_from_the_same_request_share_one_model_pass(db_url, tmp_path, toy_catalog, study):
    """arm_pos and arm_posneg both open with the request's seed movie as the only like: the same question to the
    positive model, asked once (the app's CachedRanker); later rounds differ by block, so they are asked anew."""
    from tests.test_app_handlers import CountingRanker

    class Recording(CountingRanker):
        def __init__(self, catalog):
            super().__init__(catalog)
            self.asked = []

        def score(self, likes, dislikes, candidates):
            self.asked.append((tuple(likes), tuple(dislikes), frozenset(candidates)))
            return super().score(likes, dislikes, candidates)

    ranker = Recording(toy_catalog)
    settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache")
    env = StudyEnv(fake_services(settings, toy_catalog, ranker=ranker), settings, {study.id: study})
    run_through(env, request="something like Alien")
    with env.services.sessions() as s:
        llm_lists = [i for i in s.scalars(select(Impression)) if any(it.pos_rank is not None for it in i.items)]
    assert len(llm_lists) == 4  # rounds 1 and 2 of arm_pos and arm_posneg
    assert len(ranker.asked) == len(set(ranker.asked)) == 3  # round 1's question once, each round 2 its own
