"""One chat message -> a ``Turn``: what the person asked for, liked, disliked, constrained or asked about.

Rules + the catalog's title resolver, no language model: intents are "request" ("a funny space movie",
"something like Alien but funnier"), "critique" ("newer", "no horror", "from the 80s", "more like #3",
"I hate musicals"), "feedback" ("loved Heat", "#2 was great", "not #4"), "question" ("why #2?", "what is my
profile?"), "smalltalk" ("hi", "thanks") and "empty". ``Constraints`` is the hard filter a critique adds.

Hostile text is safe by construction: parsing reads at most ``MAX_CHARS`` cleaned characters (the Turn says
when it cut), markup is stripped, and free text only ever becomes a movie through ``TitleResolver`` against
the catalog; a match by embedding similarity alone is returned as "ambiguous", to be confirmed.

Not for: ranking, replies (reply.py) or remembering earlier turns (the caller merges constraints).
"""

from __future__ import annotations

import html
import re
import statistics
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

from dialogue.titles import Resolution, TitleResolver, normalize
from recsys.catalog import Movie

MAX_CHARS = 2000  # of cleaned text that parsing reads
MAX_LOOKUPS = 8  # fuzzy/embedding title lookups per message (exact lookups are dict-cheap)
MAX_TITLE_WORDS = 10

Intent = Literal["request", "critique", "feedback", "question", "smalltalk", "empty"]
Role = Literal["like", "dislike", "similar", "about"]


@dataclass(frozen=True)
class Constraints:
    """Hard filters on candidates. A movie needs every included genre ('a funny space movie' = Comedy and
    Sci-Fi) and none of the excluded ones."""

    year_min: int | None = None
    year_max: int | None = None
    include_genres: frozenset[str] = frozenset()
    exclude_genres: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        return self == Constraints()

    def merge(self, other: Constraints) -> Constraints:
        """``other`` (the newer message) wins: its bounds replace ours, its included genres replace ours
        ('more comedy' after 'more horror'), and a genre it names flips ours."""
        year_min = other.year_min if other.year_min is not None else self.year_min
        year_max = other.year_max if other.year_max is not None else self.year_max
        if year_min is not None and year_max is not None and year_min > year_max:
            year_min, year_max = other.year_min, other.year_max  # contradicts the old bound: drop it
        return Constraints(
            year_min,
            year_max,
            other.include_genres or self.include_genres - other.exclude_genres,
            (self.exclude_genres - other.include_genres) | other.exclude_genres,
        )

    def allows(self, movie: Movie) -> bool:
        """A movie with no year fails any year bound: the filter keeps only what it can check."""
        if self.year_min is not None or self.year_max is not None:
            if movie.year is None:
                return False
            if self.year_min is not None and movie.year < self.year_min:
                return False
            if self.year_max is not None and movie.year > self.year_max:
                return False
        genres = set(movie.genres)
        if genres & self.exclude_genres:
            return False
        return self.include_genres <= genres

    def describe(self) -> str:
        """'Comedy and Sci-Fi; no Horror; 1980-1989' (empty string when unconstrained)."""
        parts = []
        if self.include_genres:
            parts.append(" and ".join(sorted(self.include_genres)))
        if self.exclude_genres:
            parts.append("no " + ", ".join(sorted(self.exclude_genres)))
        if self.year_min is not None and self.year_max is not None:
            parts.append(f"{self.year_min}–{self.year_max}")
        elif self.year_min is not None:
            parts.append(f"from {self.year_min}")
        elif self.year_max is not None:
            parts.append(f"up to {self.year_max}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "year_min": self.year_min,
            "year_max": self.year_max,
            "include_genres": sorted(self.include_genres),
            "exclude_genres": sorted(self.exclude_genres),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Constraints:
        return cls(
            data.get("year_min"),
            data.get("year_max"),
            frozenset(data.get("include_genres", ())),
            frozenset(data.get("exclude_genres", ())),
        )


def relative_constraint(direction: str | None, shown_years: Iterable[int | None]) -> Constraints:
    """'newer' -> after the median year of the list on screen; 'older' -> before it."""
    years = [y for y in shown_years if y is not None]
    if direction not in ("newer", "older") or not years:
        return Constraints()
    median = statistics.median(years)
    if direction == "newer":
        return Constraints(year_min=int(median) + 1)
    return Constraints(year_max=-int(-median // 1) - 1)  # ceil(median) - 1


@dataclass(frozen=True)
class Turn:
    """What one message says. Resolutions keep unresolved titles so the app can ask back.

    ``intent`` is the main one, but a message can carry more ("loved Heat, no horror" is feedback with a
    constraint): apply every non-empty part. Cards are 1-based positions in the list on screen. ``constraints`` is this message's delta: the caller
    merges it onto the current ones (critique) or starts afresh (request). ``topic``: for questions
    "why" | "profile" | "help"; for small talk "greeting" | "thanks" | "bye" | "ack".
    """

    intent: Intent
    text: str = ""
    truncated: bool = False
    liked: tuple[Resolution, ...] = ()
    disliked: tuple[Resolution, ...] = ()
    seeds: tuple[Resolution, ...] = ()
    about: tuple[Resolution, ...] = ()
    liked_cards: tuple[int, ...] = ()
    disliked_cards: tuple[int, ...] = ()
    more_like: tuple[int, ...] = ()
    about_cards: tuple[int, ...] = ()
    constraints: Constraints = field(default_factory=Constraints)
    relative_year: Literal["newer", "older"] | None = None
    topic: str = ""

    @property
    def liked_ids(self) -> tuple[int, ...]:
        return _found_ids(self.liked)

    @property
    def disliked_ids(self) -> tuple[int, ...]:
        return _found_ids(self.disliked)

    @property
    def seed_ids(self) -> tuple[int, ...]:
        return _found_ids(self.seeds)

    @property
    def unresolved(self) -> tuple[Resolution, ...]:
        """Ambiguous and unknown titles, to ask back about."""
        every = self.liked + self.disliked + self.seeds + self.about
        return tuple(r for r in every if r.status != "found")


def _found_ids(resolutions: Iterable[Resolution]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(r.movies[0].item_id for r in resolutions if r.status == "found"))


# ---------------------------------------------------------------- cleaning

_TAG = re.compile(r"<[^<>]{0,500}>")
_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Cn"}  # controls, bidi overrides, zero-widths, private use


def clean_text(text: str) -> tuple[str, bool]:
    """Markup, control and bidi-override characters out, whitespace collapsed, cut at ``MAX_CHARS``.

    Returns (clean text, whether it was cut). Right-to-left letters and emoji stay.
    """
    text = (text or "").strip()
    head = text[: 4 * MAX_CHARS]
    head = _TAG.sub(" ", html.unescape(_TAG.sub(" ", head)))
    head = unicodedata.normalize("NFKC", head)
    head = "".join(" " if unicodedata.category(c) in _INVISIBLE else c for c in head)
    head = " ".join(head.split())
    truncated = len(head) > MAX_CHARS or len(text) > 4 * MAX_CHARS
    if truncated:  # cut at a word boundary: half a title would fuzzy-match something
        head = head[: MAX_CHARS + 1].rsplit(" ", 1)[0]
    return head[:MAX_CHARS].strip(), truncated


# ---------------------------------------------------------------- vocabulary

_GENRE_SYNONYMS: dict[str, str] = {  # catalog genre -> '|'-separated words and phrases that mean it
    "Sci-Fi": "sci-fi|scifi|science fiction|space|futuristic",
    "Comedy": "comedy|comedies|funny|funnier|hilarious|comedic|humor|humour|laughs|lighthearted|light-hearted",
    "Horror": "horror|scary|scarier|creepy|spooky|frightening|terrifying|slasher",
    "Romance": "romance|romances|romantic|love story",
    "Animation": "animation|animated|cartoon|cartoons|anime",
    "Children": "children|childrens|kids|kid|family",
    "Action": "action|action-packed",
    "Adventure": "adventure|adventures",
    "Crime": "crime|gangster|gangsters|mafia|mob|heist|heists",
    "Mystery": "mystery|mysteries|whodunit|detective",
    "Thriller": "thriller|thrillers|suspense|suspenseful|tense",
    "Drama": "drama|dramas|dramatic",
    "Fantasy": "fantasy|magic|magical",
    "War": "war",
    "Western": "western|westerns|cowboy|cowboys",
    "Musical": "musical|musicals",
    "Documentary": "documentary|documentaries",
    "Film-Noir": "noir|film noir|film-noir",
    "IMAX": "imax",
}
_GENRE_WORDS: dict[str, tuple[str, ...]] = {
    phrase: (genre,) for genre, words in _GENRE_SYNONYMS.items() for phrase in words.split("|")
} | {"rom-com": ("Romance", "Comedy"), "romcom": ("Romance", "Comedy")}
_NEGATORS = frozenset(
    "no not non without less fewer nothing never avoid skip except hate hated dislike disliked don't dont "
    "didn't didnt too stop enough instead none nor neither thumbs-down".split()
)
_FILLER = frozenset(
    "a an the some something anything one ones it its it's that this these those them they i me my you your "
    "we us he she him her movie movies film films flick flicks stuff kind sort of type genre really very more "
    "less much so too just please pls good great bad better worse lot lots all any other others else same way "
    "there here what which who how why when where yes no not ok okay new newer older old recent classic "
    "classics again also maybe though picks pick list card number above below first last to for with".split()
)
_STOP = frozenset(
    "but and or with without except though although because since please pls so that which who if than then "
    "too also more less not no only just tonight today for from in on at by before after was is were are "
    "movie movies film films one ones stuff a an the to loved liked love like hate hated disliked enjoyed why "
    "explain thumbs-up thumbs-down".split()
)
_COMMON = frozenset(  # single words that are also titles ('It', 'Up', 'Heat'): need a cue and a capital
    "go up it her us big seven speed love yes help crash rush wanted taken next now then home run hi hello "
    "why who what when where how best cars tag boys girls man men she he him one two three ten nice fun "
    "friends time life night day today tonight sorry thanks enough nothing everything alone always never "
    "maybe heat scream watch recommend show please ok okay great sure something anything space war last "
    "later again more still friday hey cool action family loved liked hated disliked enjoyed adored like "
    "love hate dislike enjoy explain good bad boring awful terrible perfect amazing awesome brilliant "
    "excellent fantastic recent newer older classic".split()
)
_ARTICLE_WORDS = frozenset(("a", "an", "the"))
_CONNECTORS = frozenset(("and", "or", "&", "plus", "also", "as", "well"))
_REQUEST_WORDS = frozenset(
    "movie movies film films flick flicks something anything recommend recommendation recommendations "
    "suggest suggestion suggestions watch".split()
)
_SMALLTALK: dict[str, str] = {
    **dict.fromkeys("hi hello hey heya hiya yo howdy greetings morning".split(), "greeting"),
    **dict.fromkeys("thanks thank thx ty cheers appreciated appreciate".split(), "thanks"),
    **dict.fromkeys("bye goodbye cya later night goodnight".split(), "bye"),
    **dict.fromkeys(
        "ok okay cool nice great awesome yes yeah yep no nope sure lol haha hmm you there all so much a lot "
        "very good evening again afternoon thumbs-up thumbs-down alright fine wow oh ah see ya".split(),
        "ack",
    ),
}
_TOPIC_ORDER = ("thanks", "bye", "greeting", "ack")
_QUOTES = "\"'“”‘’«»"
_CONNECTOR_GAP = re.compile(r"[\s\"'“”‘’«»]*,?\s*(?:and|or|&|plus)?[\s\"'“”‘’«»]*", re.IGNORECASE)
_ANYTHING_BUT = re.compile(r"\b(anything|everything|all)\s+but\b", re.IGNORECASE)
_EMOJI_WORDS = {"👍": " thumbs-up ", "👎": " thumbs-down ", "❤️": " thumbs-up ", "❤": " thumbs-up "}


def _genre_key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower()).removesuffix("s")


@lru_cache(maxsize=16)
def _genre_lexicon(genres: frozenset[str]) -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    """Regex over synonyms + the catalog's own genre names, and phrase -> catalog genre names."""
    by_key = {_genre_key(g): g for g in genres}
    table: dict[str, tuple[str, ...]] = {}
    for phrase, canon in _GENRE_WORDS.items():
        names = tuple(by_key[_genre_key(c)] for c in canon if _genre_key(c) in by_key)
        if names:
            table[_phrase_key(phrase)] = names
    for g in genres:
        if _genre_key(g) and g.isprintable() and not g.startswith("("):
            table.setdefault(_phrase_key(g), (g,))
    alts = sorted(table, key=len, reverse=True)
    pattern = (
        r"\b(?:" + "|".join(re.escape(a).replace(r"\ ", r"[\s-]+") for a in alts) + r")\b"
        if alts
        else r"(?!)"
    )
    return re.compile(pattern, re.IGNORECASE), table


def _phrase_key(phrase: str) -> str:
    return " ".join(re.sub(r"[-\s]+", " ", phrase.lower()).split())


# ---------------------------------------------------------------- patterns

_CUE = re.compile(
    r"(?P<about>\b(?:why(?:\s+(?:is|was|are|did\s+you\s+(?:pick|choose|recommend|suggest|show|include)|this|that))*"
    r"|explain|how\s+come|what\s+about|tell\s+me\s+(?:more\s+)?about)\b)"
    r"|(?P<dislike>\b(?:hated|disliked|hate|dislike|detest(?:ed)?|loathed?"
    r"|(?:didn'?t|did\s+not|don'?t|do\s+not|never)\s+(?:really\s+)?(?:like|liked|enjoy|enjoyed|love|loved)"
    r"|can'?t\s+stand|couldn'?t\s+stand|not\s+(?:a\s+)?(?:big\s+)?fan\s+of|sick\s+of|tired\s+of"
    r"|thumbs-down(?:\s+(?:for|to|on))?)\b)"
    r"|(?P<like>\b(?:loved|liked|enjoyed|adored|love|adore|enjoy|(?:big\s+)?fan\s+of"
    r"|(?:i|we)\s+(?:really\s+|do\s+|also\s+|totally\s+)?like|really\s+like|thumbs-up(?:\s+(?:for|to|on))?)\b)"
    r"|(?P<similar>\b(?:more\s+like|similar\s+to|like|such\s+as|in\s+the\s+vein\s+of|along\s+the\s+lines\s+of"
    r"|reminds?\s+me\s+of|same\s+as|as\s+good\s+as|more\s+of)\b)",
    re.IGNORECASE,
)
_POST = re.compile(
    r"^\s*(?:(?:was|is|were|looks|looked|seems|seemed|'s)\s+)?"
    r"(?:(?:so|really|very|pretty|just|absolutely|quite|truly|kinda|way|a\s+bit)\s+)*"
    r"(?:(?P<dislike>not\s+(?:good|great|for\s+me|my\s+thing)|bad|boring|awful|terrible|horrible|meh|dull"
    r"|overrated|disappointing|bland|stupid|the\s+worst|lame|sucked|sucks|thumbs-down|rubbish|garbage|too\s+\w+)"
    r"|(?P<like>great|good|amazing|awesome|brilliant|excellent|fantastic|perfect|fun|lovely|wonderful"
    r"|hilarious|incredible|superb|beautiful|outstanding|epic|a\s+masterpiece|the\s+best|my\s+favou?rite"
    r"|thumbs-up|rocks|rocked))\b",
    re.IGNORECASE,
)
_CARD_NEG = re.compile(r"\b(?:not|no|skip|drop|remove|hide|nope|ditch|lose)\s*$", re.IGNORECASE)
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_CARD = re.compile(
    r"#\s?(?P<n>\d{1,2})\b|\b(?:number|no\.|nr\.?|card|pick)\s*#?\s*(?P<m>\d{1,2})\b"
    r"|\b(?:the\s+)?(?P<o>" + "|".join(_ORDINALS) + r")\s+(?:one|movie|film|pick|card|suggestion)\b",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"[.;!?,\n]|\b(?:but|and|however|though|although)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.;!?\n](?:\s|$)")
_PROFILE_Q = re.compile(
    r"\b(?:my|the)\s+(?:profile|tastes?|preferences)\b|\bwhat\s+do\s+(?:you\s+know\s+about\s+me|i\s+like)"
    r"|\babout\s+me\b|\bwhat\s+(?:have|did)\s+i\s+(?:liked?|rated)",
    re.IGNORECASE,
)
_HELP_Q = re.compile(
    r"^\s*help\b|\bhow\s+(?:does\s+(?:this|it)\s+work|do\s+i\s+use)|\bwhat\s+can\s+you\s+do", re.I
)
_WHY = re.compile(
    r"^\W*(?:why|explain|how\s+come)\b", re.IGNORECASE
)  # 'I loved it, don't know why' is no question
_WORD = re.compile(r"\S+")

_DECADE_WORDS = {
    w: 1920 + 10 * k
    for k, w in enumerate("twenties thirties forties fifties sixties seventies eighties nineties".split())
}
_Y = r"(?:'?\d0s|(?:18|19|20)\d\d(?:'?s)?|" + "|".join(_DECADE_WORDS) + r")"
_YEAR_RANGE = re.compile(
    rf"\b(?:between\s+|from\s+)?(?:the\s+)?(?P<a>{_Y})\s*(?:-|–|to|and|until|through)\s*(?:the\s+)?(?P<b>{_Y})\b",
    re.IGNORECASE,
)
_YEAR_ONE = re.compile(
    r"(?:\b(?P<rel>before|pre|earlier\s+than|older\s+than|prior\s+to|until|till|up\s+to|through|after|post"
    r"|later\s+than|newer\s+than|since|from|in|of)[\s-]+)?(?:the\s+)?"
    rf"(?P<y>(?<![\w#]){_Y})(?!\w)(?P<tail>\s*\+|\s+or\s+(?:later|newer|after)|\s+and\s+(?:later|newer|up|after)"
    r"|\s+on(?:wards?)?\b|\s+or\s+(?:earlier|older|before))?",
    re.IGNORECASE,
)
_NEWER = re.compile(r"\b(?:newer|more\s+recent|recent|modern|latest|newest|less\s+old)\b", re.IGNORECASE)
_OLDER = re.compile(r"\b(?:older|classics?|oldies|vintage|old-school|less\s+recent)\b", re.IGNORECASE)


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Word:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Hit:
    role: Role | None
    resolution: Resolution
    start: int
    end: int
    mask_end: int  # end, or the end of the sentiment after it ('Heat| was hilarious|'): not a constraint


def parse(text: str, resolver: TitleResolver, genres: Collection[str]) -> Turn:
    """Read one message. Never raises on odd input; never invents a movie outside the catalog."""
    clean, truncated = clean_text(text)
    if not re.search(r"\w|[👍👎❤]", clean):
        return Turn("empty" if not clean else "smalltalk", clean, truncated, topic="" if not clean else "ack")
    work = _ANYTHING_BUT.sub(r"\1 except", clean)
    for emoji, word in _EMOJI_WORDS.items():
        work = work.replace(emoji, word)
    topic = _smalltalk_topic(work)
    if topic:
        return Turn("smalltalk", clean, truncated, topic=topic)
    cards = _cards(work)
    masked = _mask(work, [(s, e) for _, _, s, e in cards])
    hits = _exact_titles(masked, resolver)
    masked = _mask(masked, [(h.start, h.mask_end) for h in hits])
    hits = _propagate(
        work,
        sorted(hits + _fuzzy_titles(masked, resolver, [s for _, _, s, _ in cards]), key=lambda h: h.start),
    )
    masked = _mask(masked, [(h.start, h.mask_end) for h in hits])
    constraints = _genre_constraints(masked, frozenset(genres)).merge(_year_constraints(masked))
    return _assemble(clean, truncated, work, masked, cards, hits, constraints)


def _assemble(
    clean: str,
    truncated: bool,
    work: str,
    masked: str,
    cards: list[tuple[Role | None, int, int, int]],
    hits: list[_Hit],
    constraints: Constraints,
) -> Turn:
    hits = list({_hit_key(h): h for h in hits}.values())
    titles = {role: tuple(h.resolution for h in hits if h.role == role) for role in _ROLES}
    numbers = {role: tuple(dict.fromkeys(n for r, n, _, _ in cards if r == role)) for role in _ROLES}
    turn = Turn(
        "request",
        clean,
        truncated,
        liked=titles["like"],
        disliked=titles["dislike"],
        seeds=tuple(h.resolution for h in hits if h.role in ("similar", None)),
        about=titles["about"],
        liked_cards=numbers["like"],
        disliked_cards=numbers["dislike"],
        more_like=numbers["similar"],
        about_cards=numbers["about"],
        constraints=constraints,
        relative_year=_relative_year(masked),
        topic=_question_topic(work, bool(titles["about"] or numbers["about"])),
    )
    return replace(turn, intent=_intent(turn, _asks(masked)))


def _intent(turn: Turn, asks: bool) -> Intent:
    """The main intent; a Turn may carry more ('loved Heat, no horror' is feedback with a constraint)."""
    if turn.topic:
        return "question"
    if turn.liked or turn.disliked or turn.liked_cards or turn.disliked_cards:
        return "feedback"
    steers = not turn.constraints.is_empty or turn.relative_year is not None or bool(turn.more_like)
    return "critique" if steers and not turn.seeds and not asks else "request"


_ROLES: tuple[Role, ...] = ("like", "dislike", "similar", "about")


def _asks(text: str) -> bool:
    return any(w.strip(".,!?;:'\"").lower() in _REQUEST_WORDS for w in text.split())


def _smalltalk_topic(text: str) -> str:
    """The small-talk kind when every word is small talk ('hi there!', 'thanks a lot'), else ''."""
    words = [w.strip(".,!?;:'\"()~-").lower() for w in text.split()]
    words = [w for w in words if w]
    if not words or any(w not in _SMALLTALK for w in words):
        return ""
    kinds = {_SMALLTALK[w] for w in words}
    return next(k for k in _TOPIC_ORDER if k in kinds)


def _question_topic(text: str, has_target: bool) -> str:
    if _PROFILE_Q.search(text):
        return "profile"
    if _WHY.search(text) or has_target:
        return "why"
    if _HELP_Q.search(text):
        return "help"
    return ""


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _words(text: str, start: int = 0, end: int | None = None) -> list[_Word]:
    return [_Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text, start, end or len(text))]


def _context(text: str, start: int, end: int) -> tuple[str, str]:
    """The clause text just before and just after [start, end)."""
    left = max(
        (m.end() for m in _CLAUSE.finditer(text, max(0, start - 120), start)), default=max(0, start - 120)
    )
    right = next((m.start() for m in _CLAUSE.finditer(text, end, end + 120)), min(len(text), end + 120))
    return text[left:start], text[end:right]


def _role(before: str, after: str) -> Role | None:
    """Who a card or title is for, from the words around it ('why #2', 'not #4', 'Heat was great')."""
    cues = list(_CUE.finditer(before))
    if any(c.lastgroup == "about" for c in cues):
        return "about"
    if _CARD_NEG.search(before):
        return "dislike"
    if cues:
        return cues[-1].lastgroup  # type: ignore[return-value]
    post = _POST.match(after)
    return post.lastgroup if post else None  # type: ignore[return-value]


def _cards(text: str) -> list[tuple[Role | None, int, int, int]]:
    """(role, card number, start, end) for '#2', 'number 2', 'the second one'."""
    out = []
    for m in _CARD.finditer(text):
        n = int(m.group("n") or m.group("m") or _ORDINALS.index(m.group("o").lower()) + 1)
        if n >= 1:
            out.append((_role(*_context(text, m.start(), m.end())), n, m.start(), m.end()))
    return out


def _exact_titles(text: str, resolver: TitleResolver) -> list[_Hit]:
    """Exact catalog titles anywhere in the text (longest first), kept only where a title is plausible."""
    words, hits, i = _words(text), [], 0
    while i < len(words):
        hit, n = _exact_at(text, words, i, resolver)
        if hit is not None:
            hits.append(hit)
        i += max(n, 1)
    return hits


def _exact_at(text: str, words: list[_Word], i: int, resolver: TitleResolver) -> tuple[_Hit | None, int]:
    at_start = i == 0 or words[i - 1].text[-1:] in ".!?"
    quoted = words[i].text[:1] in _QUOTES
    start = words[i].start + quoted
    for n in range(min(MAX_TITLE_WORDS, len(words) - i), 0, -1):
        end = start + len(text[start : words[i + n - 1].end].rstrip(",.;:?" + _QUOTES))
        if end <= start or not normalize(text[start:end]):
            continue
        resolution = resolver.exact(text[start:end])
        if resolution is None:
            continue
        before, after = _context(text, start, end)
        whole = not (text[:start] + text[end:]).strip(" .!?")
        if not _plausible(text[start:end], quoted, at_start or whole, whole, before, after):
            continue
        post = _POST.match(after)
        return _Hit(_role(before, after), resolution, start, end, end + (post.end() if post else 0)), n
    return None, 0


def _plausible(span: str, quoted: bool, at_start: bool, whole: bool, before: str, after: str) -> bool:
    """'loved heat', 'Heat was great', 'heat' alone: yes. 'feeling the heat', 'loved it', 'It was great': no."""
    key = normalize(span)
    capital = span.lstrip("(")[:1].isupper()
    cues = list(_CUE.finditer(before))
    after_cue = bool(cues) and not before[cues[-1].end() :].strip()
    words = key.split()
    if quoted:
        return True
    if key.isdigit():
        return after_cue
    if all(w in _FILLER or w in _GENRE_WORDS for w in words):  # 'it', 'her', 'the one', 'space'
        return capital and after_cue and not at_start
    if len(key) <= 2 or all(w in _COMMON or w in _FILLER for w in words):  # 'Heat', 'Up', 'X'
        return whole or (capital and (after_cue or bool(_POST.match(after))))
    return len(words) >= 2 or capital or at_start or after_cue or bool(_POST.match(after))


def _propagate(text: str, hits: list[_Hit]) -> list[_Hit]:
    """'loved Heat and Alien', 'Alien, Aliens and The Thing were great': a list shares one role."""
    hits = list(hits)
    for k in list(range(1, len(hits))) + list(range(len(hits) - 2, -1, -1)):
        for j in (k - 1, k + 1):
            if not 0 <= j < len(hits) or hits[k].role is not None or hits[j].role is None:
                continue
            left, right = sorted((hits[j], hits[k]), key=lambda h: h.start)
            if _CONNECTOR_GAP.fullmatch(text[left.end : right.start]):
                hits[k] = replace(hits[k], role=hits[j].role)
    return hits


def _fuzzy_titles(text: str, resolver: TitleResolver, cards: Collection[int]) -> list[_Hit]:
    """Misspelt or unknown titles right after a cue ('loved heatt', 'like Xyzzy'), at most MAX_LOOKUPS.

    Skipped where the sentence names a card ('loved the acting in #2' is about #2) or where something
    already found sits right after the cue."""
    hits: list[_Hit] = []
    for cue in _CUE.finditer(text):
        end = _sentence_end(text, cue.end())
        words = _words(text, cue.end(), end)[: 2 * MAX_TITLE_WORDS]
        if not words or words[0].start - cue.end() > 2 or any(cue.end() <= c < end for c in cards):
            continue
        role: Role = cue.lastgroup  # type: ignore[assignment]
        while words and len(hits) < MAX_LOOKUPS:
            chunk = _chunk(words)
            if not chunk:
                break
            start = chunk[0].start + (chunk[0].text[:1] in _QUOTES)
            end = chunk[-1].start + len(chunk[-1].text.rstrip(",.;:?!" + _QUOTES))
            resolution = resolver.resolve(text[start:end])
            if resolution.method == "embedding":  # a guess from meaning: ask before acting on it
                resolution = replace(resolution, status="ambiguous")
            if (resolution.status == "unknown" or resolution.method == "prefix") and not _worth_asking(
                chunk, role
            ):
                break
            hits.append(_Hit(role, resolution, start, end, end))
            words = words[len(chunk) :]
            if not (words and (chunk[-1].text.endswith(",") or words[0].text.lower() in _CONNECTORS)):
                break
            while words and words[0].text.lower() in _CONNECTORS:
                words = words[1:]
    return hits


def _sentence_end(text: str, start: int) -> int:
    m = _SENTENCE_END.search(text, start)
    return m.start() if m else len(text)


def _chunk(words: list[_Word]) -> list[_Word]:
    """The leading words that could be one title: up to a stop word, a genre word or punctuation."""
    out: list[_Word] = []
    for k, word in enumerate(words[:6]):
        low = word.text.lower().strip(",.;:?!()" + _QUOTES)
        if word.text.startswith("#") or (low in _STOP and (k > 0 or low not in _ARTICLE_WORDS)):
            break
        if k > 0 and low in _GENRE_WORDS:
            break
        out.append(word)
        if word.text[-1:] in ",;:.!?":
            break
    content = [w for w in out if _is_content(w.text)]
    return out if content else []


def _is_content(word: str) -> bool:
    """A word that could be part of a title: not filler, not a genre word, not a year or decade."""
    key = normalize(word)
    return (
        bool(key)
        and key not in _FILLER
        and key not in _GENRE_WORDS
        and not re.fullmatch(_Y, word.strip(".,!?"))
    )


def _worth_asking(chunk: list[_Word], role: Role) -> bool:
    """An unknown title is worth asking back about unless it followed a bare 'like' in lower case."""
    first = chunk[0].text.lstrip("\"'“‘(")
    return role != "similar" or first[:1].isupper() or chunk[0].text[:1] in "\"'“‘"


def _genre_constraints(text: str, genres: frozenset[str]) -> Constraints:
    """'no horror', 'less scary', 'more comedy', 'a funny space movie'; the last mention of a genre wins."""
    pattern, table = _genre_lexicon(genres)
    polarity: dict[str, bool] = {}
    for m in pattern.finditer(text):
        before, _ = _context(text, m.start(), m.end())
        negated = any(w.strip(".,!?;:'\"").lower() in _NEGATORS for w in before.split()[-3:])
        for genre in table.get(_phrase_key(m.group()), ()):
            polarity[genre] = not negated
    return Constraints(
        include_genres=frozenset(g for g, keep in polarity.items() if keep),
        exclude_genres=frozenset(g for g, keep in polarity.items() if not keep),
    )


def _year_span(token: str) -> tuple[int, int, bool] | None:
    """'1980s'/'80s'/'eighties' -> (1980, 1989, True); '1995' -> (1995, 1995, False)."""
    t = token.lower().replace("'", "")
    if t in _DECADE_WORDS:
        return _DECADE_WORDS[t], _DECADE_WORDS[t] + 9, True
    if t.endswith("s"):
        digits = int(t[:-1])
        year = digits if digits >= 1000 else digits + (1900 if digits >= 20 else 2000)
        year -= year % 10
        return year, year + 9, True
    return (int(t), int(t), False) if t.isdigit() else None


_BEFORE = {"before", "pre", "earlier than", "older than", "prior to"}
_UNTIL = {"until", "till", "up to", "through"}
_AFTER = {"after", "post", "later than", "newer than"}


def _bound(span: tuple[int, int, bool], rel: str, tail: str) -> tuple[int | None, int | None] | None:
    lo, hi, decade = span
    tail = " ".join(tail.lower().split())
    if rel in _BEFORE:
        return None, lo - 1
    if rel in _UNTIL or tail.startswith("or") and tail.split()[-1] in ("earlier", "older", "before"):
        return None, hi
    if rel in _AFTER:
        return hi + 1, None
    if rel == "since" or tail:
        return lo, None
    if decade or rel in ("from", "in", "of"):
        return lo, hi
    return None  # a bare year says nothing about what to watch


def _year_constraints(text: str) -> Constraints:
    """'before 1990', 'after 2000', 'from the 80s', '1980-1995', '2000 or later'; bounds intersect."""
    bounds: list[tuple[int | None, int | None]] = []
    taken = []
    for m in _YEAR_RANGE.finditer(text):
        a, b = _year_span(m.group("a")), _year_span(m.group("b"))
        if a and b and a[0] <= b[1]:
            bounds.append((a[0], b[1]))
            taken.append(m.span())
    for m in _YEAR_ONE.finditer(_mask(text, taken)):
        span = _year_span(m.group("y"))
        rel = " ".join((m.group("rel") or "").lower().split())
        bound = _bound(span, rel, m.group("tail") or "") if span else None
        if bound and 1870 <= (bound[0] or bound[1] or 0) <= 2100:
            bounds.append(bound)
    if not bounds:
        return Constraints()
    lo = max((b[0] for b in bounds if b[0] is not None), default=None)
    hi = min((b[1] for b in bounds if b[1] is not None), default=None)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = bounds[-1]
    return Constraints(year_min=lo, year_max=hi)


def _relative_year(text: str) -> Literal["newer", "older"] | None:
    """'newer', 'more recent' -> newer; 'older', 'classics' -> older; the later mention wins."""
    newer = [m.start() for m in _NEWER.finditer(text)]
    older = [m.start() for m in _OLDER.finditer(text)]
    if not newer and not older:
        return None
    return "newer" if max(newer, default=-1) > max(older, default=-1) else "older"


def _hit_key(hit: _Hit) -> tuple[object, ...]:
    """Repeats of one title count once ('loved Heat loved Heat ...')."""
    r = hit.resolution
    return (hit.role, r.status, r.ids or normalize(r.query))
