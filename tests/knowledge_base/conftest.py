"""Fixtures for the knowledge-base tests.

Unit tests use the deterministic HashingEmbedder and a real Chroma
PersistentClient under tmp_path. Integration tests use the real
all-MiniLM-L6-v2 model, loaded once per session, and one sample index built
once per session (in its own thread, so its event loop never meets the
tests' loops) that read-only tests open.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase, SentenceTransformerEmbedder

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def write_article(folder: Path, article_id: str, title: str, body: str, **front: object) -> Path:
    """Write ``<folder>/<article_id>.md`` with YAML front matter."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    meta = {"title": title, **front}
    path = folder / f"{article_id}.md"
    path.write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n{body}\n", encoding="utf-8")
    return path


@pytest.fixture
def fake_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest_asyncio.fixture
async def kb(tmp_path: Path, fake_embedder: HashingEmbedder) -> AsyncIterator[KnowledgeBase]:
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=fake_embedder) as knowledge_base:
        yield knowledge_base


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    return embedder


def _run_in_thread(coro_factory) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro_factory())
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder) -> Path:
    """A data dir holding the sample articles indexed with the real model (read-only)."""
    data_dir = tmp_path_factory.mktemp("sample-kb")

    async def build() -> None:
        async with KnowledgeBase(data_dir=data_dir, embedder=real_embedder) as knowledge_base:
            report = await knowledge_base.ingest_dir(SAMPLE_DIR)
            assert not report.skipped, report.skipped

    _run_in_thread(build)
    return data_dir


@pytest_asyncio.fixture
async def sample_kb(sample_data_dir: Path, real_embedder: SentenceTransformerEmbedder) -> AsyncIterator[KnowledgeBase]:
    async with KnowledgeBase(data_dir=sample_data_dir, embedder=real_embedder) as knowledge_base:
        yield knowledge_base
