"""SMS segments: how many a text costs, and splitting a long reply into messages.

In the hub (not ``channels/sms``) because both sides need it: the SMS channel
splits what it sends, and the agents' console shows what a reply will cost
as it is typed; channels may import the hub's shared helpers, never the
reverse (STYLE.md).

A text that holds only characters of the GSM 03.38 default alphabet goes as
GSM-7: 160 septets in a single segment, 153 per segment once concatenated (the
user data header takes the rest); the extension characters ``^{}\\[~]|€`` (and
form feed) take two septets, an escape and the character. Any other character
makes the whole text UCS-2: 70 UTF-16 code units single, 67 concatenated, and
a character outside the Basic Multilingual Plane (most emoji) takes two. A
two-unit character is never cut between segments, so a segment may hold one
unit less than its limit.

``split_message`` cuts a reply into Twilio messages of at most
``max_segments`` segments (and Twilio's 1600 characters) each, on whitespace;
a link is never cut: one longer than a whole message goes alone, whole, into
its own. A word that is not a link and is longer than a message is cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE, GSM7_CONCATENATED = 160, 153
UCS2_SINGLE, UCS2_CONCATENATED = 70, 67
# Twilio refuses a Body longer than this (error 21617), whatever the segments.
MAX_BODY_CHARS = 1600

_WORD = re.compile(r"\S+")
_LINK = re.compile(r"(?i)(?:https?://|www\.)")


@dataclass(frozen=True, slots=True)
class Size:
    """What a piece of text costs; sizes add up, so a part grows word by word."""

    septets: int = 0  # as GSM-7
    code_units: int = 0  # as UCS-2 (UTF-16)
    gsm7: bool = True  # every character is in the GSM-7 alphabet

    def __add__(self, other: Size) -> Size:
        return Size(self.septets + other.septets, self.code_units + other.code_units, self.gsm7 and other.gsm7)

    @property
    def encoding(self) -> str:
        return "GSM-7" if self.gsm7 else "UCS-2"

    @property
    def units(self) -> int:
        return self.septets if self.gsm7 else self.code_units


def size(text: str) -> Size:
    septets, code_units, gsm7 = 0, 0, True
    for char in text:
        code_units += 2 if ord(char) > 0xFFFF else 1
        if char in GSM7_BASIC:
            septets += 1
        elif char in GSM7_EXTENSION:
            septets += 2
        else:
            gsm7 = False
    return Size(septets, code_units, gsm7)


def encoding(text: str) -> str:
    """``"GSM-7"`` or ``"UCS-2"``: how a carrier sends ``text``."""
    return size(text).encoding


def _limits(gsm7: bool) -> tuple[int, int]:
    return (GSM7_SINGLE, GSM7_CONCATENATED) if gsm7 else (UCS2_SINGLE, UCS2_CONCATENATED)


def segment_count(text: str) -> int:
    """Segments ``text`` takes as one message (0 for an empty text), packed
    as a phone does: a two-unit character that does not fit a segment starts
    the next one."""
    total = size(text)
    single, concatenated = _limits(total.gsm7)
    if total.units <= single:
        return 1 if text else 0
    segments, used = 1, 0
    for char in text:
        cost = (2 if char in GSM7_EXTENSION else 1) if total.gsm7 else (2 if ord(char) > 0xFFFF else 1)
        if used + cost > concatenated:
            segments, used = segments + 1, 0
        used += cost
    return segments


def fits(cost: Size, max_segments: int | None, max_chars: int = MAX_BODY_CHARS) -> bool:
    """Whether a text of ``cost`` goes as one message of at most ``max_segments``
    segments (None: no segment limit, as on WhatsApp) and ``max_chars`` UTF-16
    units. Exact up to the two-unit characters: it assumes every segment but
    the last loses one unit to them, so it never says yes to too much."""
    if cost.code_units > max_chars:
        return False
    if max_segments is None:
        return True
    single, concatenated = _limits(cost.gsm7)
    if cost.units <= single:
        return True
    return max_segments > 1 and cost.units <= max_segments * concatenated - (max_segments - 1)


def is_link(word: str) -> bool:
    return _LINK.search(word) is not None


def split_message(text: str, *, max_segments: int | None, max_chars: int = MAX_BODY_CHARS) -> list[str]:
    """``text`` (trimmed) as the bodies of one or more messages, each within
    budget (see ``fits``), cut on whitespace only between words; the spacing
    inside a part is the original's. A link longer than a message is one part
    of its own, over budget; any other over-long word is cut where it must."""
    text = text.strip()
    if not text or fits(size(text), max_segments, max_chars):
        return [text] if text else []
    parts: list[str] = []
    start = end = 0
    cost: Size | None = None  # of text[start:end], the part being built; None: no part open
    for match in _WORD.finditer(text):
        if cost is not None:
            grown = cost + size(text[end : match.end()])
            if fits(grown, max_segments, max_chars):
                end, cost = match.end(), grown
                continue
            parts.append(text[start:end])
            cost = None
        word = match.group()
        word_cost = size(word)
        if fits(word_cost, max_segments, max_chars):
            start, end, cost = match.start(), match.end(), word_cost
        elif is_link(word):
            parts.append(word)
        else:
            pieces = _cut(word, max_segments, max_chars)
            parts.extend(pieces[:-1])
            start, end, cost = match.end() - len(pieces[-1]), match.end(), size(pieces[-1])
    if cost is not None:
        parts.append(text[start:end])
    return parts


def _cut(word: str, max_segments: int | None, max_chars: int) -> list[str]:
    """A word longer than a message, cut into pieces that each fit."""
    pieces: list[str] = []
    start, cost = 0, Size()
    for index, char in enumerate(word):
        grown = cost + size(char)
        if index > start and not fits(grown, max_segments, max_chars):
            pieces.append(word[start:index])
            start, grown = index, size(char)
        cost = grown
    pieces.append(word[start:])
    return pieces
