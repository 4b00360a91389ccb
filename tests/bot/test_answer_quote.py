"""The bot's answer quotes the part of the article that answers: the real action, the real hub, the real model.

The action server's ``action_answer_from_kb`` runs here with a real rasa_sdk
Tracker and CollectingDispatcher against a hub serving the sample knowledge
base, indexed with the real MiniLM model, over HTTP on 127.0.0.1: the
search chooses the quote (``excerpt=1``), the action only formats it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.actions import ActionAnswerFromKB
from knowledge_base import SAMPLE_DIR, KnowledgeBase, SentenceTransformerEmbedder
from tests.conftest import Hub, make_settings, start_hub

from .test_actions import parse, run, texts, tracker

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PUBLIC_URL = "https://help.example.test"


@pytest.fixture(scope="module")
def real_embedder() -> Iterator[SentenceTransformerEmbedder]:
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    yield embedder


@pytest_asyncio.fixture
async def sample_hub(
    database_url: str, tmp_path: Path, real_embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Hub]:
    settings = make_settings(database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR)
    # Warm, as the hub's own knowledge base is (HUB_KB_WARM): a cold first search under a loaded
    # test run can pass the action's 5 s timeout.
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=real_embedder, warm=True)
    hub = await start_hub(settings, knowledge_base=kb)
    await kb.warmed()
    monkeypatch.setenv("HUB_URL", str(hub.client.make_url("/")).rstrip("/"))
    monkeypatch.setenv("HUB_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.delenv("HUB_BOT_API_TOKEN", raising=False)
    monkeypatch.delenv("HUB_BOT_CONFIDENCE_THRESHOLD", raising=False)
    try:
        yield hub
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_a_refund_to_card_question_is_answered_with_the_card_row(sample_hub: Hub) -> None:
    # The section opens with three steps; the answer is the table row after them.
    question = "how long does a refund take to reach my card?"
    messages, _ = await run(ActionAnswerFromKB(), tracker(parse(question, "ask_question")))

    assert texts(messages) == [
        "Payment method: Credit or debit card; Time to appear after we issue the refund: 3-10 business days\n"
        f"Read more: {PUBLIC_URL}/help/articles/refunds#how-long-does-a-refund-take"
    ]
