"""Study files: the shipped example loads, and wrong files fail with messages that name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.config import StudyFileError, load_studies, load_study, main, parse_study

EXAMPLE = Path(__file__).resolve().parents[1] / "studies" / "example.yaml"


def example_dict() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def problems(data: dict) -> str:
    with pytest.raises(StudyFileError) as caught:
        parse_study(yaml.safe_dump(data), "bad.yaml")
    return str(caught.value)


def test_the_example_study_loads():
    study = load_study(EXAMPLE)
    assert study.condition_names == ["retriever", "pos", "posneg"]
    assert study.condition("retriever").use_llm is False and study.condition("posneg").models == ["pos", "neg"]
    assert [label for label, _ in study.item_questions[1].choices()] == ["Yes", "No"]
    assert study.item_questions[0].choices()[0] == ("1 — not at all", 1)
    assert len(study.version) == 16 and not study.export_free_text


def test_alpha_out_of_range_names_the_field():
    data = example_dict()
    data["conditions"][1]["alpha"] = 1.5
    message = problems(data)
    assert message.startswith("bad.yaml:") and "conditions.1.alpha" in message and "less than or equal to 1" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["conditions"].append(dict(d["conditions"][0])), "condition names must be unique"),
        (lambda d: d["conditions"].__setitem__(slice(1, None), []), "conditions"),
        (lambda d: d["conditions"][0].__setitem__("models", ["pos", "llm"]), "conditions.0.models.1"),
        (lambda d: d["end_questions"].append(dict(d["item_questions"][0])), "repeated: ['relevance']"),
        (lambda d: d.__setitem__("feedback", {"question": "seen"}), "feedback.question must name a scale"),
        (lambda d: d.pop("consent"), "consent: Field required"),
        (lambda d: d.__setitem__("colour", "red"), "colour: Extra inputs are not permitted"),
        (lambda d: d["item_questions"][0].__setitem__("scale", [5, 1]), "scale must be"),
        (lambda d: d["demographics"][0].__setitem__("options", ["only one"]), "at least two options"),
        (lambda d: d.__setitem__("list_length", 11), "list_length"),
    ],
)
def test_wrong_files_are_refused_with_a_clear_message(change, expected):
    data = example_dict()
    change(data)
    assert expected in problems(data)


def test_yaml_syntax_and_shape_errors():
    with pytest.raises(StudyFileError, match="not valid YAML"):
        parse_study("id: [unclosed", "x.yaml")
    with pytest.raises(StudyFileError, match="mapping"):
        parse_study("- a list", "x.yaml")
    with pytest.raises(StudyFileError, match="cannot read"):
        load_study(Path("/nonexistent/study.yaml"))


def test_load_studies_refuses_duplicate_ids_and_codes(tmp_path):
    assert load_studies(tmp_path / "missing") == {}
    (tmp_path / "a.yaml").write_text(EXAMPLE.read_text())
    assert list(load_studies(tmp_path)) == ["feedback-2026"]
    data = example_dict() | {"id": "other"}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(StudyFileError, match="join code"):
        load_studies(tmp_path)


def test_the_checker_command(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: X\n")
    assert main([str(EXAMPLE)]) == 0 and "ok" in capsys.readouterr().out
    assert main([str(bad)]) == 1 and "bad.yaml" in capsys.readouterr().err
