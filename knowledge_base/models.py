"""The knowledge base's value objects: articles, search hits, ingest reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from knowledge_base.urls import article_url


@dataclass(frozen=True, slots=True)
class Article:
    """One Markdown article; ``id`` is its file name without ``.md``."""

    id: str
    collection: str
    title: str
    body_markdown: str
    tags: tuple[str, ...] = ()
    locale: str | None = None
    product: str | None = None
    category: str | None = None
    content_hash: str = ""
    updated_at: datetime | None = None
    # Example questions the article answers, from its front matter: indexed
    # as extra search vectors of the article and taught to the bot's NLU.
    questions: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return article_url(self.collection, self.id)

    def to_dict(self, *, include_body: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "collection": self.collection,
            "title": self.title,
            "tags": list(self.tags),
            "locale": self.locale,
            "product": self.product,
            "category": self.category,
            "questions": list(self.questions),
            "content_hash": self.content_hash,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "url": self.url,
        }
        if include_body:
            data["body_markdown"] = self.body_markdown
        return data


@dataclass(frozen=True, slots=True)
class SearchHit:
    """The best-matching section of one article.

    ``score`` is the fused rank score scaled to [0, 1] (1 = first in both
    rankings); ``similarity`` is the cosine similarity of the chunk to the
    query when the semantic ranker saw it, else ``None``.
    """

    article_id: str
    collection: str
    title: str
    heading: str
    anchor: str
    text: str
    score: float
    similarity: float | None
    chunk_id: str
    excerpt: str | None = None  # the part of ``text`` that answers (search(..., excerpt=True), top hit only)

    @property
    def url(self) -> str:
        return article_url(self.collection, self.article_id, self.anchor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "collection": self.collection,
            "title": self.title,
            "heading": self.heading,
            "anchor": self.anchor,
            "text": self.text,
            "score": round(self.score, 4),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "url": self.url,
            **({"excerpt": self.excerpt} if self.excerpt is not None else {}),
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits best first, at most one per article, and how sure the top one is."""

    query: str
    collection: str
    hits: list[SearchHit]
    confidence: float
    # The query as searched when it differs from the one typed: misspelt words corrected
    # (``knowledge_base.spelling``), sentences far from every article left out (``knowledge_base.focus``).
    corrected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "corrected": self.corrected,
            "collection": self.collection,
            "confidence": round(self.confidence, 4),
            "hits": [hit.to_dict() for hit in self.hits],
        }


@dataclass(slots=True)
class IngestReport:
    """What one ingest changed, by article id.

    ``chunks_written`` counts chunks embedded and written; ``chunks_relabelled``
    chunks whose text was unchanged but whose metadata (title, tags...) was
    rewritten without re-embedding; ``skipped`` lists files that could not be
    read, with the reason.
    """

    collection: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    chunks_relabelled: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "added": self.added,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "skipped": [{"file": name, "reason": reason} for name, reason in self.skipped],
            "chunks_written": self.chunks_written,
            "chunks_relabelled": self.chunks_relabelled,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 3),
        }
