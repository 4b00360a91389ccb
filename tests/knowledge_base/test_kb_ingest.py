"""Ingest, update and delete: idempotent, minimal, and mirrored in the folder."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from knowledge_base import HashingEmbedder, IndexMismatch, InvalidInput, KnowledgeBase
from knowledge_base.errors import ArticleFormatError

from .conftest import write_article

REFUNDS = """Refunds go back to the original payment method.

## How long refunds take

Card refunds take 3 to 10 business days after we issue them.

## Partial refunds

When you return part of an order, only those items are refunded.
"""
SHIPPING = """## Delivery times

Standard delivery takes 3 to 6 business days; express arrives the next day.

## PO boxes

We deliver to PO boxes with standard shipping only.
"""


def make_source(folder: Path) -> Path:
    write_article(folder, "refunds", "Refunds", REFUNDS, tags=["billing"], category="Billing")
    write_article(folder, "shipping", "Shipping", SHIPPING, tags=["delivery"])
    return folder


def chunk_state(kb: KnowledgeBase, collection: str = "default") -> dict[str, tuple[str, tuple[float, ...]]]:
    """chunk id -> (document, embedding) straight from Chroma."""
    handle = kb.store.handle(collection)
    if handle is None:
        return {}
    got = handle.get(include=["documents", "embeddings"])
    return {
        chunk_id: (document, tuple(np.round(np.asarray(embedding), 6)))
        for chunk_id, document, embedding in zip(got["ids"], got["documents"], got["embeddings"], strict=True)
    }


@pytest.mark.asyncio
async def test_first_ingest_adds_every_article(kb: KnowledgeBase, tmp_path: Path) -> None:
    report = await kb.ingest_dir(make_source(tmp_path / "src"))
    assert sorted(report.added) == ["refunds", "shipping"]
    assert report.updated == report.deleted == report.unchanged == report.skipped == []
    assert report.chunks_written == 5
    assert sorted(chunk_state(kb)) == [
        "refunds/how-long-refunds-take/0",
        "refunds/partial-refunds/0",
        "refunds/~intro/0",
        "shipping/delivery-times/0",
        "shipping/po-boxes/0",
    ]
    # The collection's folder now holds byte-identical copies.
    for name in ("refunds.md", "shipping.md"):
        assert (kb.articles.folder("default") / name).read_bytes() == (tmp_path / "src" / name).read_bytes()


@pytest.mark.asyncio
async def test_reingesting_unchanged_articles_changes_nothing(
    kb: KnowledgeBase, tmp_path: Path, fake_embedder: HashingEmbedder
) -> None:
    source = make_source(tmp_path / "src")
    await kb.ingest_dir(source)
    before = chunk_state(kb)
    embedded = fake_embedder.documents_embedded

    report = await kb.ingest_dir(source)

    assert sorted(report.unchanged) == ["refunds", "shipping"]
    assert report.added == report.updated == report.deleted == []
    assert report.chunks_written == report.chunks_deleted == report.chunks_relabelled == 0
    assert fake_embedder.documents_embedded == embedded
    assert chunk_state(kb) == before


@pytest.mark.asyncio
async def test_changed_article_replaces_only_its_changed_chunks(
    kb: KnowledgeBase, tmp_path: Path, fake_embedder: HashingEmbedder
) -> None:
    source = make_source(tmp_path / "src")
    await kb.ingest_dir(source)
    before = chunk_state(kb)
    embedded = fake_embedder.documents_embedded

    body = REFUNDS.replace("3 to 10 business days", "5 to 7 business days").replace(
        "## Partial refunds\n\nWhen you return part of an order, only those items are refunded.\n",
        "## Store credit\n\nYou can choose store credit instead.\n",
    )
    write_article(source, "refunds", "Refunds", body, tags=["billing"], category="Billing")
    report = await kb.ingest_dir(source)

    assert report.updated == ["refunds"]
    assert report.unchanged == ["shipping"]
    assert report.chunks_written == 2  # the edited section and the new one
    assert report.chunks_deleted == 1  # the removed section
    assert fake_embedder.documents_embedded - embedded == 2
    after = chunk_state(kb)
    assert "refunds/partial-refunds/0" not in after
    assert "5 to 7" in after["refunds/how-long-refunds-take/0"][0]
    assert after["refunds/store-credit/0"][0] == "You can choose store credit instead."
    for unchanged in ("refunds/~intro/0", "shipping/delivery-times/0", "shipping/po-boxes/0"):
        assert after[unchanged] == before[unchanged]


@pytest.mark.asyncio
async def test_metadata_only_change_relabels_without_embedding(
    kb: KnowledgeBase, tmp_path: Path, fake_embedder: HashingEmbedder
) -> None:
    source = make_source(tmp_path / "src")
    await kb.ingest_dir(source)
    embedded = fake_embedder.documents_embedded
    write_article(source, "refunds", "Refunds", REFUNDS, tags=["billing", "money"], category="Payments")

    report = await kb.ingest_dir(source)

    assert report.updated == ["refunds"]
    assert report.chunks_written == 0
    assert report.chunks_relabelled == 3
    assert fake_embedder.documents_embedded == embedded
    metadatas = kb.store.metadatas("default", article_id="refunds")
    assert {meta["category"] for meta in metadatas.values()} == {"Payments"}
    assert {meta["tags"] for meta in metadatas.values()} == {"billing,money"}
    # A second run finds everything up to date.
    assert (await kb.ingest_dir(source)).unchanged == ["refunds", "shipping"]


@pytest.mark.asyncio
async def test_deleted_article_loses_its_chunks_and_file(kb: KnowledgeBase, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    await kb.ingest_dir(source)
    (source / "shipping.md").unlink()

    report = await kb.ingest_dir(source)

    assert report.deleted == ["shipping"]
    assert report.chunks_deleted == 2
    assert not [chunk_id for chunk_id in chunk_state(kb) if chunk_id.startswith("shipping/")]
    assert not (kb.articles.folder("default") / "shipping.md").exists()
    assert [hit.article_id for hit in (await kb.search("delivery PO boxes")).hits] == ["refunds"]


@pytest.mark.asyncio
async def test_keep_missing_keeps_articles_absent_from_the_source(kb: KnowledgeBase, tmp_path: Path) -> None:
    await kb.ingest_dir(make_source(tmp_path / "src"))
    other = tmp_path / "other"
    write_article(other, "contact", "Contact us", "## Phone\n\nCall us on weekdays.")

    report = await kb.ingest_dir(other, delete_missing=False)

    assert report.added == ["contact"]
    assert sorted(report.unchanged) == ["refunds", "shipping"]
    assert [a.id for a in await kb.list_articles("default")] == ["contact", "refunds", "shipping"]


@pytest.mark.asyncio
async def test_unreadable_files_are_reported_and_leave_the_old_version(kb: KnowledgeBase, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    await kb.ingest_dir(source)
    (source / "shipping.md").write_text("---\ntitle: [broken\n---\nbody")
    (source / "Not A Slug.md").write_text("---\ntitle: x\n---\nbody")
    (source / "latin1.md").write_bytes("---\ntitle: caf\xe9\n---\n".encode("latin-1"))

    report = await kb.ingest_dir(source)

    assert sorted(name for name, _ in report.skipped) == ["Not A Slug.md", "latin1.md", "shipping.md"]
    assert report.deleted == []
    assert sorted(report.unchanged) == ["refunds", "shipping"]
    stored = await kb.get_article("default", "shipping")
    assert stored is not None and stored.title == "Shipping"


@pytest.mark.asyncio
async def test_reindex_follows_hand_edits_of_the_folder(kb: KnowledgeBase, tmp_path: Path) -> None:
    await kb.ingest_dir(make_source(tmp_path / "src"))
    folder = kb.articles.folder("default")
    write_article(folder, "returns", "Returns", "## Labels\n\nPrint the prepaid label from your account.")
    (folder / "refunds.md").unlink()

    report = await kb.reindex()

    assert report.added == ["returns"]
    assert report.deleted == ["refunds"]
    assert (await kb.search("prepaid label")).hits[0].article_id == "returns"
    # Ingesting the collection's own folder is the same thing, and a no-op now.
    again = await kb.ingest_dir(folder)
    assert sorted(again.unchanged) == ["returns", "shipping"] and not again.changed


@pytest.mark.asyncio
async def test_upsert_and_delete_article_through_the_api(kb: KnowledgeBase) -> None:
    article = await kb.upsert_article(
        "default",
        "gift-cards",
        title="Gift cards",
        body_markdown="## Balance\n\nCheck your gift card balance online.",
        tags=["payments"],
        category="Billing",
    )
    assert article.id == "gift-cards" and article.tags == ("payments",) and article.category == "Billing"
    text = (kb.articles.folder("default") / "gift-cards.md").read_text()
    assert text.startswith("---\ntitle: Gift cards\ntags:\n- payments\ncategory: Billing\n---\n")
    assert await kb.get_article("default", "gift-cards") == article
    assert (await kb.search("gift card balance")).hits[0].url == "/help/articles/gift-cards#balance"

    updated = await kb.upsert_article(
        "default", "gift-cards", title="Gift cards", body_markdown="## Expiry\n\nGift cards never expire."
    )
    assert updated.content_hash != article.content_hash
    assert sorted(chunk_state(kb)) == ["gift-cards/expiry/0"]

    assert await kb.delete_article("default", "gift-cards") is True
    assert await kb.delete_article("default", "gift-cards") is False
    assert chunk_state(kb) == {}
    assert await kb.get_article("default", "gift-cards") is None
    assert (await kb.search("gift card")).hits == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("collection", "article_id", "fields", "error"),
    [
        ("Bad Name", "a", {}, InvalidInput),
        ("default", "../escape", {}, InvalidInput),
        ("default", "a", {"title": ""}, ArticleFormatError),
        ("default", "a", {"title": "x" * 201}, ArticleFormatError),
        ("default", "a", {"tags": "not-a-list"}, InvalidInput),
        ("default", "a", {"locale": 3}, ArticleFormatError),
    ],
)
async def test_upsert_validates(kb: KnowledgeBase, collection: str, article_id: str, fields: dict, error: type) -> None:
    arguments = {"title": "Title", "body_markdown": "Body", **fields}
    with pytest.raises(error):
        await kb.upsert_article(collection, article_id, **arguments)
    assert await kb.list_collections() == []


@pytest.mark.asyncio
async def test_collections_are_independent(kb: KnowledgeBase, tmp_path: Path) -> None:
    await kb.ingest_dir(make_source(tmp_path / "src"))
    await kb.upsert_article("acme-pro", "sso", title="Single sign-on", body_markdown="## SAML\n\nConfigure SAML SSO.")

    assert await kb.list_collections() == ["acme-pro", "default"]
    assert [a.id for a in await kb.list_articles("acme-pro")] == ["sso"]
    assert [hit.article_id for hit in (await kb.search("SAML SSO", collection="acme-pro")).hits] == ["sso"]
    assert "sso" not in [hit.article_id for hit in (await kb.search("SAML SSO")).hits]
    hit = (await kb.search("SAML", collection="acme-pro")).hits[0]
    assert hit.url == "/help/acme-pro/articles/sso#saml"
    # Emptying one collection leaves the other alone.
    empty = tmp_path / "empty"
    empty.mkdir()
    report = await kb.ingest_dir(empty, "acme-pro")
    assert report.deleted == ["sso"]
    assert (await kb.search("SAML", collection="acme-pro")).hits == []
    assert len(chunk_state(kb, "default")) == 5


@pytest.mark.asyncio
async def test_ingest_rejects_a_missing_folder(kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        await kb.ingest_dir(tmp_path / "nope")


@pytest.mark.asyncio
async def test_index_survives_a_restart(tmp_path: Path, fake_embedder: HashingEmbedder) -> None:
    source = make_source(tmp_path / "src")
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=fake_embedder) as first:
        await first.ingest_dir(source)
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=HashingEmbedder()) as second:
        assert (await second.search("partial refunds")).hits[0].anchor == "partial-refunds"
        assert not (await second.ingest_dir(source)).changed


@pytest.mark.asyncio
async def test_another_embedder_needs_a_reingest(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=HashingEmbedder(256)) as first:
        await first.ingest_dir(source)
    other = HashingEmbedder(256)
    other.name = "another-model"
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=other) as second:
        with pytest.raises(IndexMismatch, match="re-ingest"):
            await second.search("refunds")
        report = await second.ingest_dir(source)
        assert sorted(report.updated) == ["refunds", "shipping"]
        assert report.chunks_written == 5
        assert (await second.search("refunds")).hits


@pytest.mark.asyncio
async def test_calls_before_start_fail_clearly(tmp_path: Path) -> None:
    kb = KnowledgeBase(data_dir=tmp_path, embedder=HashingEmbedder())
    with pytest.raises(Exception, match="not started"):
        await kb.search("anything")


class GatedEmbedder(HashingEmbedder):
    """Blocks the ingest's chunk embeddings until the test opens the gate.

    A chunk is embedded as its title and heading line, then its text; a search
    embeds single lines too (the top article's sentences, for its confidence),
    and those go through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        if any("\n" in text for text in texts):
            assert self.gate.wait(10), "the test never opened the gate"
        return super().embed_documents(texts)


@pytest.mark.asyncio
async def test_searches_do_not_wait_for_a_long_ingest(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=HashingEmbedder()) as first:
        await first.ingest_dir(source)
    write_article(source, "warranty", "Warranty", "## Claims\n\nSend photos of the zipperfault to claim.")
    embedder = GatedEmbedder()
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=embedder) as kb:
        ingest = asyncio.create_task(kb.ingest_dir(source))
        try:
            await asyncio.sleep(0.1)
            assert not ingest.done()
            # The keyword index is loaded while the ingest holds the write lock.
            during = await asyncio.wait_for(kb.search("partial refunds"), timeout=5)
            assert during.hits[0].article_id == "refunds"
            assert "warranty" not in [hit.article_id for hit in (await kb.search("zipperfault")).hits]
        finally:
            embedder.gate.set()
            report = await ingest
        assert report.added == ["warranty"]
        assert (await kb.search("zipperfault")).hits[0].article_id == "warranty"
