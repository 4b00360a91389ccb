"""The part of a chunk that answers a question: the excerpt a bot quotes.

A chunk (``knowledge_base.chunking``) is a whole section; a customer asking
"how long does a refund take to PayPal?" wants the PayPal row of its table,
not the section's intro. :func:`excerpt` splits the chunk into *units* - a
paragraph line into sentences, a list item, a table row (its table's header
row is kept aside and paired with the row's cells: "Payment method: PayPal;
Time: 1-2 business days") - scores each against the query, and quotes the
best one with the neighbours it needs:

    score(unit) = cosine(unit, query) + LEXICAL_WEIGHT * bm25(unit) / max bm25(any unit)

BM25 runs over the chunk's units (so a word every unit shares, like "refund"
in a refunds section, weighs little and "PayPal" much), each unit read with
the chunk's ``context`` (its article title and heading): the words the
question shares with the topic ("my router has a solid red light" in "What
your router's lights mean") then weigh nothing, and the unit holding the
words it adds ("Colour: Solid red; Meaning: ...") wins over an opening
sentence that merely restates the topic ("Check the light on your
router."). The embedding side is left alone, as the units' vectors are
cached by their text. The units are
embedded in one call to ``embed``; beyond ``MAX_EMBEDDED_UNITS`` only the
best units by BM25 are, and the others get the lowest cosine seen. The
search passes the embedder through ``knowledge_base.vector_cache``, an LRU
of vectors by text: embedding a chunk's units costs several times a query's
embedding, and questions keep landing on the same sections.

The best unit is quoted with the neighbours it needs, as long as the quote
stays within ``max_chars`` (``MAX_QUOTED_UNITS`` at most), in this order:

- a list item: its list's lead-in when that ends with ":" ("Be suspicious
  of messages that:"; a short one like "You can:" with the sentence before);
- another unit that refers back ("It...", "This...", "Then...", "If they..."):
  the unit before it;
- a unit ending in ":" or "?" ("Still not working?"): the sentence after it;
- a numbered list item: the next step (chunk text keeps an ordered list's
  numbers, ``chunking._block_text``);
- the next sentence of the same line when it refers back (it elaborates);
- the unit before or after when it scores nearly as well (``NEIGHBOUR_RELEVANCE``).

When no unit stands out (the best score is less than ``FLAT_MARGIN`` above
the median), the quote is the chunk's first units, as a reply built from the
first sentences would be. The quote is plain text: Markdown links, emphasis
and list markers are dropped, a list item's trailing comma too; units from
different lines of the chunk are joined by a line break. A quote never ends
mid-word: a unit too long for ``max_chars`` is cut at a space and ends with
"…".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from markdown_it import MarkdownIt

from knowledge_base.keyword import KeywordIndex, tokenize
from knowledge_base.rendering import inline_text

DEFAULT_MAX_CHARS = 320
LEXICAL_WEIGHT = 0.3
FLAT_MARGIN = 0.06
# A neighbour this close to the chosen unit (0 = median score, 1 = the best) is quoted with it.
NEIGHBOUR_RELEVANCE = 0.75
MAX_EMBEDDED_UNITS = 24
# A list's lead-in shorter than this ("You can:") says little without the sentence before it.
SHORT_LEAD_IN = 30
MAX_QUOTED_UNITS = 3
FALLBACK_UNITS = 3
ELLIPSIS = "…"

# A sentence ends at . ! or ? followed by space and something that can open a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|approx|incl|no|Mr|Mrs|Ms|Dr|St)\.$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?P<marker>[-*+]|\d{1,3}[.)])\s+(?P<text>.*)$")
_HEADING_OR_QUOTE = re.compile(r"^\s*(?:#{1,6}\s+|>\s?)")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_FIRST_WORDS = re.compile(r"[A-Za-z']+")
# Opening words that refer back to what came before: such a unit needs its predecessor.
_BACK_REFERENCES = frozenset(
    "this that these those it it's its they they're them their such then otherwise however also instead "
    "besides there's".split()
)
_BACK_REFERENCE_PHRASES = frozenset({"if so", "if not", "in that", "in this", "after that", "because of"})
# ...or that has one of these among its second and third words: "If they cannot find it", "Wash it".
_PRONOUNS = frozenset("it it's its they they're them their this these those".split())

SENTENCE = "sentence"
ITEM = "item"
ITEM_SENTENCE = "item-sentence"
ROW = "row"

Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class Excerpt:
    """The quoted text and which units it quotes.

    ``units`` are indices into the chunk's units in reading order (sentences,
    list items, table rows; a table's header row is not a unit). ``score``
    is how far the best unit stands out: its score minus the median unit's.
    Below ``FLAT_MARGIN`` nothing stood out and ``text`` is the chunk's
    opening.
    """

    text: str
    units: tuple[int, ...]
    score: float


@dataclass(frozen=True, slots=True)
class Unit:
    """One quotable piece of a chunk."""

    text: str  # plain text as quoted (a table row paired with its header)
    line: int  # the chunk line it comes from
    block: int  # consecutive list items, or a table's rows, share a block
    kind: str  # SENTENCE, ITEM, ITEM_SENTENCE (a long item's later sentences) or ROW
    numbered: bool = False  # an item of a list written "1." (not "-")


def excerpt(
    query: str,
    text: str,
    *,
    embed: Embed | None,
    query_vector: np.ndarray | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    context: str = "",
) -> Excerpt:
    """The part of ``text`` (one chunk) that best answers ``query``, at most ``max_chars`` long.

    ``embed`` turns texts into L2-normalised rows (an embedder's
    ``embed_documents``) and is called at most once; pass ``query_vector``
    when the query is embedded already, else it is embedded in the same
    call. Without ``embed`` units are scored by BM25 alone. ``context``
    is what the chunk is about (its title and heading): words of it count
    for no unit in particular.
    """
    units = split_units(text, max_chars=max_chars)
    if len(units) <= 1:
        return Excerpt(text=_join(units, [0], max_chars) if units else "", units=(0,) if units else (), score=0.0)
    scores = _scores(query, units, embed=embed, query_vector=query_vector, context=context)
    best = int(np.argmax(scores))
    median = float(np.median(scores))
    margin = float(scores[best]) - median
    if margin < FLAT_MARGIN:
        return _opening(units, max_chars, margin)
    relevance = (scores - median) / margin
    chosen = _with_neighbours(units, best, relevance, max_chars)
    return Excerpt(text=_join(units, chosen, max_chars), units=tuple(chosen), score=margin)


def split_units(text: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Unit]:
    """A chunk's units in reading order, as plain text (see the module docstring)."""
    lines = [line for line in text.splitlines() if line.strip() and not _TABLE_DELIMITER.match(line)]
    is_row = [_is_table_line(line) for line in lines]
    units: list[Unit] = []
    block = -1
    header: list[str] | None = None
    for number, line in enumerate(lines):
        previous_kind = units[-1].kind if units and units[-1].line == number - 1 else None
        # A table is two or more consecutive "a | b" lines, its first one the header.
        if is_row[number] and ((number + 1 < len(lines) and is_row[number + 1]) or (number > 0 and is_row[number - 1])):
            cells = _cells(line)
            if number == 0 or not is_row[number - 1]:
                header, block = cells, block + 1
                continue
            units.append(Unit(text=_row_text(header or [], cells), line=number, block=block, kind=ROW))
            continue
        item = _LIST_ITEM.match(line)
        if item:
            if previous_kind not in (ITEM, ITEM_SENTENCE):
                block += 1
            body = _plain(item["text"])
            numbered = item["marker"][0].isdigit()
            pieces = [body] if len(body) <= max_chars else split_sentences(body)
            for position, piece in enumerate(pieces):
                kind = ITEM if position == 0 else ITEM_SENTENCE
                units.append(Unit(text=piece, line=number, block=block, kind=kind, numbered=numbered))
            continue
        block += 1
        for sentence in split_sentences(_plain(_HEADING_OR_QUOTE.sub("", line))):
            units.append(Unit(text=sentence, line=number, block=block, kind=SENTENCE))
    return units


def split_sentences(text: str) -> list[str]:
    """Sentences of one line of plain text; an abbreviation ("e.g.", "etc.") ends none."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece:
            sentences.append(piece)
    return sentences


@lru_cache(maxsize=1)
def _inline_parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(["strikethrough"])


def _plain(markdown: str) -> str:
    """One line of inline Markdown as plain text: links to their text, emphasis and code marks dropped."""
    tokens = _inline_parser().parseInline(markdown)
    return inline_text(tokens[0]) if tokens else ""


def _is_table_line(line: str) -> bool:
    stripped = line.strip()
    return " | " in stripped or (stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1)


def _cells(line: str) -> list[str]:
    stripped = line.strip().removeprefix("|").removesuffix("|")
    return [_plain(cell.strip()) for cell in stripped.split("|")]


def _row_text(header: list[str], cells: list[str]) -> str:
    """'Header: value; Header: value', skipping empty cells; extra cells without a header as they are."""
    pairs: list[str] = []
    for position, cell in enumerate(cells):
        if not cell:
            continue
        name = header[position] if position < len(header) else ""
        pairs.append(f"{name}: {cell}" if name and name != cell else cell)
    return "; ".join(pairs)


def _scores(
    query: str, units: list[Unit], *, embed: Embed | None, query_vector: np.ndarray | None, context: str = ""
) -> np.ndarray:
    texts = [unit.text for unit in units]
    lexical = np.zeros(len(units), dtype=np.float32)
    # Every unit carries the context's words, so BM25 gives them (next to) no weight.
    shared = tokenize(context) if context else []
    found = KeywordIndex.from_tokens([tokenize(text) + shared for text in texts]).search(query, len(texts))
    if found:
        top = found[0][1]
        for position, score in found:
            lexical[position] = score / top
    cosine = np.zeros(len(units), dtype=np.float32)
    if embed is not None:
        # Embed every unit, or the best by BM25 (reading order breaks ties) when there are many.
        order = sorted(range(len(units)), key=lambda position: (-lexical[position], position))
        embedded = sorted(order[:MAX_EMBEDDED_UNITS])
        batch = [texts[position] for position in embedded]
        if query_vector is None:
            vectors = np.asarray(embed([query, *batch]), dtype=np.float32)
            query_vector, vectors = vectors[0], vectors[1:]
        else:
            vectors = np.asarray(embed(batch), dtype=np.float32)
        similarities = vectors @ np.asarray(query_vector, dtype=np.float32)
        cosine[:] = float(similarities.min())
        cosine[embedded] = similarities
    return cosine + LEXICAL_WEIGHT * lexical


def _back_reference(unit: Unit) -> bool:
    words = _FIRST_WORDS.findall(unit.text[:40].lower())[:3]
    return bool(words) and (
        words[0] in _BACK_REFERENCES
        or " ".join(words[:2]) in _BACK_REFERENCE_PHRASES
        or any(word in _PRONOUNS for word in words[1:])
    )


def _with_neighbours(units: list[Unit], best: int, relevance: np.ndarray, max_chars: int) -> list[int]:
    """The best unit and the neighbours it needs or that score nearly as well, as many as fit."""
    unit = units[best]
    before = best - 1 if best > 0 else None
    after = best + 1 if best + 1 < len(units) else None
    wanted: list[int] = []
    lead_in = _lead_in(units, best)
    if lead_in:
        # "Be suspicious of messages that:" - an item is read through its list's lead-in.
        wanted.extend(lead_in)
    elif before is not None and unit.kind != ITEM and _back_reference(unit):
        wanted.append(before)
    if after is not None:
        following = units[after]
        if unit.text.endswith((":", "?")) and following.kind not in (ROW, ITEM):
            wanted.append(after)  # "Still not working?" is answered by what follows
        if unit.numbered and following.kind == ITEM and following.block == unit.block:
            wanted.append(after)  # the next step
        if following.line == unit.line and _back_reference(following):
            wanted.append(after)  # it elaborates on this one
    close = [side for side in (before, after) if side is not None and relevance[side] >= NEIGHBOUR_RELEVANCE]
    wanted.extend(sorted(close, key=lambda side: -relevance[side]))

    chosen = [best]
    size = len(unit.text)
    for position in dict.fromkeys(wanted):
        if len(chosen) >= MAX_QUOTED_UNITS:
            break
        if position not in chosen and size + 1 + len(units[position].text) <= max_chars:
            chosen.append(position)
            size += 1 + len(units[position].text)
    return sorted(chosen)


def _lead_in(units: list[Unit], position: int) -> list[int]:
    """The sentence ending in ":" just before the list holding the item at ``position``.

    A short one ("You can:") comes with the sentence before it on its line.
    """
    if units[position].kind not in (ITEM, ITEM_SENTENCE):
        return []
    first = position
    while first > 0 and units[first - 1].block == units[position].block:
        first -= 1
    lead = first - 1
    if lead < 0 or units[lead].kind != SENTENCE or not units[lead].text.endswith(":"):
        return []
    if len(units[lead].text) < SHORT_LEAD_IN and lead > 0 and units[lead - 1].line == units[lead].line:
        return [lead, lead - 1]
    return [lead]


def _opening(units: list[Unit], max_chars: int, margin: float) -> Excerpt:
    chosen = [0]
    size = len(units[0].text)
    for position in range(1, min(FALLBACK_UNITS, len(units))):
        size += 1 + len(units[position].text)
        if size > max_chars:
            break
        chosen.append(position)
    return Excerpt(text=_join(units, chosen, max_chars), units=tuple(chosen), score=margin)


def _join(units: list[Unit], chosen: list[int], max_chars: int) -> str:
    parts: list[str] = []
    for previous, position in zip([None, *chosen], chosen, strict=False):
        if previous is not None:
            parts.append(" " if units[previous].line == units[position].line else "\n")
        unit = units[position]
        # A list item often ends with the comma that joined it to the next one.
        parts.append(unit.text.rstrip(",;") if unit.kind != SENTENCE else unit.text)
    return shorten("".join(parts), max_chars)


def shorten(text: str, max_chars: int) -> str:
    """``text`` if it fits, else cut after its last whole word that fits and ended with "…"."""
    if len(text) <= max_chars:
        return text
    limit = max_chars - len(ELLIPSIS)
    head = text[:limit]
    if not text[limit].isspace():
        space = max(head.rfind(" "), head.rfind("\n"))
        if space > 0:  # else one word longer than the limit: nothing to do but cut it
            head = head[:space]
    return head.rstrip(" \n,;:-–") + ELLIPSIS
