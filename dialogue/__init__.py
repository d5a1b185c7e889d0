"""What the person said and what to answer: message parsing, title lookup, profile, explanations, replies.

Rules, fuzzy matching and (optionally) sentence embeddings over the catalog; no online services, no gradio,
no storage. Every movie named here comes from the catalog.
"""

from dialogue.explain import explain, movement, movement_reason
from dialogue.profile import Keyword, Profile, build_profile
from dialogue.reply import ReplyContext, reply
from dialogue.titles import Resolution, TitleResolver
from dialogue.turn import Constraints, Turn, parse, relative_constraint

__all__ = [
    "Constraints",
    "Keyword",
    "Profile",
    "ReplyContext",
    "Resolution",
    "TitleResolver",
    "Turn",
    "build_profile",
    "explain",
    "movement",
    "movement_reason",
    "parse",
    "relative_constraint",
    "reply",
]
