"""The same knowledge base against a Chroma server (HttpClient), and a server that is down."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knowledge_base import HashingEmbedder, KnowledgeBase, StoreUnavailable
from tests.conftest import free_port

from .conftest import write_article

CHROMA_CLI = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    if not Path(CHROMA_CLI).exists():
        pytest.skip("the chroma command is not installed")
    port = free_port()
    log = (tmp_path / "chroma.log").open("wb")
    server = subprocess.Popen(
        [CHROMA_CLI, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "chroma.log").read_text()) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.asyncio
async def test_knowledge_base_on_a_chroma_server(chroma_url: str, tmp_path: Path) -> None:
    write_article(tmp_path / "src", "refunds", "Refunds", "## Timing\n\nRefunds take five business days.")
    write_article(tmp_path / "src", "shipping", "Shipping", "## Express\n\nExpress shipping arrives next day.")
    async with KnowledgeBase(data_dir=tmp_path / "data", chroma_url=chroma_url, embedder=HashingEmbedder()) as kb:
        assert (await kb.ingest_dir(tmp_path / "src")).added == ["refunds", "shipping"]
        await kb.upsert_article("team-b", "faq", title="FAQ", body_markdown="## Hours\n\nOpen nine to five.")
        assert await kb.list_collections() == ["default", "team-b"]
        assert (await kb.search("express shipping")).hits[0].article_id == "shipping"
        assert (await kb.search("open hours", collection="team-b")).hits[0].article_id == "faq"
        assert not (await kb.ingest_dir(tmp_path / "src")).changed
    assert not (tmp_path / "data" / "chroma").exists()  # nothing was stored locally


@pytest.mark.asyncio
async def test_an_unreachable_chroma_server_is_retryable(tmp_path: Path) -> None:
    kb = KnowledgeBase(data_dir=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}", embedder=HashingEmbedder())
    with pytest.raises(StoreUnavailable) as caught:
        await kb.start()
    assert caught.value.retryable
    assert "cannot be reached" in caught.value.message
