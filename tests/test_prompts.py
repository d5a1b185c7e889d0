"""Golden strings for the preference prompts, and their token budget with SmolLM2's real tokenizer."""

from __future__ import annotations

import pytest

from recsys import prompts
from recsys.catalog import Movie
from tests.test_llm import smol_tokenizer  # noqa: F401  (fixture)

POS_GOLDEN = (
    "<|im_start|>user\n"
    "I liked:\n"
    "Alien\n"
    "Heat\n"
    "Movies:\n"
    "Toy Story (A)\n"
    "Up (B)\n"
    "Solaris (C)\n"
    "Which movie above will I like most? Answer with its letter.<|im_end|>\n"
    "<|im_start|>assistant\n"
    "("
)
NEG_SUFFIX_GOLDEN = (
    "I disliked:\n"
    "Scream\n"
    "Movies:\n"
    "Toy Story (A)\n"
    "Up (B)\n"
    "Solaris (C)\n"
    "Which movie above will I dislike most? Answer with its letter.<|im_end|>\n"
    "<|im_start|>assistant\n"
    "("
)


def test_positive_prompt_golden():
    prompt = prompts.build("pos", ["Alien", "Heat"], ["Toy Story", "Up", "Solaris"])
    assert prompt.text == POS_GOLDEN
    assert prompt.prefix == prompts.PREFIX == "<|im_start|>user\n"


def test_negative_prompt_shares_the_prefix():
    pos = prompts.build("pos", ["Alien"], ["Toy Story", "Up", "Solaris"])
    neg = prompts.build("neg", ["Scream"], ["Toy Story", "Up", "Solaris"])
    assert neg.prefix == pos.prefix
    assert neg.suffix == NEG_SUFFIX_GOLDEN


def test_no_default_system_prompt():
    text = prompts.build("pos", ["Alien"], ["Up"]).text
    assert text.startswith("<|im_start|>user\n")
    assert "system" not in text and "SmolLM" not in text


def test_content_free_and_list_prompts():
    cf = prompts.content_free("neg", 3, n_history=2)
    assert cf.text == prompts.build("neg", ["N/A"] * 2, ["N/A"] * 3).text
    listed = prompts.list_prompt("pos", ["Alien"], ["Up", "Heat"], n=2)
    assert listed == (
        "<|im_start|>user\nI liked:\nAlien\nMovies:\nUp (A)\nHeat (B)\n"
        "List the 2 movies above I will like most, best first, one title per line.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_movie_text_drops_alternative_titles_and_year_by_default():
    mib = Movie(1580, "Men in Black (a.k.a. MIB)", 1997, ("Action", "Comedy", "Sci-Fi"))
    assert prompts.movie_text(mib) == "Men in Black [Sci-Fi, Action]"  # the two most specific genres
    assert prompts.movie_text(mib, show_year=True, genres=0) == "Men in Black (1997)"
    assert prompts.movie_text(Movie(1, "(500) Days of Summer", 2009, ())) == "(500) Days of Summer"
    assert prompts.movie_text(Movie(2, "Alien", None, ("Horror", "(no genres listed)")), show_year=True) == "Alien [Horror]"


def test_candidates_carry_their_mean_rating_and_history_does_not():
    alien = Movie(2, "Alien", 1979, ("Horror", "Sci-Fi"), rating=4.06)
    unrated = Movie(3, "Up", 2009, ("Animation",))
    assert prompts.movie_text(alien) == "Alien [Horror, Sci-Fi]"
    assert prompts.movie_text(alien, rating=True) == "Alien [Horror, Sci-Fi] rated 4.1"
    assert prompts.texts([alien, unrated], candidates=True) == ["Alien [Horror, Sci-Fi] rated 4.1", "Up [Animation]"]
    assert prompts.texts([alien, unrated]) == ["Alien [Horror, Sci-Fi]", "Up [Animation]"]


def test_letters_limit():
    assert prompts.letters(20) == "ABCDEFGHIJKLMNOPQRST"
    with pytest.raises(ValueError):
        prompts.letters(27)
    with pytest.raises(ValueError):
        prompts.candidate_block([])


def test_letters_are_single_tokens_after_the_answer_opening(smol_tokenizer):  # noqa: F811
    from recsys.llm import letter_token_ids

    ids = letter_token_ids(smol_tokenizer, 26)
    assert ids == [smol_tokenizer.convert_tokens_to_ids(c) for c in prompts.LETTERS]
    suffix = smol_tokenizer(prompts.task_suffix("pos", ["Alien"], ["Up"]), add_special_tokens=False)["input_ids"]
    assert smol_tokenizer.decode(suffix[-1:]) == "("  # the answer letter is the very next token


def test_real_prompt_stays_under_550_tokens(smol_tokenizer, toy_catalog):  # noqa: F811
    movies = list(toy_catalog.with_ratings({m.item_id: 3.0 + m.item_id / 100 for m in toy_catalog}))
    likes = prompts.texts(movies[:10])
    candidates = prompts.texts(movies[5:25], candidates=True)
    assert all(" rated " in c for c in candidates)
    prompt = prompts.build("pos", likes, candidates)
    n_prefix = len(smol_tokenizer(prompt.prefix, add_special_tokens=False)["input_ids"])
    n_suffix = len(smol_tokenizer(prompt.suffix, add_special_tokens=False)["input_ids"])
    assert n_prefix + n_suffix < 550  # 10 likes + 20 rated candidates with two genre tags each


def test_shared_template_differs_only_in_the_question():
    """letters-v6: likes, dislikes and candidates in one block both tasks share; only the question differs."""
    pos = prompts.build("pos", ["Alien", "Heat"], ["Toy Story", "Up"], ["Scream"], "letters-v6")
    neg = prompts.build("neg", ["Scream"], ["Toy Story", "Up"], ["Alien", "Heat"], "letters-v6")
    assert pos.prefix == neg.prefix == (
        "<|im_start|>user\nI liked:\nAlien\nHeat\nI disliked:\nScream\nMovies:\nToy Story (A)\nUp (B)\n")
    assert pos.suffix == "Which movie above will I like most? Answer with its letter.<|im_end|>\n<|im_start|>assistant\n("
    assert neg.suffix == pos.suffix.replace("like most", "dislike most")
    alone = prompts.build("neg", ["Scream"], ["Up"], (), "letters-v6")  # no likes: no "I liked:" block
    assert alone.prefix == "<|im_start|>user\nI disliked:\nScream\nMovies:\nUp (A)\n"
    # the paper's template ignores the other side
    assert prompts.build("pos", ["Alien"], ["Up"], ["Scream"]).text == prompts.build("pos", ["Alien"], ["Up"]).text
    assert "N/A" in prompts.content_free("pos", 2, template="letters-v6").prefix.split("I disliked:")[1]
    with pytest.raises(ValueError, match="unknown prompt template"):
        prompts.build("pos", ["Alien"], ["Up"], template="letters-v1")


def test_compact_template_says_the_same_in_fewer_tokens(smol_tokenizer, toy_catalog):  # noqa: F811
    """letters-v7: letters-v5's facts (title, two genres, the candidates' mean rating), in ~20% fewer tokens."""
    alien = Movie(2, "Alien", 1979, ("Horror", "Sci-Fi"), rating=4.06)
    noir = Movie(4, "Laura", 1944, ("Film-Noir", "Mystery"))
    assert prompts.texts([alien, noir], candidates=True, template="letters-v7") == ["Alien: horror scifi 4.1",
                                                                                    "Laura: noir mystery"]
    assert prompts.texts([alien], template="letters-v7") == ["Alien: horror scifi"]
    assert prompts.movie_text(Movie(5, "Untagged", None, ()), compact=True) == "Untagged"
    compact = prompts.build("neg", ["Scream"], ["Up"], template="letters-v7")
    assert compact.prefix == prompts.PREFIX
    assert compact.suffix == ("I disliked:\nScream\nMovies:\nUp (A)\n"
                              "Which will I dislike most?<|im_end|>\n<|im_start|>assistant\n(")
    # a real-sized prompt: the same movies, shown both ways
    movies = list(toy_catalog.with_ratings({m.item_id: 3.0 + m.item_id / 100 for m in toy_catalog}))
    sizes = {}
    for template in ("letters-v5", "letters-v7"):
        built = prompts.build("pos", prompts.texts(movies[:10], template=template),
                              prompts.texts(movies[5:25], candidates=True, template=template), template=template)
        sizes[template] = len(smol_tokenizer(built.text, add_special_tokens=False)["input_ids"])
    assert sizes["letters-v7"] < 0.85 * sizes["letters-v5"], sizes
    with pytest.raises(ValueError, match="unknown prompt template"):
        prompts.texts([alien], template="letters-v0")


def test_letters_v8_is_the_compact_prompt_with_bracketed_genre_tags(smol_tokenizer):  # noqa: F811
    """letters-v8: letters-v7's question and bare number, letters-v5's genre tags (the session-15 experiment)."""
    alien = Movie(2, "Alien", 1979, ("Horror", "Sci-Fi"), rating=4.06)
    assert prompts.texts([alien], candidates=True, template="letters-v8") == ["Alien [Horror, Sci-Fi] 4.1"]
    assert prompts.texts([alien], template="letters-v8") == ["Alien [Horror, Sci-Fi]"]
    assert prompts.movie_text(alien, rating=True, compact=True, genre_words=False) == "Alien [Horror, Sci-Fi] 4.1"
    built = {t: prompts.build("neg", prompts.texts([alien], template=t), prompts.texts([alien], candidates=True, template=t),
                              template=t) for t in ("letters-v5", "letters-v7", "letters-v8")}
    assert built["letters-v8"].suffix == ("I disliked:\nAlien [Horror, Sci-Fi]\nMovies:\nAlien [Horror, Sci-Fi] 4.1 (A)\n"
                                          "Which will I dislike most?<|im_end|>\n<|im_start|>assistant\n(")
    n = {t: len(smol_tokenizer(b.text, add_special_tokens=False)["input_ids"]) for t, b in built.items()}
    assert n["letters-v7"] < n["letters-v8"] < n["letters-v5"], n


def test_letters_v9_is_one_block_for_both_tasks_written_as_letters_v8(smol_tokenizer, toy_catalog):  # noqa: F811
    """letters-v9: letters-v6's shared block (likes, dislikes, candidates; only the question differs) in letters-v8's
    movie format and question, so a pair reads fewer tokens than letters-v6 and than the shipped v7 + v5 prompts."""
    alien = Movie(2, "Alien", 1979, ("Horror", "Sci-Fi"), rating=4.06)
    scream = Movie(3, "Scream", 1996, ("Horror",), rating=3.2)
    up = Movie(5, "Up", 2009, ("Animation", "Comedy"), rating=3.9)
    t = "letters-v9"
    pos = prompts.build("pos", prompts.texts([alien], template=t), prompts.texts([up], candidates=True, template=t),
                        prompts.texts([scream], template=t), t)
    neg = prompts.build("neg", prompts.texts([scream], template=t), prompts.texts([up], candidates=True, template=t),
                        prompts.texts([alien], template=t), t)
    assert pos.prefix == neg.prefix == ("<|im_start|>user\nI liked:\nAlien [Horror, Sci-Fi]\nI disliked:\nScream [Horror]\n"
                                        "Movies:\nUp [Animation, Comedy] 3.9 (A)\n")
    assert pos.suffix == "Which will I like most?<|im_end|>\n<|im_start|>assistant\n("
    assert neg.suffix == "Which will I dislike most?<|im_end|>\n<|im_start|>assistant\n("
    # a real-sized pair: 10 likes, 5 dislikes, 20 candidates; tokens the base model reads for both tasks
    movies = list(toy_catalog.with_ratings({m.item_id: 3.0 + m.item_id / 100 for m in toy_catalog}))
    likes, dislikes, shown = movies[:10], movies[10:15], movies[5:25]

    def tokens(task, template):
        history, other = (likes, dislikes) if task == "pos" else (dislikes, likes)
        built = prompts.build(task, prompts.texts(history, template=template),
                              prompts.texts(shown, candidates=True, template=template),
                              prompts.texts(other, template=template), template)
        return [len(smol_tokenizer(part, add_special_tokens=False)["input_ids"]) for part in (built.prefix, built.suffix)]

    def read_once(template):  # the shared block once, then each question
        (block, q_pos), (_, q_neg) = tokens("pos", template), tokens("neg", template)
        return block + q_pos + q_neg

    shipped = sum(tokens("pos", "letters-v11")) + sum(tokens("neg", "letters-v5"))
    assert read_once(t) < read_once("letters-v6") and read_once(t) < 0.7 * shipped, (read_once(t), shipped)


@pytest.mark.parametrize(("rating", "word"), [(1.0, "awful"), (2.99, "awful"), (3.0, "poor"), (3.29, "poor"), (3.3, "mixed"),
                                              (3.59, "mixed"), (3.6, "good"), (3.89, "good"), (3.9, "great"), (5.0, "great")])
def test_rating_words_cut_the_scale_at_their_bounds(rating, word):
    assert prompts.rating_word(rating) == word


def test_letters_v10_is_letters_v5_with_the_rating_as_one_word(smol_tokenizer):  # noqa: F811
    """letters-v10: letters-v5 word for word, except that a candidate's mean rating is one word, "rated great"."""
    alien = Movie(2, "Alien", 1979, ("Horror", "Sci-Fi"), rating=4.06)
    scream = Movie(3, "Scream", 1996, ("Horror",), rating=2.5)
    t = "letters-v10"
    assert prompts.texts([alien, scream], candidates=True, template=t) == ["Alien [Horror, Sci-Fi] rated great",
                                                                          "Scream [Horror] rated awful"]
    assert prompts.texts([alien], template=t) == ["Alien [Horror, Sci-Fi]"]  # the history shows no rating
    built = {v: prompts.build("neg", prompts.texts([scream], template=v),
                              prompts.texts([alien, scream], candidates=True, template=v), template=v)
             for v in ("letters-v5", "letters-v10")}
    assert built[t].prefix == built["letters-v5"].prefix
    assert built[t].suffix == built["letters-v5"].suffix.replace("rated 4.1", "rated great").replace("rated 2.5", "rated awful")
    # each word is one token after " rated", where the number takes at least three ("4", ".", "1")
    for _, word in prompts.RATING_WORDS:
        assert len(smol_tokenizer(f" rated {word}", add_special_tokens=False)["input_ids"]) == 2, word
    n = {v: len(smol_tokenizer(b.text, add_special_tokens=False)["input_ids"]) for v, b in built.items()}
    assert n[t] <= n["letters-v5"] - 2 * 2, n


def test_letters_v11_is_letters_v7_with_the_rating_as_one_word():
    """letters-v11: letters-v7's compact lines and question, the rating as letters-v10 shows it."""
    alien = Movie(2, "Alien", 1979, ("Horror", "Sci-Fi"), rating=4.06)
    assert prompts.texts([alien], candidates=True, template="letters-v11") == ["Alien: horror scifi rated great"]
    built = {v: prompts.build("pos", prompts.texts([alien], template=v), prompts.texts([alien], candidates=True, template=v),
                              template=v) for v in ("letters-v7", "letters-v11")}
    assert built["letters-v11"].text == built["letters-v7"].text.replace("scifi 4.1 (A)", "scifi rated great (A)")
