"""Instruction templates for the two preference tasks (the paper's Fig. 5 positive, Fig. 6 negative).

Prompts are data: the constants below plus small pure functions that fill them in. Every prompt is
two strings, tokenised separately (never jointly, so the token boundary is the same in training and
at inference):

- ``prefix``: what the two tasks' prompts share: ``PREFIX``, the opening of the user turn (letters-v5),
  or everything before the question (letters-v6, below);
- ``suffix``: the rest: (v5) the person's liked (or disliked) movies, THEN the lettered candidates; the
  question; and an assistant turn that opens with "(" so that the next token is the answer letter.

History first, candidates after it, each candidate's letter after its title ("Alien (C)"): every
candidate's letter token has then read both the person's movies and its own title (attention is
causal), so "does this movie fit what they liked?" can be computed AT the letter, and the answer
position only has to look for the best letter. The first templates put the shared candidate list
first (letters-v1 "(C) Alien", v2 "Alien (C)") so that one base-model pass over it served both
adapters; no adapter trained on them beat the uniform guess, and on a probe where the liked list
CONTAINS the right answer, 6-layer adapters stayed at chance with v2 and reached 93% with this order
in the same 60 steps (docs/BENCHMARKS.md). In letters-v5 each adapter therefore reads its whole prompt;
letters-v6 keeps the history first and shares it instead (below).

The chat markup (ChatML, as SmolLM2 uses) is written out here rather than taken from the tokenizer's
chat template, because that template injects a default system prompt ("You are a helpful AI
assistant named SmolLM...") that costs ~20 tokens per prompt and says nothing useful.

Movies are shown by title and their two most specific genres, without the year: a year costs 6
tokens in SmolLM2's vocabulary (" (", four digits, ")"; digits are single tokens). Candidates also
show the catalog's mean rating (letters-v5, ~5 tokens each): a real prompt (10 liked movies, 20
candidates) is ~560 tokens, and the ranking pass is compute-bound, so every token costs latency
(docs/BENCHMARKS.md §2).

The templates (``TEMPLATES``), chosen per adapter pair (``template``; adapters record theirs):

- letters-v5 (the paper's two prompts): "pos" shows the likes, "neg" the dislikes, each followed by
  the candidates, so the two prompts differ from their first history line on and each is a full pass.
- letters-v6 (shared): ONE prompt shows the likes, then the dislikes, then the candidates, and only the
  question differs ("like most" / "dislike most"). Every candidate's letter has read both histories,
  as before, and the whole block before the question is the same for both tasks, so for adapters
  that act at the answer position only (llm.py) the base model reads it ONCE for both: ~650 tokens
  instead of ~1050 for the two v5 prompts (docs/BENCHMARKS.md §2).
- letters-v7 (compact): letters-v5's two prompts with the same facts in ~20% fewer tokens: "Alien: horror
  scifi 4.1 (C)" for "Alien [Horror, Sci-Fi] rated 4.1 (C)" (lower-case genre words after a space are
  single tokens) and a shorter question, "Which will I like most?" (~840 tokens for the pair instead of
  ~1050, so the ranking pass costs ~20% less; docs/BENCHMARKS.md §2).
- letters-v8 (an experiment): letters-v7 with letters-v5's genre tags, "Alien [Horror, Sci-Fi] 4.1 (C)": whether
  the v7 negative adapters' weakness comes from the lower-case genre word (docs/BENCHMARKS.md §2, "Session 15").
- letters-v9 (shared and compact): letters-v6's one block for both tasks (likes, dislikes, candidates; only the
  question differs) written as letters-v8 writes movies, "Alien [Horror, Sci-Fi] 4.1 (C)", with its short question:
  the lead of session 15 (the bracketed tags for both adapters, the tokens saved elsewhere), ~620 tokens read once
  for both adapters instead of ~940 for the session-15 pair; no negative adapter trained on it reliably pushed a disliked genre
  down in the clear case, so none ships (docs/BENCHMARKS.md §2, "Session 22").
- letters-v10 (an experiment): letters-v5 with each candidate's mean rating as one of five words ("Alien [Horror,
  Sci-Fi] rated great (C)", ``RATING_WORDS``) instead of its digits: a linear probe finds the rating in the letter
  token's hidden state, which the answer position reads, at R² ~0.8 with a word against ~0.5 with digits (one
  token that means "bad" or "good" instead of three digit tokens). Negative adapters trained on it order new people's
  ratings better than letters-v5 ones trained the same way, but the best removed no disliked movie from simulated
  sessions, where the shipped letters-v5 one removes 10%, so none ships (docs/BENCHMARKS.md §2, "Session 23").
- letters-v11 (the shipped positive adapter's, since session 24): letters-v7 with the rating as a word the same way,
  "Alien: horror scifi rated great (C)" (" rated" kept: after genre words a bare "great" would read as one), ~2
  tokens per candidate instead of ~3. The positive adapter trained on it reads new people's ratings better than the
  letters-v7 one, passes the clear case by wider margins, loses nothing in Table 2 and finds more liked movies in
  simulated sessions (docs/BENCHMARKS.md §2, "Sessions 23 and 24").

Add a new version whenever any string here changes: adapters record the version they were trained
with, and the ranker builds that version's prompts (it refuses one it does not know).

Not for: tokenisation, models or scoring (llm.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from recsys.catalog import Movie

TEMPLATES = ("letters-v5", "letters-v6", "letters-v7", "letters-v8", "letters-v9", "letters-v10", "letters-v11")
SHARED_TEMPLATES = frozenset({"letters-v6", "letters-v9"})  # one block before the question for both tasks
COMPACT_TEMPLATES = frozenset({"letters-v7", "letters-v8", "letters-v9", "letters-v11"})  # the short question; a bare number unless a word: see movie_text
GENRE_WORD_TEMPLATES = frozenset({"letters-v7", "letters-v11"})  # genres as lower-case words, "horror scifi", not "[Horror, Sci-Fi]"
RATING_WORD_TEMPLATES = frozenset({"letters-v10", "letters-v11"})  # the candidates' mean rating as a word, "rated great": see movie_text
TEMPLATE_VERSION = "letters-v5"  # what a prompt is built with unless told: the default for new adapters and zero-shot

Task = Literal["pos", "neg"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SHOW_YEAR = False
SHOW_GENRES = 2  # each movie's most specific genres, "Alien [Horror, Sci-Fi]": see movie_text
SHOW_RATING = True  # candidates carry their catalog mean rating, "Alien [Horror, Sci-Fi] rated 4.1"
# MovieLens genres, most specific (rarest) first: "Drama" or "Comedy" only when a movie has nothing rarer
GENRE_SPECIFICITY = (
    "IMAX", "Film-Noir", "Western", "Musical", "Documentary", "War", "Animation", "Children", "Mystery",
    "Fantasy", "Horror", "Sci-Fi", "Crime", "Adventure", "Romance", "Action", "Thriller", "Comedy", "Drama",
)

USER_TURN = "<|im_start|>user\n"
END_TURN = "<|im_end|>\n"
ASSISTANT_TURN = "<|im_start|>assistant\n"
ANSWER_OPEN = "("  # the answer letter is the next token: "(" + "A" -> "(A"

CANDIDATES_HEADER = "Movies:\n"
CANDIDATE_LINE = "{movie} ({letter})\n"  # the letter AFTER the title: see the module docstring
PREFIX = USER_TURN  # what every prompt starts with
HISTORY_HEADER: dict[Task, str] = {"pos": "I liked:\n", "neg": "I disliked:\n"}
HISTORY_LINE = "{movie}\n"
# (upper bound, word): each a single SmolLM2 token after a space; bounds cut both datasets' 5-core catalogs into
# five ranges of 6-35% (ml-latest-small) and 11-26% (ml-100k) of their movies
RATING_WORDS = ((3.0, "awful"), (3.3, "poor"), (3.6, "mixed"), (3.9, "good"), (float("inf"), "great"))
QUESTION: dict[Task, str] = {
    "pos": "Which movie above will I like most? Answer with its letter.",
    "neg": "Which movie above will I dislike most? Answer with its letter.",
}
COMPACT_QUESTION: dict[Task, str] = {"pos": "Which will I like most?", "neg": "Which will I dislike most?"}
# compact genre words: lower case, which SmolLM2 spells in one token after a space for 15 of the 19 genres (" horror";
# "Horror" takes two), and shorter words for two of the rest (" scifi" 2 tokens for " sci-fi" 3, " noir" 2 for 4)
COMPACT_GENRE = {"Film-Noir": "noir", "Sci-Fi": "scifi"}
LIST_QUESTION: dict[Task, str] = {
    "pos": "List the {n} movies above I will like most, best first, one title per line.",
    "neg": "List the {n} movies above I will dislike most, worst first, one title per line.",
}
_ALTERNATIVE = re.compile(r"(\s*\([^()]*\))+$")  # "(a.k.a. MIB)", "(Nuovo cinema Paradiso)"
CONTENT_FREE_MOVIE = "N/A"  # the filler for calibration prompts (Zhao et al., 2021)


@dataclass(frozen=True)
class Prompt:
    """One scoring prompt, in two parts tokenised separately: ``prefix`` (what every task's prompt shares:
    the user turn's opening in letters-v5, everything before the question in letters-v6) + ``suffix``."""

    prefix: str
    suffix: str

    @property
    def text(self) -> str:
        return self.prefix + self.suffix


def movie_text(movie: Movie, show_year: bool = SHOW_YEAR, genres: int = SHOW_GENRES, rating: bool = False,
               compact: bool = False, genre_words: bool | None = None, rating_words: bool = False) -> str:
    """How a movie appears in a prompt: 'Alien [Horror, Sci-Fi]' (+ ' (1979)' with ``show_year``).

    Trailing alternative titles are dropped: 'Men in Black (a.k.a. MIB)' -> 'Men in Black'. Genres are
    real catalog data, the most specific ``genres`` of them: a 135M model knows few films by title, and
    the tags let it match a candidate to the person's movies (letters-v4; v3 without them never left
    the uniform guess on the real task, docs/BENCHMARKS.md).

    With ``rating`` (candidates, letters-v5) the catalog's mean rating follows: '... rated 4.1'. On the
    training data it alone puts the movie a person will dislike first 3.3x as often as chance (0.165 vs
    0.05, scripts/probe_signal.py), while titles and genres carry little a 135M model can use
    (docs/BENCHMARKS.md); movies without a rating show none.

    ``compact`` (letters-v7) says the same in fewer tokens: 'Alien: horror scifi 4.1'. Lower-case genre
    words after a space are single tokens where '[Horror, Sci-Fi]' spends 7, and the number needs no
    ' rated': a candidate line costs ~14 tokens instead of ~18 (tests/test_prompts.py). ``genre_words`` (default:
    ``compact``) picks the genre format alone: letters-v8 is compact with the bracketed tags, 'Alien [Horror, Sci-Fi] 4.1'.
    ``rating_words`` (letters-v10, v11) prints the rating as a word after ' rated', compact or not: '... rated great'
    (``rating_word``).
    """
    title = _ALTERNATIVE.sub("", movie.title) or movie.title
    text = f"{title} ({movie.year})" if show_year and movie.year else title
    tags = shown_genres(movie, genres)
    words = compact if genre_words is None else genre_words
    if words:
        text = f"{text}: {' '.join(COMPACT_GENRE.get(g, g.lower()) for g in tags)}" if tags else text
    else:
        text = f"{text} [{', '.join(tags)}]" if tags else text
    if not rating or movie.rating is None:
        return text
    if rating_words:
        return f"{text} rated {rating_word(movie.rating)}"
    return f"{text}{' ' if compact else ' rated '}{movie.rating:.1f}"


def rating_word(rating: float) -> str:
    """The word for a mean rating: 'awful' below 3.0, then 'poor', 'mixed', 'good', 'great' from 3.9 (``RATING_WORDS``)."""
    return next(word for top, word in RATING_WORDS if rating < top)


def shown_genres(movie: Movie, genres: int = SHOW_GENRES) -> list[str]:
    """The genre tags a prompt shows for ``movie``: its ``genres`` most specific ones."""
    rank = {g: i for i, g in enumerate(GENRE_SPECIFICITY)}
    return sorted((g for g in movie.genres if g in rank), key=rank.__getitem__)[:genres]


def texts(movies: Sequence[Movie], show_year: bool = SHOW_YEAR, candidates: bool = False,
          template: str = TEMPLATE_VERSION) -> list[str]:
    """``movie_text`` of each movie as ``template`` shows it; ``candidates`` lines also carry the mean
    rating (``SHOW_RATING``)."""
    compact = check_template(template) in COMPACT_TEMPLATES
    return [movie_text(m, show_year, rating=candidates and SHOW_RATING, compact=compact,
                       genre_words=template in GENRE_WORD_TEMPLATES, rating_words=template in RATING_WORD_TEMPLATES)
            for m in movies]


def letters(n: int) -> str:
    """The first ``n`` choice letters; at most 26 candidates can be lettered."""
    if not 1 <= n <= len(LETTERS):
        raise ValueError(f"can letter 1 to {len(LETTERS)} candidates, got {n}")
    return LETTERS[:n]


def candidate_block(candidates: Sequence[str]) -> str:
    """'Movies:' and one lettered line per candidate, in prompt order."""
    lines = (CANDIDATE_LINE.format(letter=c, movie=m) for c, m in zip(letters(len(candidates)), candidates, strict=True))
    return CANDIDATES_HEADER + "".join(lines)


def history_block(task: Task, history: Sequence[str]) -> str:
    """'I liked:' (or 'I disliked:') and one line per movie, newest first."""
    return HISTORY_HEADER[task] + "".join(HISTORY_LINE.format(movie=m) for m in history)


def task_suffix(task: Task, history: Sequence[str], candidates: Sequence[str], template: str = TEMPLATE_VERSION) -> str:
    """History, candidates, question, end of the user turn, and an assistant turn that opens with '('."""
    return history_block(task, history) + candidate_block(candidates) + question(task, template)


def question(task: Task, template: str = TEMPLATE_VERSION) -> str:
    """The question, the end of the user turn, and an assistant turn opened with '(' (next token: the letter)."""
    asked = COMPACT_QUESTION if template in COMPACT_TEMPLATES else QUESTION
    return asked[task] + END_TURN + ASSISTANT_TURN + ANSWER_OPEN


def check_template(template: str) -> str:
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; this code builds {', '.join(TEMPLATES)}")
    return template


def build(task: Task, history: Sequence[str], candidates: Sequence[str], other: Sequence[str] = (),
          template: str = TEMPLATE_VERSION) -> Prompt:
    """The scoring prompt for one task: pick the candidate the person will most like (or dislike).

    ``history``: the task's own movies (the likes for "pos", the dislikes for "neg"); ``other``: the other
    side's, shown only by a shared template (letters-v6), where both tasks' prompts differ only in the question.
    """
    if check_template(template) not in SHARED_TEMPLATES:
        return Prompt(PREFIX, task_suffix(task, history, candidates, template))
    likes, dislikes = (history, other) if task == "pos" else (other, history)
    blocks = [history_block(t, h) for t, h in (("pos", likes), ("neg", dislikes)) if h]
    return Prompt(PREFIX + "".join(blocks) + candidate_block(candidates), question(task, template))


def content_free(task: Task, n_candidates: int, n_history: int = 3, template: str = TEMPLATE_VERSION) -> Prompt:
    """A prompt with every movie replaced by 'N/A': what the adapter answers when nothing informs it."""
    filler = [CONTENT_FREE_MOVIE] * n_history
    other = filler if template in SHARED_TEMPLATES else ()
    return build(task, filler, [CONTENT_FREE_MOVIE] * n_candidates, other, template)


def list_prompt(task: Task, history: Sequence[str], candidates: Sequence[str], n: int = 10) -> str:
    """The seed paper's way, for the latency benchmark only: ask for a ranked list of ``n`` titles."""
    question = LIST_QUESTION[task].format(n=n)
    return PREFIX + history_block(task, history) + candidate_block(candidates) + question + END_TURN + ASSISTANT_TURN
