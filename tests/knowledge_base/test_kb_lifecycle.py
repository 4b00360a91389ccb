"""Start and close leave nothing behind: no threads, no file descriptors, no tasks."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

import pytest

from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase


def fds_under(directory: Path) -> list[str]:
    """Open file descriptors of this process whose target lies in ``directory``.

    Counting every descriptor of the process is flaky: other tests' sockets,
    pipes and finalisers open and close theirs at any moment. What the knowledge
    base owns are the files of its store, so those are the ones that must go.
    """
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith(str(directory)):
            targets.append(target)
    return sorted(targets)


def kb_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("kb")]


async def cycle(data_dir: Path) -> None:
    async with KnowledgeBase(data_dir=data_dir, embedder=HashingEmbedder()) as kb:
        await kb.ingest_dir(SAMPLE_DIR)
        await kb.search("refund")
        await kb.upsert_article("other", "a", title="A", body_markdown="Text")


async def settled_fds_under(directory: Path, seconds: float = 5.0) -> list[str]:
    """``fds_under(directory)`` once it is empty, or after ``seconds``.

    Chroma 1.x's ``client.close()`` drops its Rust bindings (``del
    self.bindings``), which close the SQLite file when the last Python
    reference goes: in the full suite under CPU load that was once after the
    close returned. Collecting garbage and waiting a moment lets that happen;
    a leak stays open."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        gc.collect()
        left = fds_under(directory)
        if not left or asyncio.get_running_loop().time() >= deadline:
            return left
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_close_releases_threads_files_and_tasks(tmp_path: Path) -> None:
    await cycle(tmp_path / "warm-up")  # first use loads libraries that keep their own files
    tasks_before = asyncio.all_tasks()

    await cycle(tmp_path / "measured")
    await cycle(tmp_path / "measured")  # reopening the same store works, too

    assert kb_threads() == []
    assert await settled_fds_under(tmp_path) == []
    assert asyncio.all_tasks() == tasks_before


@pytest.mark.asyncio
async def test_close_is_idempotent_and_start_can_fail_cleanly(tmp_path: Path) -> None:
    kb = KnowledgeBase(data_dir=tmp_path, embedder=HashingEmbedder())
    await kb.start()
    await kb.start()
    await kb.close()
    await kb.close()
    assert kb_threads() == []

    class BrokenEmbedder(HashingEmbedder):
        def load(self) -> None:
            raise RuntimeError("no weights")

    broken = KnowledgeBase(data_dir=tmp_path, embedder=BrokenEmbedder())
    with pytest.raises(RuntimeError, match="no weights"):
        await broken.start()
    assert kb_threads() == []
