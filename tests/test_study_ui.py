"""The study tab's plain functions: HTML is escaped and blinded, screens map onto the fixed slots, and the
researcher report is refused without the admin secret and complete with it."""

from __future__ import annotations

import csv
import io
import logging

import pytest

from settings import Settings
from study.config import MAX_CARDS, MAX_ITEM_QUESTIONS, MAX_QUESTIONS, parse_study
from study.flow import Screen, StudyCard, StudyEnv
from study.report import Report
from tests.fakes import FakeRanker
from tests.test_app_handlers import fake_services
from tests.test_study_flow import STUDY_YAML, run_through
from webapp.study_ui import (
    _answers,
    done_html,
    header_html,
    paragraphs,
    report_html,
    researcher_report,
    researcher_studies,
    study_card_html,
)

SECRET = "ui-admin-secret"


@pytest.fixture
def env(db_url, tmp_path, toy_catalog) -> StudyEnv:
    settings = Settings(DATABASE_URL=db_url, cache_dir=tmp_path / "cache", admin_secret=SECRET)
    study = parse_study(STUDY_YAML)
    return StudyEnv(fake_services(settings, toy_catalog, ranker=FakeRanker(toy_catalog)), settings, {study.id: study})


def test_everything_shown_is_escaped():
    card = StudyCard(1, 7, "<script>alert(1)</script> & Co", 1999, ("Comedy", "<b>x</b>"))
    html = study_card_html(card)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html and "&amp; Co" in html
    assert paragraphs("We <b>store</b>\nyour answers.\n\nSecond <i>part</i>.") == (
        "<p>We &lt;b&gt;store&lt;/b&gt; your answers.</p><p>Second &lt;i&gt;part&lt;/i&gt;.</p>")
    screen = Screen("done", "<img src=x>", "thanks <b>", progress="<p>", code="<CODE>", error="<err>")
    assert "<img" not in header_html(screen) and "<err>" not in header_html(screen)
    assert "&lt;CODE&gt;" in done_html(screen) and "<b>" not in done_html(screen)


def test_cards_carry_no_rank_breakdown():
    html = study_card_html(StudyCard(3, 12, "Blade Runner", 1982, ("Sci-Fi",)))
    assert "why" not in html.lower() and "score" not in html.lower() and "α" not in html


def test_flat_inputs_split_into_cards_and_questions():
    cards = [[f"c{n}q{j}" for j in range(MAX_ITEM_QUESTIONS)] for n in range(MAX_CARDS)]
    questions = [f"q{n}" for n in range(MAX_QUESTIONS)]
    flat = [v for card in cards for v in card] + questions
    assert _answers(flat) == (questions, cards)


def test_researchers_are_refused_without_the_secret(env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for wrong in ("", "nope", SECRET.upper()):
        assert researcher_studies(env, wrong) == ([], "Refused: wrong or missing researcher secret.")
        assert researcher_report(env, wrong, "toy-study", tmp_path / "r") == "Refused: wrong or missing researcher secret."
    assert not (tmp_path / "r").exists()
    unset = StudyEnv(env.services, env.settings.model_copy(update={"admin_secret": None}), env.studies)
    assert "RECSYS_ADMIN_SECRET" in researcher_report(unset, SECRET, "toy-study", tmp_path / "r")
    assert SECRET not in caplog.text and "nope" not in caplog.text
    assert SECRET not in repr(env.settings) and SECRET not in str(env.settings.model_dump())


def test_the_report_with_the_secret(env, tmp_path):
    run_through(env, request="my private request")
    assert researcher_studies(env, SECRET) == (["toy-study"], "")
    assert researcher_report(env, SECRET, "unknown", tmp_path) == "Pick a study."
    report = researcher_report(env, SECRET, "toy-study", tmp_path / "r")
    assert isinstance(report, Report)
    rows = list(csv.DictReader(io.StringIO(report.csv_path.read_text())))
    assert len(rows) == report.n_ratings == len(report.jsonl_path.read_text().splitlines())
    assert report.plot_path.read_bytes().startswith(b"\x89PNG")
    for path in (report.csv_path, report.jsonl_path):
        text = path.read_text()
        assert "my private request" not in text and SECRET not in text
    html = report_html(report)
    assert "arm_posneg" in html and "95% CI" in html and "<b>1</b> completed" in html
