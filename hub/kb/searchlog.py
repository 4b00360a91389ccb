"""The knowledge-base search log: what customers asked and whether the help centre answered.

Two sources feed ``kb_search_log`` for the content-gaps report
(``hub.reports.gaps``):

- **portal**: the portal reports each search and the article opened from its
  results through its ``SearchSink`` (``knowledge_base.portal.searches``);
  :class:`SearchLog` queues them and writes them in batches (one write a
  second at most), so a search page never waits on the database. A row
  holds the query, the confidence, the best hit and a random token of the
  search; no IP, no cookie, no contact.
- **bot**: when the hub stores the bot's reply, its ``meta.decision`` says
  what the bot did with the customer's message: the row is written in that
  reply's own transaction (a ``MessageQueued`` transaction hook), with the
  customer's message as the query and the conversation id, so erasing the
  contact erases the row (the foreign key cascades). A turn of several
  replies logs once (unique conversation and message).

Searches of ``GET /api/v1/kb/search`` are not logged: the bot's action
server looks up through it, so its lookups would count twice (they are
logged with their outcome when the reply is stored, above).

Rows older than ``HUB_KB_SEARCH_LOG_DAYS`` are deleted every hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.aio import wait_event
from hub.events import Clock, MessageQueued
from hub.storage import Database, insert_ignore
from hub.storage.schema import kb_search_log, messages
from knowledge_base.portal.searches import PortalClick, PortalSearch

log = logging.getLogger(__name__)

QUERY_MAX = 300
FLUSH_SECONDS = 1.0
FLUSH_ROWS = 500  # a burst larger than this flushes at once
MAX_PENDING = 20_000  # beyond this (the database is down), searches are dropped, not kept in memory
SWEEP_SECONDS = 3600.0

# The bot's decision (bot/actions: answer.py, handoff.py) -> the logged outcome.
BOT_OUTCOMES = {
    "answer": "answered",
    "clarify": "clarified",
    "topics": "no_results",  # not even a near miss: the bot said what it can help with
    "offer_human": "no_results",  # asked once, still no answer
    "handoff": "handed_off",
}
ANSWERED = "answered"


def normalise_query(text: str) -> str:
    """Whitespace collapsed, capped at ``QUERY_MAX`` characters."""
    return " ".join(text.split())[:QUERY_MAX]


def bot_row(meta: dict[str, Any], query: str) -> dict[str, Any] | None:
    """The log row of a bot reply's ``meta``, or None when the bot did not
    consult the knowledge base (a handoff on an urgent message or a request
    for a person carries no confidence: it is not a content gap)."""
    decision = meta.get("decision")
    if isinstance(decision, dict):
        outcome = BOT_OUTCOMES.get(str(decision.get("action")))
        confidence = decision.get("confidence", meta.get("confidence"))
        if outcome is None or (outcome == "handed_off" and confidence is None):
            return None
        article_id = decision.get("article_id") or next(iter(decision.get("article_ids") or []), None)
        collection = decision.get("collection")
    elif meta.get("fallback"):  # Rasa down: the hub answered from the knowledge base itself
        outcome, confidence, article_id, collection = ANSWERED, meta.get("confidence"), None, None
    else:
        return None
    hits = meta.get("kb_hits") or []
    if article_id is None and hits and isinstance(hits[0], dict):
        article_id = hits[0].get("article_id")
    if not collection and hits and isinstance(hits[0], dict):
        collection = hits[0].get("collection")
    return {
        "source": "bot",
        "collection": str(collection or "default")[:100],
        "query": normalise_query(query),
        "confidence": float(confidence) if confidence is not None else None,
        "article_id": str(article_id)[:100] if article_id else None,
        "outcome": outcome,
    }


def log_bot_reply(conn: Connection, event: MessageQueued, now: datetime) -> None:
    """In the transaction that stores a bot reply: log the lookup it answers."""
    if event.author_kind != "bot":
        return
    meta = conn.execute(sa.select(messages.c.meta).where(messages.c.id == event.message_id)).scalar()
    if not isinstance(meta, dict) or not isinstance(meta.get("in_reply_to"), int):
        return
    question = conn.execute(sa.select(messages.c.body).where(messages.c.id == meta["in_reply_to"])).scalar()
    if not question:
        return
    row = bot_row(meta, str(question))
    if row is None:
        return
    conn.execute(
        insert_ignore(conn, kb_search_log)
        .values(**row, created_at=now, conversation_id=event.conversation_id, message_id=meta["in_reply_to"])
        .on_conflict_do_nothing(index_elements=["conversation_id", "message_id"])
    )


def sweep(conn: Connection, before: datetime) -> int:
    return conn.execute(sa.delete(kb_search_log).where(kb_search_log.c.created_at < before)).rowcount or 0


def _write(conn: Connection, rows: list[dict[str, Any]], clicks: list[PortalClick]) -> None:
    if rows:
        conn.execute(sa.insert(kb_search_log), rows)
    for click in clicks:  # the first article opened from a search counts
        conn.execute(
            sa.update(kb_search_log)
            .where(
                kb_search_log.c.search_token == click.token,
                kb_search_log.c.collection == click.collection,
                kb_search_log.c.clicked_article_id.is_(None),
            )
            .values(clicked_article_id=click.article_id[:100])
        )


class SearchLog:
    """The portal's ``SearchSink`` on the hub's database (batched), the bot's
    transaction hook, and the retention sweep."""

    def __init__(self, db: Database, clock: Clock, *, days: int) -> None:
        self.db = db
        self.clock = clock
        self.days = days
        self._rows: list[dict[str, Any]] = []
        self._clicks: list[PortalClick] = []
        self._wake = asyncio.Event()

    # -- the portal's sink (on the event loop: never blocks) --

    def searched(self, search: PortalSearch) -> None:
        if len(self._rows) >= MAX_PENDING:
            return
        self._rows.append(
            {
                "created_at": self.clock.now(),
                "source": "portal",
                "collection": search.collection[:100],
                "query": normalise_query(search.query),
                "confidence": float(search.confidence),
                "article_id": search.article_id[:100] if search.article_id else None,
                "outcome": "results" if search.results else "no_results",
                "search_token": search.token[:32],
                "clicked_article_id": None,
                "conversation_id": None,
                "message_id": None,
            }
        )
        if len(self._rows) >= FLUSH_ROWS:
            self._wake.set()

    def clicked(self, click: PortalClick) -> None:
        if len(self._clicks) < MAX_PENDING:
            self._clicks.append(click)

    # -- the bot's transaction hook --

    def bot_reply_tx(self, conn: Connection, event: MessageQueued) -> None:
        log_bot_reply(conn, event, self.clock.now())

    # -- writing and sweeping --

    async def flush(self) -> int:
        """Write what is queued; returns the rows written."""
        rows, clicks = self._rows, self._clicks
        if not rows and not clicks:
            return 0
        self._rows, self._clicks = [], []
        await self.db.write(_write, rows, clicks)
        return len(rows)

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete the rows older than the retention; returns how many."""
        before = (now or self.clock.now()) - timedelta(days=self.days)
        return await self.db.write(sweep, before)

    async def run(self) -> None:
        """Write what this instance queued, every ``FLUSH_SECONDS`` or sooner when many wait."""
        while True:
            await wait_event(self._wake, FLUSH_SECONDS)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("search log: write failed; these searches are not logged")

    async def expire(self) -> None:
        """The retention sweep (one instance runs it: ``hub.leases.every``)."""
        deleted = await self.sweep()
        if deleted:
            log.info("search log: %d rows past %d days deleted", deleted, self.days)


class LazySearchSink:
    """The portal is built before the database opens; searches before then are dropped."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def searched(self, search: PortalSearch) -> None:
        searches = self._app.get(keys.SEARCH_LOG)
        if searches is not None:
            searches.searched(search)

    def clicked(self, click: PortalClick) -> None:
        searches = self._app.get(keys.SEARCH_LOG)
        if searches is not None:
            searches.clicked(click)


async def search_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context, after the service's: the log, its writer task and the bot hook."""
    searches = SearchLog(app[keys.DATABASE], app[keys.CLOCK], days=app[keys.SETTINGS].kb_search_log_days)
    app[keys.SEARCH_LOG] = searches
    remove_hook = app[keys.SERVICE].tx_hooks.add(MessageQueued, searches.bot_reply_tx)
    task = asyncio.create_task(searches.run(), name="kb-search-log")
    expiring = asyncio.create_task(
        app[keys.SERVICE].periodically("kb-search-log-retention", SWEEP_SECONDS, searches.expire),
        name="kb-search-log-retention",
    )
    try:
        yield
    finally:
        remove_hook()
        for running in (task, expiring):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        try:
            await searches.flush()
        except Exception:
            log.exception("search log: last write failed")
