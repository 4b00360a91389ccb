"""The knowledge base's error tree, raised ``from err``.

The hub maps :class:`InvalidInput` to HTTP 400 and :class:`StoreUnavailable`
to 503; everything else is a 500. ``retryable`` tells a caller whether the
same call can succeed later without changing anything.
"""

from __future__ import annotations


class KnowledgeBaseError(Exception):
    """Base of every error the knowledge base raises on purpose."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(KnowledgeBaseError, ValueError):
    """The caller passed a bad id, collection name, query, ``k`` or article."""


class ArticleFormatError(InvalidInput):
    """A Markdown article file cannot be parsed (front matter, encoding, title)."""


class IndexMismatch(KnowledgeBaseError):
    """The collection was indexed with another embedder: re-ingest it."""


class StoreUnavailable(KnowledgeBaseError):
    """The vector store (a Chroma server) cannot be reached right now."""

    retryable = True


class StoreError(KnowledgeBaseError):
    """The vector store rejected an operation."""
