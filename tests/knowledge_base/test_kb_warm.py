"""Warming: a collection's sentences and token vectors embedded after a write or load, not at
its first searches (``KnowledgeBase(warm=True)``, knowledge_base/service.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from knowledge_base import HashingEmbedder, KnowledgeBase
from knowledge_base import service as kb_service
from knowledge_base.embeddings import TokenVectors
from knowledge_base.vector_cache import cached_embed

from .conftest import write_article

ARTICLES = {
    "returns": (
        "Returning an item",
        "You can return any item within 30 days of delivery for a full refund.\n\n"
        "Print the prepaid label from your account and drop the parcel at any post office.\n\n"
        "Refunds reach your card within five working days of the parcel arriving.",
    ),
    "delivery": (
        "Delivery times",
        "Standard delivery takes three to five working days across the mainland.\n\n"
        "Next-day delivery is available for orders placed before 2 pm on weekdays.",
    ),
    "gift-cards": (
        "Gift cards",
        "Gift cards never expire and can be spent on anything in the shop.\n\n"
        "A lost gift card can be replaced if you still have the order number.",
    ),
}


class TokenHashingEmbedder(HashingEmbedder):
    """The hashing fake with token vectors too (one per word), counting the texts it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.token_texts: list[str] = []
        self.document_texts: list[str] = []
        self.query_token_texts: list[str] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.document_texts.extend(texts)
        return super().embed_documents(texts)

    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, TokenVectors]:
        self.query_token_texts.append(text)
        return self.embed_query(text), self._tokens([text])[0]

    def embed_tokens(self, texts: Sequence[str]) -> list[TokenVectors]:
        self.token_texts.extend(texts)
        return self._tokens(texts)

    def _tokens(self, texts: Sequence[str]) -> list[TokenVectors]:
        found = []
        for text in texts:
            words = text.split()
            rows = np.stack([self._vector(word) for word in words]) if words else np.zeros((0, self.dimension))
            found.append(TokenVectors(tuple(words), tuple(True for _ in words), rows.astype(np.float16)))
        return found


QUERY = "how long does a refund take to reach my card"


def _source(folder: Path) -> Path:
    for article_id, (title, body) in ARTICLES.items():
        write_article(folder, article_id, title, body)
    return folder


@contextlib.asynccontextmanager
async def _written(tmp_path: Path, *, warm: bool) -> AsyncIterator[tuple[KnowledgeBase, TokenHashingEmbedder]]:
    """A knowledge base with ``ARTICLES`` just ingested, its warm (if any) over."""
    embedder = TokenHashingEmbedder()
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=embedder, warm=warm) as kb:
        await kb.ingest_dir(_source(tmp_path / "src"))
        await kb.warmed()  # without a warm under way: at once
        yield kb, embedder


@pytest.mark.asyncio
async def test_a_warmed_collection_s_first_search_embeds_nothing_more(tmp_path: Path) -> None:
    async with _written(tmp_path, warm=True) as (kb, embedder):
        documents, tokens = len(embedder.document_texts), len(embedder.token_texts)
        assert tokens > 0 and len(cached_embed(embedder)) > 0
        result = await kb.search(QUERY)
        assert result.hits[0].article_id == "returns"
        # Only the query (its vector and tokens at once), and the focus's runs of its words: every
        # article's sentences and chunks, and the pleasantries, were warmed.
        assert embedder.token_texts[tokens:] == []
        assert embedder.query_token_texts == [QUERY]
        assert all(text in QUERY for text in embedder.document_texts[documents:])


@pytest.mark.asyncio
async def test_without_warming_the_first_search_embeds_its_articles(tmp_path: Path) -> None:
    async with _written(tmp_path, warm=False) as (kb, embedder):
        assert embedder.token_texts == []
        await kb.search(QUERY)
        assert "Refunds reach your card within five working days of the parcel arriving." in embedder.document_texts
        assert len(embedder.token_texts) > 1


@pytest.mark.asyncio
async def test_a_write_warms_the_article_it_wrote(tmp_path: Path) -> None:
    async with _written(tmp_path, warm=True) as (kb, embedder):
        await kb.upsert_article(
            "default",
            "loyalty-points",
            title="Loyalty points",
            body_markdown="Every pound you spend earns one loyalty point on your account.",
        )
        await kb.warmed()
        assert any("Every pound you spend earns one loyalty point" in text for text in embedder.token_texts)
        documents = len(embedder.document_texts)
        query = "how many loyalty points do I earn per pound"
        result = await kb.search(query)
        assert result.hits[0].article_id == "loyalty-points"
        assert all(text in query for text in embedder.document_texts[documents:])


@pytest.mark.asyncio
async def test_a_collection_too_large_for_the_caches_is_not_warmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kb_service, "CACHE_SIZE", 4)  # half of it: two sentences
    async with _written(tmp_path, warm=True) as (kb, embedder):
        assert embedder.token_texts == []
        await kb.search(QUERY)
        assert "Refunds reach your card within five working days of the parcel arriving." in embedder.document_texts


@pytest.mark.asyncio
async def test_closing_stops_a_warm_under_way(tmp_path: Path) -> None:
    embedder = TokenHashingEmbedder()
    kb = KnowledgeBase(data_dir=tmp_path / "data", embedder=embedder, warm=True)
    await kb.start()
    await kb.ingest_dir(_source(tmp_path / "src"))
    assert kb._warming  # started by the write, not awaited
    await kb.close()
    assert not kb._warming


@pytest.mark.asyncio
async def test_a_collection_already_written_is_warmed_when_asked(tmp_path: Path) -> None:
    async with _written(tmp_path, warm=False):
        pass
    embedder = TokenHashingEmbedder()
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=embedder, warm=True) as kb:
        kb.start_warming("default")
        kb.start_warming("default")  # one under way: not started again
        await kb.warmed()
        assert "Refunds reach your card within five working days of the parcel arriving." in embedder.document_texts
        documents = len(embedder.document_texts)
        await kb.search(QUERY)
        assert all(text in QUERY for text in embedder.document_texts[documents:])
        assert embedder.query_token_texts == [QUERY]


class BlockingQueryEmbedder(TokenHashingEmbedder):
    """Holds one query's embedding until released: a search in flight, as long as a test likes."""

    def __init__(self, blocked: str) -> None:
        super().__init__()
        self.blocked = blocked
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, TokenVectors]:
        if text == self.blocked:
            self.entered.set()
            assert self.release.wait(30)
        return super().embed_query_tokens(text)


@pytest.mark.asyncio
async def test_a_warm_gives_way_to_searches_in_flight(tmp_path: Path) -> None:
    embedder = BlockingQueryEmbedder(QUERY)
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=embedder, warm=False) as kb:
        await kb.ingest_dir(_source(tmp_path / "src"))
        await kb.as_searched("hello")  # the index loaded, nothing of the articles embedded
        kb.warm = True
        documents = len(embedder.document_texts)  # the ingest embedded the chunks
        search = asyncio.create_task(kb.search(QUERY))
        try:
            await asyncio.to_thread(embedder.entered.wait, 30)
            kb.start_warming("default")
            # The warm may embed the pleasantries, never an article, while the search is in flight.
            await asyncio.sleep(0.5)
            assert embedder.token_texts == []
            assert not any("Print the prepaid label" in text for text in embedder.document_texts[documents:])
        finally:
            embedder.release.set()
        assert (await search).hits[0].article_id == "returns"
        await kb.warmed()
        for _title, body in ARTICLES.values():
            for paragraph in body.split("\n\n"):
                assert any(paragraph in text for text in embedder.token_texts), paragraph
