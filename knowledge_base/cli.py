"""Command-line helpers: the hub's ``hub kb ...`` commands call these functions.

They are plain async functions that take their options as arguments and
write to ``out``, so any CLI framework can wrap them; :func:`main` is a
small argparse front end for using the knowledge base on its own::

    python -m knowledge_base ingest DIR [--collection NAME] [--data-dir PATH]
    python -m knowledge_base search QUERY [--collection NAME] [-k N] [--json]
    python -m knowledge_base search --queries FILE [--collection NAME] [-k N]
    python -m knowledge_base portal [--port 8080] [--sample]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from knowledge_base import messages
from knowledge_base.embeddings import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from knowledge_base.errors import InvalidInput, KnowledgeBaseError
from knowledge_base.models import IngestReport, SearchResult
from knowledge_base.service import KnowledgeBase
from knowledge_base.urls import DEFAULT_COLLECTION, PORTAL_PREFIX

DEFAULT_DATA_DIR = Path(os.environ.get("HUB_KB_DATA_DIR", "data/kb"))


def make_knowledge_base(
    *,
    data_dir: Path,
    chroma_url: str | None = None,
    model_path: Path | None = None,
    embedder: Embedder | None = None,
) -> KnowledgeBase:
    return KnowledgeBase(
        data_dir=data_dir,
        chroma_url=chroma_url,
        embedder=embedder or SentenceTransformerEmbedder(model_path),
    )


async def ingest_command(
    path: Path,
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
    collection: str = DEFAULT_COLLECTION,
    chroma_url: str | None = None,
    model_path: Path | None = None,
    delete_missing: bool = True,
    as_json: bool = False,
    embedder: Embedder | None = None,
    out: TextIO | None = None,
) -> IngestReport:
    """``hub kb ingest DIR``: copy and index a folder of Markdown articles."""
    out = out or sys.stdout
    if not Path(path).is_dir():  # before loading the model: a typo should fail at once
        raise InvalidInput(messages.NOT_A_DIRECTORY.format(path=path))
    kb = make_knowledge_base(data_dir=data_dir, chroma_url=chroma_url, model_path=model_path, embedder=embedder)
    async with kb:
        report = await kb.ingest_dir(path, collection, delete_missing=delete_missing)
    if as_json:
        out.write(json.dumps(report.to_dict()) + "\n")
        return report
    out.write(
        f"{collection}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.deleted)} deleted, {len(report.unchanged)} unchanged; "
        f"{report.chunks_written} chunks written, {report.chunks_deleted} deleted in {report.seconds:.1f}s\n"
    )
    for name, reason in report.skipped:
        out.write(f"skipped {name}: {reason}\n")
    return report


async def search_command(
    query: str | None = None,
    *,
    queries_file: Path | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    collection: str = DEFAULT_COLLECTION,
    k: int = 5,
    chroma_url: str | None = None,
    model_path: Path | None = None,
    as_json: bool = False,
    embedder: Embedder | None = None,
    out: TextIO | None = None,
) -> int:
    """``hub kb search QUERY`` or ``--queries FILE``; returns an exit status.

    With ``queries_file`` every line is one query and every query gives one
    JSON line, in order (the model is loaded once): the result's ``to_dict()``,
    or ``{"query": ..., "error": ...}`` for a line that is not a valid query,
    so output line N always answers input line N. Returns 1 when any query
    failed, else 0.
    """
    out = out or sys.stdout
    if (query is None) == (queries_file is None):
        raise ValueError("give either a query or a queries file")
    kb = make_knowledge_base(data_dir=data_dir, chroma_url=chroma_url, model_path=model_path, embedder=embedder)
    status = 0
    async with kb:
        if queries_file is not None:
            for line in Path(queries_file).read_text(encoding="utf-8").splitlines():
                try:
                    result = await kb.search(line, k=k, collection=collection)
                except KnowledgeBaseError as err:
                    out.write(json.dumps({"query": line, "error": err.message}) + "\n")
                    status = 1
                    continue
                out.write(json.dumps(result.to_dict()) + "\n")
            return status
        assert query is not None
        result = await kb.search(query, k=k, collection=collection)
    if as_json:
        out.write(json.dumps(result.to_dict()) + "\n")
    else:
        out.write(format_result(result))
    return status


def format_result(result: SearchResult) -> str:
    if not result.hits:
        return f"no results for {result.query!r}\n"
    lines = [f"{len(result.hits)} results for {result.query!r} (confidence {result.confidence:.2f})"]
    for number, hit in enumerate(result.hits, start=1):
        snippet = " ".join(hit.text.split())
        if len(snippet) > 160:
            snippet = snippet[:157] + "..."
        lines.append(f"{number}. {hit.title} > {hit.heading}  [{hit.score:.2f}]  {hit.url}")
        lines.append(f"   {snippet}")
    return "\n".join(lines) + "\n"


async def portal_command(
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
    host: str = "127.0.0.1",
    port: int = 8080,
    site_name: str = "Northwind Outfitters",
    sample: bool = False,
    fake_embedder: bool = False,
    chroma_url: str | None = None,
    model_path: Path | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve the help portal alone (no chat widget), until cancelled."""
    from aiohttp import web

    from knowledge_base import SAMPLE_DIR
    from knowledge_base.portal import InMemoryVoteStore, create_portal_app

    out = out or sys.stdout
    embedder = HashingEmbedder() if fake_embedder else None
    kb = make_knowledge_base(data_dir=data_dir, chroma_url=chroma_url, model_path=model_path, embedder=embedder)
    async with kb:
        if sample:
            await kb.ingest_dir(SAMPLE_DIR, DEFAULT_COLLECTION)
        app = web.Application()
        app.add_subapp(
            PORTAL_PREFIX, create_portal_app(kb, InMemoryVoteStore(), site_name=site_name, widget_enabled=False)
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        out.write(f"help portal on http://{host}:{port}{PORTAL_PREFIX}\n")
        out.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge_base", description="Servicehub knowledge base")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--chroma-url", default=os.environ.get("HUB_CHROMA_URL") or None)
    parser.add_argument("--model-path", type=Path, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="copy and index a folder of Markdown articles")
    ingest.add_argument("path", type=Path)
    ingest.add_argument("--collection", default=DEFAULT_COLLECTION)
    ingest.add_argument("--keep-missing", action="store_true", help="keep articles the folder does not have")
    ingest.add_argument("--json", action="store_true")

    search = commands.add_parser("search", help="search a collection")
    search.add_argument("query", nargs="?")
    search.add_argument("--queries", type=Path, help="one query per line; one JSON line per query")
    search.add_argument("--collection", default=DEFAULT_COLLECTION)
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--json", action="store_true")

    portal = commands.add_parser("portal", help="serve the help portal alone")
    portal.add_argument("--host", default="127.0.0.1")
    portal.add_argument("--port", type=int, default=8080)
    portal.add_argument("--site-name", default="Northwind Outfitters")
    portal.add_argument("--sample", action="store_true", help="ingest the sample articles first")
    portal.add_argument("--fake-embedder", action="store_true", help="no model: hashed bag of words")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    common = {"data_dir": args.data_dir, "chroma_url": args.chroma_url, "model_path": args.model_path}
    try:
        if args.command == "ingest":
            report = asyncio.run(
                ingest_command(
                    args.path,
                    collection=args.collection,
                    delete_missing=not args.keep_missing,
                    as_json=args.json,
                    **common,
                )
            )
            return 1 if report.skipped else 0
        if args.command == "search":
            if (args.query is None) == (args.queries is None):
                parser.error("give a QUERY or --queries FILE")
            return asyncio.run(
                search_command(
                    args.query,
                    queries_file=args.queries,
                    collection=args.collection,
                    k=args.k,
                    as_json=args.json,
                    **common,
                )
            )
        asyncio.run(
            portal_command(
                host=args.host,
                port=args.port,
                site_name=args.site_name,
                sample=args.sample,
                fake_embedder=args.fake_embedder,
                **common,
            )
        )
        return 0
    except KnowledgeBaseError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
