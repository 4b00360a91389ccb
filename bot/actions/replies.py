"""Turn a knowledge-base passage into a short chat reply."""

from __future__ import annotations

import re

MAX_REPLY_CHARS = 300
MAX_SENTENCES = 3

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_LINE_MARKUP = re.compile(r"^\s*(#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])")


def plain_text(markdown: str) -> str:
    """Markdown to one line of plain text: no headings, bullets, links or emphasis."""
    lines = []
    for line in markdown.splitlines():
        line = _LINE_MARKUP.sub("", line).strip()
        if not line or set(line) <= set("|-: "):
            continue
        if line[-1] not in ".!?:;,":
            # A heading or list item without a full stop still ends a thought.
            line += "."
        lines.append(line)
    text = " ".join(lines)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def short_reply(passage: str, *, max_chars: int = MAX_REPLY_CHARS, max_sentences: int = MAX_SENTENCES) -> str:
    """The first one to ``max_sentences`` sentences of ``passage``, within ``max_chars``.

    Never cuts a word: a first sentence that is longer than ``max_chars`` is
    cut at the last space before the limit and ends with an ellipsis.
    """
    text = plain_text(passage)
    if not text:
        return ""
    reply = ""
    for count, sentence in enumerate(_SENTENCE_END.split(text), start=1):
        candidate = f"{reply} {sentence}".strip()
        if len(candidate) > max_chars:
            break
        reply = candidate
        if count >= max_sentences:
            break
    if reply:
        return reply
    cut = text[: max_chars - 1]
    if " " in cut and not text[max_chars - 1 : max_chars].isspace():
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def link(public_url: str, url: str) -> str:
    """An absolute link to a hit: relative URLs are joined to the hub's public URL."""
    if url.startswith(("http://", "https://")):
        return url
    return f"{public_url.rstrip('/')}/{url.lstrip('/')}"
