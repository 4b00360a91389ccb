"""The CLI helpers the hub's `hub kb ...` commands call."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge_base import SAMPLE_DIR, HashingEmbedder
from knowledge_base.cli import ingest_command, search_command

from .conftest import write_article


@pytest.mark.asyncio
async def test_ingest_command_reports_changes(tmp_path: Path) -> None:
    out = io.StringIO()
    report = await ingest_command(SAMPLE_DIR, data_dir=tmp_path, collection="help", embedder=HashingEmbedder(), out=out)
    assert len(report.added) >= 20
    assert out.getvalue().startswith(f"help: {len(report.added)} added, 0 updated, 0 deleted, 0 unchanged;")

    out = io.StringIO()
    again = await ingest_command(SAMPLE_DIR, data_dir=tmp_path, collection="help", as_json=True,
                                 embedder=HashingEmbedder(), out=out)  # fmt: skip
    data = json.loads(out.getvalue())
    assert data["added"] == [] and len(data["unchanged"]) == len(report.added) == len(again.unchanged)


@pytest.mark.asyncio
async def test_ingest_command_lists_skipped_files(tmp_path: Path) -> None:
    write_article(tmp_path / "src", "ok", "Fine", "Body")
    (tmp_path / "src" / "broken.md").write_text("---\ntitle: [\n---\n")
    out = io.StringIO()
    await ingest_command(tmp_path / "src", data_dir=tmp_path / "data", embedder=HashingEmbedder(), out=out)
    assert "skipped broken.md: article 'broken': the front matter is not valid YAML" in out.getvalue()


@pytest.mark.asyncio
async def test_search_command_answers_each_line_of_a_queries_file(tmp_path: Path) -> None:
    await ingest_command(SAMPLE_DIR, data_dir=tmp_path, embedder=HashingEmbedder(), out=io.StringIO())
    queries = tmp_path / "queries.txt"
    queries.write_text("reset my password\n\ngift card balance\n" + "x" * 1200 + "\n")
    embedder = HashingEmbedder()
    out = io.StringIO()

    status = await search_command(queries_file=queries, data_dir=tmp_path, k=2, embedder=embedder, out=out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert status == 1
    assert [line["query"] for line in lines] == ["reset my password", "", "gift card balance", "x" * 1200]
    assert lines[0]["hits"][0]["article_id"] == "reset-your-password"
    assert len(lines[0]["hits"]) == 2 and 0 <= lines[0]["confidence"] <= 1
    assert lines[1]["error"] == "the search query is empty"
    assert lines[2]["hits"][0]["article_id"] == "gift-cards-and-promo-codes"
    assert "longer than" in lines[3]["error"]
    assert embedder.loads == 1  # the model is loaded once for the whole file


@pytest.mark.asyncio
async def test_search_command_single_query(tmp_path: Path) -> None:
    await ingest_command(SAMPLE_DIR, data_dir=tmp_path, embedder=HashingEmbedder(), out=io.StringIO())
    out = io.StringIO()
    assert await search_command("gift card balance", data_dir=tmp_path, embedder=HashingEmbedder(), out=out) == 0
    text = out.getvalue()
    assert text.startswith("5 results for 'gift card balance' (confidence ")
    assert "1. Gift cards and promo codes > " in text and "/help/articles/gift-cards-and-promo-codes#" in text

    out = io.StringIO()
    await search_command("gift card balance", data_dir=tmp_path, k=1, as_json=True, embedder=HashingEmbedder(), out=out)
    assert [hit["article_id"] for hit in json.loads(out.getvalue())["hits"]] == ["gift-cards-and-promo-codes"]


def test_module_entry_point_reports_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "knowledge_base", "--data-dir", str(tmp_path), "ingest", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
