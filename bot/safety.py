"""A customer who says they may harm themselves, or that someone's life is threatened: a person, at once.

The other urgency signals learn from examples, and none of them called
these urgent (bench/bot_domains.py through the whole hub: "honestly thinking
about suicide, can you close my account" got a clarifying question, "i'm
going to hurt myself if this isn't sorted" the list of topics; a development
help centre's "i dont see the point of anything anymore" an article, the
classifier reading it at 0.004; hopelessness said plainly, "dont see the point of
anything", is in the list since). A missed one is the worst
mistake a support bot can make, and the words people use for it are few and
plain, so this signal is a list of phrases, matched whole-word after folding
case and apostrophes ("don't" and "dont" alike). The bot's routing never
overrules it (``bot.actions.routing``), and its handoff says where to get
help now (``messages.SAFETY``).

The list is short on purpose: a phrase that also names an ordinary thing
(a film called "Suicide Squad") would hand off questions for nothing. A team
adds its own under ``safety:`` in its urgent examples file
(``HUB_BOT_URGENT_EXAMPLES``); those add to these, never replace them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from bot.triage import ExamplesError, example_lists

PHRASES = (
    # harming themselves
    "kill myself",
    "killing myself",
    "end my life",
    "ending my life",
    "end it all",
    "take my own life",
    "taking my own life",
    "hurt myself",
    "hurting myself",
    "harm myself",
    "harming myself",
    "self harm",
    "self harming",
    "suicidal",
    "commit suicide",
    "committing suicide",
    "thinking about suicide",
    "thoughts of suicide",
    "want to die",
    "wanna die",
    "dont want to live",
    "dont want to be alive",
    "dont want to be here anymore",
    "better off dead",
    "no reason to live",
    "nothing to live for",
    "no point in living",
    "tired of living",
    "not worth living",
    "nobody would miss me",
    "better off without me",
    "a burden to everyone",
    # hopelessness said plainly: "the point" or "going on" of anything at all, not of a plan or a repair
    "dont see the point of anything",
    "dont see the point of living",
    "no point in going on",
    "cant go on anymore",
    "overdose",
    # someone's life threatened
    "going to kill me",
    "gonna kill me",
    "threatening to kill",
    "threatened to kill",
    "jump off a bridge",
)

_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_NOT_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Case- and apostrophe-folded words joined by single spaces, with a space either side."""
    folded = _APOSTROPHES.sub("", text.casefold())
    return f" {_NOT_WORD.sub(' ', folded).strip()} "


@functools.lru_cache(maxsize=8)
def _folded(phrases: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(phrase, its normal form), once per list: every customer message is checked against it."""
    return tuple((phrase, normalise(phrase)) for phrase in phrases)


def matches(text: str, phrases: Sequence[str] = PHRASES) -> list[str]:
    """The phrases ``text`` contains, whole words only, in the list's order."""
    said = normalise(text)
    return [phrase for phrase, folded in _folded(tuple(phrases)) if folded in said]


def team_phrases(path: Path | None) -> list[str]:
    """The ``safety:`` list of a team's urgent examples file, if any (a bad file: none, the
    examples' own loader reports it)."""
    if path is None:
        return []
    try:
        return example_lists(path).get("safety", [])
    except ExamplesError:
        return []


def phrases_for(path: Path | None) -> tuple[str, ...]:
    """The shipped phrases and the team's own, without repeats."""
    return tuple(dict.fromkeys([*PHRASES, *team_phrases(path)]))
