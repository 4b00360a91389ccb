"""Servicehub's knowledge base: Markdown articles, hybrid search, a help portal.

Stands alone: imports nothing from ``hub``, ``channels`` or ``bot``. Start
with :class:`KnowledgeBase` (``knowledge_base.service``).
"""

from pathlib import Path

from knowledge_base.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from knowledge_base.errors import (
    ArticleFormatError,
    IndexMismatch,
    InvalidInput,
    KnowledgeBaseError,
    StoreError,
    StoreUnavailable,
)
from knowledge_base.models import Article, IngestReport, SearchHit, SearchResult
from knowledge_base.search import ANSWER_CONFIDENCE
from knowledge_base.service import KnowledgeBase
from knowledge_base.urls import DEFAULT_COLLECTION, PORTAL_PREFIX, article_url

SAMPLE_DIR = Path(__file__).parent / "sample"

__all__ = [
    "ANSWER_CONFIDENCE",
    "DEFAULT_COLLECTION",
    "PORTAL_PREFIX",
    "SAMPLE_DIR",
    "Article",
    "ArticleFormatError",
    "Embedder",
    "HashingEmbedder",
    "IndexMismatch",
    "IngestReport",
    "InvalidInput",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "SearchHit",
    "SearchResult",
    "SentenceTransformerEmbedder",
    "StoreError",
    "StoreUnavailable",
    "article_url",
]
