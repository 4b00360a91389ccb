"""Split an article into chunks by heading and paragraph, with stable ids.

A section runs from one heading of level <= ``split_level`` (h1-h3 by
default) to the next; the text before the first heading is the article's
intro (empty anchor). A section longer than ``max_chars`` is packed into
several chunks at block (paragraph, list, table, code) boundaries. A block
too long for one chunk is split between its lines, so a list keeps whole
items and a table whole rows, and every piece of a table starts with the
table's header row again: each row stays quotable as "Header: cell"
(``knowledge_base.excerpt``) whichever chunk it lands in. Only a single
over-long line (a paragraph, one huge item or row) is split at sentence
boundaries.

Chunk id: ``{article_id}/{anchor or "~intro"}/{n}`` - it depends only on the
article id, the heading's anchor and the piece number, so editing one
section leaves the other chunks' ids and hashes alone. The hash covers the
text that is embedded, so an unchanged hash means the vector can be kept.

Besides its text chunks (``kind="text"``, what a search hit shows), an
article gets one *probe* vector per question its front matter lists
(``kind="question"``, ``{article_id}/~q/{n}``): a customer's question often
reads more like another question than like the passage that answers it. A
probe is never shown; a hit through a probe shows the article's best text
chunk (see ``knowledge_base.search``). Title-only and heading-only probes
were measured too and left out: on other industries' help centres they
took the first place from the right article more often than they gave it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from markdown_it.token import Token

from knowledge_base.models import Article
from knowledge_base.rendering import inline_text, parse

# Bump when chunk boundaries or embedded text change, so every article is re-indexed.
CHUNKER_VERSION = "4"
DEFAULT_MAX_CHARS = 900
INTRO_KEY = "~intro"
TEXT = "text"
QUESTION = "question"
PROBE_KINDS = frozenset({QUESTION})
HEADING_SEPARATOR = " > "
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A table's header row is repeated on each of its pieces only when it leaves this share of a chunk for rows.
MAX_REPEATED_HEADER_SHARE = 3


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    article_id: str
    title: str
    heading: str
    heading_path: tuple[str, ...]
    anchor: str
    position: int
    text: str
    kind: str = TEXT

    @property
    def embed_text(self) -> str:
        if self.kind in PROBE_KINDS:
            return self.text
        return compose_embed_text(self.title, self.heading_path, self.text)

    def digest(self, embedder_name: str) -> str:
        return hashlib.sha256(f"{embedder_name}\n{self.embed_text}".encode()).hexdigest()


def compose_embed_text(title: str, heading_path: tuple[str, ...], text: str) -> str:
    """What the embedder and BM25 see: the title and heading trail give the text context."""
    trail = HEADING_SEPARATOR.join(part for part in heading_path if part)
    head = f"{title}. {trail}." if trail else f"{title}."
    return f"{head}\n{text}"


@dataclass(frozen=True, slots=True)
class _Block:
    text: str  # plain text, one line per list item or table row
    table: bool = False  # the first line is the table's header row


@dataclass(slots=True)
class _Section:
    heading: str
    anchor: str
    path: tuple[str, ...]
    blocks: list[_Block] = field(default_factory=list)


def chunk_article(article: Article, *, max_chars: int = DEFAULT_MAX_CHARS, split_level: int = 3) -> list[Chunk]:
    """The chunks of one article, in reading order."""
    sections = _sections(article.body_markdown, split_level=split_level)
    chunks: list[Chunk] = []
    position = 0
    for section in sections:
        for piece_number, text in enumerate(_pack(section.blocks, max_chars)):
            key = section.anchor or INTRO_KEY
            chunks.append(
                Chunk(
                    id=f"{article.id}/{key}/{piece_number}",
                    article_id=article.id,
                    title=article.title,
                    heading=section.heading or article.title,
                    heading_path=section.path,
                    anchor=section.anchor,
                    position=position,
                    text=text,
                )
            )
            position += 1
    if not chunks:
        # An article with a title only is still findable by its title.
        chunks.append(
            Chunk(
                id=f"{article.id}/{INTRO_KEY}/0",
                article_id=article.id,
                title=article.title,
                heading=article.title,
                heading_path=(),
                anchor="",
                position=0,
                text=article.title,
            )
        )
    return chunks


def index_chunks(article: Article, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """Everything indexed for an article: its text chunks, then its probes."""
    chunks = chunk_article(article, max_chars=max_chars)
    return chunks + probes(article, chunks)


def probes(article: Article, chunks: list[Chunk]) -> list[Chunk]:
    """The article's probe vectors (see the module docstring), after its text chunks."""
    return [
        Chunk(
            id=f"{article.id}/~q/{n}",
            article_id=article.id,
            title=article.title,
            heading=article.title,
            heading_path=(),
            anchor="",
            position=-1,
            text=question,
            kind=QUESTION,
        )
        for n, question in enumerate(article.questions)
    ]


def _sections(markdown: str, *, split_level: int) -> list[_Section]:
    sections = [_Section(heading="", anchor="", path=())]
    trail: dict[int, str] = {}
    for kind, level, text, anchor in _events(parse(markdown)):
        if kind == "heading" and level <= split_level:
            trail = {lvl: name for lvl, name in trail.items() if lvl < level}
            trail[level] = text
            path = tuple(trail[lvl] for lvl in sorted(trail))
            sections.append(_Section(heading=text, anchor=anchor, path=path))
        elif text and kind != "heading":
            sections[-1].blocks.append(_Block(text=text, table=kind == "table"))
        elif text:
            sections[-1].blocks.append(_Block(text=text))
    return [section for section in sections if section.blocks]


def _events(tokens: list[Token]) -> Iterator[tuple[str, int, str, str]]:
    """(kind, heading level, plain text, anchor) for each top-level block; kind is heading, table or block."""
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type == "heading_open" and token.level == 0:
            yield "heading", int(token.tag[1:]), inline_text(tokens[index + 1]), str(token.attrGet("id") or "")
            index += 3
            continue
        if token.nesting == 1:
            end = _block_end(tokens, index)
            kind = "table" if token.type == "table_open" else "block"
            yield kind, 0, _block_text(tokens[index : end + 1]), ""
            index = end + 1
            continue
        if token.type in ("fence", "code_block"):
            yield "block", 0, token.content.strip("\n"), ""
        index += 1


def _block_end(tokens: list[Token], start: int) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        depth += tokens[index].nesting
        if depth == 0:
            return index
    return len(tokens) - 1


def _block_text(tokens: list[Token]) -> str:
    """Plain text of a paragraph, list, table, quote: one line per item or row."""
    lines: list[str] = []
    row: list[str] = []
    # One entry per open list: the next item's number, or None for a bullet list.
    numbers: list[int | None] = []
    marker = ""
    item_start = False
    for token in tokens:
        if token.type == "bullet_list_open":
            numbers.append(None)
        elif token.type == "ordered_list_open":
            numbers.append(int(token.attrGet("start") or 1))
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            numbers.pop()
        elif token.type == "list_item_open":
            item_start = True
            # Steps keep their numbers: an excerpt can then quote a step and the next.
            number = numbers[-1] if numbers else None
            marker = "- " if number is None else f"{number}. "
            if number is not None:
                numbers[-1] = number + 1
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            lines.append(" | ".join(row))
        elif token.type in ("fence", "code_block"):
            lines.append(token.content.strip("\n"))
        elif token.type == "inline":
            text = inline_text(token)
            if token.level and tokens[0].type == "table_open":
                row.append(text)
            elif item_start:
                lines.append("  " * (len(numbers) - 1) + marker + text)
                item_start = False
            elif text:
                lines.append(text)
    return "\n".join(line for line in lines if line.strip())


def _pack(blocks: list[_Block], max_chars: int) -> list[str]:
    """Greedily join blocks into pieces of at most ``max_chars``."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for block in blocks:
        for part in _split_long(block, max_chars):
            if current and size + len(part) + 1 > max_chars:
                pieces.append("\n".join(current))
                current, size = [], 0
            current.append(part)
            size += len(part) + 1
    if current:
        pieces.append("\n".join(current))
    return pieces


def _split_long(block: _Block, max_chars: int) -> list[str]:
    """``block`` in parts of at most ``max_chars``, split between lines (see the module docstring)."""
    if len(block.text) <= max_chars:
        return [block.text]
    lines = block.text.split("\n")
    header = ""
    if block.table and len(lines) > 1 and len(lines[0]) <= max_chars // MAX_REPEATED_HEADER_SHARE:
        header, lines = lines[0], lines[1:]

    def joined(rows: list[str]) -> str:
        return "\n".join([header, *rows] if header else rows)

    parts: list[str] = []
    current: list[str] = []
    for line in lines:
        if len(joined([*current, line])) <= max_chars:
            current.append(line)
            continue
        if current:
            parts.append(joined(current))
            current = []
        if len(joined([line])) <= max_chars:
            current = [line]
        elif len(line) <= max_chars:
            parts.append(line)  # a row too long to share a chunk with its header
        else:
            parts.extend(_split_sentences(line, max_chars))
    if current:
        parts.append(joined(current))
    return parts


def _split_sentences(line: str, max_chars: int) -> list[str]:
    """One over-long line in parts of at most ``max_chars``, at sentence ends, else at a space."""
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(line):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            head, sentence = sentence[:cut].rstrip(), sentence[cut:].lstrip()
            if current:
                parts.append(current)
                current = ""
            parts.append(head)
        if current and len(current) + len(sentence) + 1 > max_chars:
            parts.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        parts.append(current)
    return parts
