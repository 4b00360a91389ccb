"""Markdown to safe HTML, and the heading anchors that search hits point at.

One parser (markdown-it-py, CommonMark + tables + strikethrough, raw HTML
off) serves both the portal and the chunker, and :func:`assign_heading_ids`
is the only place anchors are made, so a hit's ``anchor`` is always an
``id`` on the rendered page. The rendered HTML is then sanitised with nh3
(an allow-list of tags, attributes and URL schemes) as a second line of
defence behind markdown-it's own escaping.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

_SLUG_DROP = re.compile(r"[^\w\- ]+")
_SLUG_SPACES = re.compile(r"[\s_-]+")

ALLOWED_TAGS = frozenset(
    {
        "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "img", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th",
        "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    **{f"h{level}": {"id"} for level in range(1, 7)},
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True, slots=True)
class RenderedMarkdown:
    html: str
    headings: list[Heading]


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


def slugify(text: str) -> str:
    """GitHub-style slug: lower case, punctuation dropped, runs of spaces to '-'.

    Letters of any script are kept, so non-English headings get readable ids.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _SLUG_DROP.sub("", text)
    return _SLUG_SPACES.sub("-", text).strip("-")[:80].strip("-") or "section"


def inline_text(token: Token) -> str:
    """The plain text of an ``inline`` token: markup dropped, code and image alt kept."""
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return " ".join("".join(parts).split())


def parse(markdown: str) -> list[Token]:
    """Block tokens with every heading's ``id`` attribute set."""
    tokens = _parser().parse(markdown)
    assign_heading_ids(tokens)
    return tokens


def assign_heading_ids(tokens: list[Token]) -> list[Heading]:
    """Give each heading a unique slug id, ``-1``, ``-2``... for repeats."""
    seen: dict[str, int] = {}
    headings: list[Heading] = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        text = inline_text(tokens[index + 1])
        base = slugify(text)
        anchor = base
        while anchor in seen:
            seen[base] += 1
            anchor = f"{base}-{seen[base]}"
        seen[anchor] = 0
        token.attrSet("id", anchor)
        headings.append(Heading(level=int(token.tag[1:]), text=text, anchor=anchor))
    return headings


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        filter_style_properties={"text-align"},
        link_rel="noopener noreferrer",
    )


def render_markdown(markdown: str) -> RenderedMarkdown:
    """Safe HTML for an article body, and its headings for a table of contents."""
    parser = _parser()
    tokens = parser.parse(markdown)
    headings = assign_heading_ids(tokens)
    html = parser.renderer.render(tokens, parser.options, {})
    return RenderedMarkdown(html=sanitize_html(html), headings=headings)
