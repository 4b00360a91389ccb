"""Phrasings a team teaches the knowledge base: suggestions an admin accepts.

An article's front matter may list example questions (``questions:``); they
are indexed as extra search vectors and feed the bot's NLU. Two sources
OFFER new ones, and neither changes an article by itself:

- ``bot-vote``: the customer said the bot's answer from an article helped
  (the action server's ``{"kb_feedback": {...}}`` payload, through
  ``HubService.suggest_phrasing``): their question, unless the article
  already has it as a question or as its title.
- ``agent-link``: after a handoff, an agent's reply links to a help-centre
  article: the customer's question before the handoff, written in the
  reply's own transaction (``HubService.reply``).

The same phrasing of the same article again counts a vote instead of a
second row. An admin lists them (viewer and up, ``hub.api.kb_suggestions``),
accepts one (the text is appended to the article's ``questions`` and
re-indexed) or rejects it; both decisions are audited in their transaction.
Only the question text is kept of the customer: no contact id, and the
conversation link goes NULL (or a lone undecided suggestion goes) when the
contact is erased (``hub.conversations.contacts.erase_contact``).

Why this module runs past ~400 lines: both sources, the vote counting that
merges repeats and the admin's accept/reject share one dedup rule and one
table; split, the rule would be written twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard, TypeVar

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import audit, keys
from hub.audit import Actor
from hub.errors import Conflict, InvalidInput, NotFound, Unavailable
from hub.models import AuthorKind, Message, MessageKind, _Serialisable
from hub.storage import Database, insert_ignore
from hub.storage.schema import kb_phrasing_suggestions, messages
from knowledge_base import Article, KnowledgeBase, KnowledgeBaseError
from knowledge_base import InvalidInput as KBInvalidInput
from knowledge_base.articles import MAX_QUESTION_CHARS
from knowledge_base.urls import DEFAULT_COLLECTION, PORTAL_PREFIX, RESERVED_COLLECTION_NAMES

log = logging.getLogger(__name__)

T = TypeVar("T")

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
BOT_VOTE, AGENT_LINK = "bot-vote", "agent-link"
STATUSES = (PENDING, ACCEPTED, REJECTED)
# An agent's reply linking more articles than this is a list, not an answer.
MAX_LINKS = 5
# How far back before a handoff the customer's question is looked for.
MAX_CUSTOMER_MESSAGES = 5
# Shorter customer messages without a "?" are replies to the bot ("yes",
# "ok thanks"), not the question it could not answer.
MIN_QUESTION_WORDS = 3

_table = kb_phrasing_suggestions
_NAME = r"[a-z0-9][a-z0-9_-]{0,99}"  # knowledge_base.articles.NAME_PATTERN
_ARTICLE_PATH = re.compile(
    rf"{re.escape(PORTAL_PREFIX)}/(?:(?P<collection>{_NAME})/)?articles/(?P<article_id>{_NAME})(?![A-Za-z0-9_-])"
)
# What may sit right before a link's path: the public URL, or nothing.
_URL_HEAD = re.compile(r"[^\s<>()\[\]{}\"'|,;]*$")


@dataclass(frozen=True, slots=True)
class Suggestion(_Serialisable):
    id: int
    collection: str
    article_id: str
    text: str
    source: str
    votes: int
    conversation_id: int | None
    suggested_by: int | None
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: int | None


def _suggestion(row: Any) -> Suggestion:
    return Suggestion(
        id=row.id,
        collection=row.collection,
        article_id=row.article_id,
        text=row.text,
        source=row.source,
        votes=row.votes,
        conversation_id=row.conversation_id,
        suggested_by=row.suggested_by,
        status=row.status,
        created_at=row.created_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
    )


def clean(text: str) -> str:
    return " ".join(text.split())


def normalise(text: str) -> str:
    """The form two phrasings are compared in: whitespace collapsed, case folded."""
    return clean(text).casefold()


def known_phrasings(article: Article) -> set[str]:
    return {normalise(article.title), *(normalise(q) for q in article.questions)}


# --- finding what to suggest (pure, and inside the reply's transaction) --------


def article_links(text: str, public_url: str) -> list[tuple[str, str]]:
    """``(collection, article_id)`` of the help-centre articles ``text`` links
    to, in order, without repeats: ``{public_url}/help/articles/<id>``,
    ``/help/<collection>/articles/<id>`` and the same paths without the host.
    Links to other sites are not the help centre's."""
    base = public_url.rstrip("/").casefold()
    hosts = {"", base, base.split("://", 1)[-1]}
    found: list[tuple[str, str]] = []
    for match in _ARTICLE_PATH.finditer(text):
        # Only as far back as the longest host and one more character: a
        # longer run of URL characters is no host of ours either.
        window = text[max(0, match.start() - len(base) - 1) : match.start()]
        head = _URL_HEAD.search(window)
        if head is None or head.group().casefold() not in hosts:
            continue
        collection = match.group("collection") or DEFAULT_COLLECTION
        link = (collection, match.group("article_id"))
        if collection not in RESERVED_COLLECTION_NAMES and link not in found:
            found.append(link)
    return found[:MAX_LINKS]


def _asks_something(text: str) -> bool:
    return 0 < len(text) <= MAX_QUESTION_CHARS and ("?" in text or len(text.split()) >= MIN_QUESTION_WORDS)


def question_before_handoff(conn: Connection, conversation_id: int, *, before_id: int) -> str | None:
    """The question the bot could not answer: the customer's latest message
    before the conversation's latest handoff (the ``handler-changed`` event
    to ``human`` that every handoff records), skipping short replies to the
    bot. None when the conversation was never handed off."""
    handoff_id = conn.execute(
        sa.select(sa.func.max(messages.c.id)).where(
            messages.c.conversation_id == conversation_id,
            messages.c.kind == MessageKind.EVENT.value,
            messages.c.id < before_id,
            messages.c.meta["event"].as_string() == "handler-changed",
            messages.c.meta["handler"].as_string() == "human",
        )
    ).scalar()
    if handoff_id is None:
        return None
    bodies = conn.execute(
        sa.select(messages.c.body)
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.kind == MessageKind.MESSAGE.value,
            messages.c.author_kind == AuthorKind.CUSTOMER.value,
            messages.c.id < handoff_id,
        )
        .order_by(messages.c.id.desc())
        .limit(MAX_CUSTOMER_MESSAGES)
    ).scalars()
    return next((text for text in map(clean, bodies) if _asks_something(text)), None)


def bot_feedback(payloads: Iterable[dict[str, Any]]) -> tuple[str, str, str] | None:
    """``(collection, article_id, query)`` of a helpful vote in one bot turn's
    custom payloads (``{"kb_feedback": {"helpful": true, ...}}``), else None."""
    for payload in payloads:
        feedback = payload.get("kb_feedback")
        if not isinstance(feedback, dict) or feedback.get("helpful") is not True:
            continue
        collection = feedback.get("collection") or DEFAULT_COLLECTION
        article_id, query = feedback.get("article_id"), feedback.get("query")
        if _text(collection) and _text(article_id) and _text(query):
            return collection, article_id, clean(query)
    return None


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


# --- transactions ----------------------------------------------------------------


def record(
    conn: Connection,
    *,
    collection: str,
    article_id: str,
    text: str,
    source: str,
    conversation_id: int | None,
    suggested_by: int | None,
    now: datetime,
) -> int | None:
    """A pending suggestion, or one more vote for the same phrasing of the
    article (whatever its status; a repeat from the conversation that last
    suggested it counts once). None when ``text`` cannot be a phrasing."""
    text = clean(text)
    if not text or len(text) > MAX_QUESTION_CHARS:
        return None  # the knowledge base would refuse it on accept
    stmt = insert_ignore(conn, _table).values(
        collection=collection,
        article_id=article_id,
        text=text,
        normalised_text=normalise(text),
        source=source,
        votes=1,
        conversation_id=conversation_id,
        suggested_by=suggested_by,
        status=PENDING,
        created_at=now,
    )
    repeat = _table.c.conversation_id == stmt.excluded.conversation_id
    stmt = stmt.on_conflict_do_update(
        index_elements=[_table.c.collection, _table.c.article_id, _table.c.normalised_text],
        set_={
            "votes": sa.case((repeat, _table.c.votes), else_=_table.c.votes + 1),
            "conversation_id": stmt.excluded.conversation_id,
        },
    )
    return conn.execute(stmt.returning(_table.c.id)).scalar_one()


def suggest_from_agent_reply(conn: Connection, reply: Message, *, public_url: str) -> int:
    """In the agent's reply transaction: the customer's question before the
    handoff, as a phrasing of each article the reply links to. Whether the
    articles exist is checked on accept. Returns how many were recorded."""
    links = article_links(reply.body, public_url)
    if not links:
        return 0
    question = question_before_handoff(conn, reply.conversation_id, before_id=reply.id)
    if question is None:
        return 0
    recorded = [
        record(
            conn,
            collection=collection,
            article_id=article_id,
            text=question,
            source=AGENT_LINK,
            conversation_id=reply.conversation_id,
            suggested_by=reply.author_id,
            now=reply.created_at,
        )
        for collection, article_id in links
    ]
    return sum(1 for suggestion_id in recorded if suggestion_id is not None)


def get_suggestion(conn: Connection, suggestion_id: int) -> Suggestion:
    row = conn.execute(sa.select(_table).where(_table.c.id == suggestion_id)).first()
    if row is None:
        raise NotFound(f"suggestion {suggestion_id} does not exist")
    return _suggestion(row)


def list_suggestions(
    conn: Connection,
    *,
    status: str | None = PENDING,
    collection: str | None = None,
    article_id: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Suggestion]:
    """Newest first; ``status`` None lists every status."""
    stmt = sa.select(_table).order_by(_table.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(_table.c.status == status)
    if collection:
        stmt = stmt.where(_table.c.collection == collection)
    if article_id:
        stmt = stmt.where(_table.c.article_id == article_id)
    if after_id is not None:
        stmt = stmt.where(_table.c.id < after_id)
    return [_suggestion(row) for row in conn.execute(stmt)]


def decide(conn: Connection, suggestion_id: int, status: str, *, actor: Actor, now: datetime) -> Suggestion:
    """Mark a pending suggestion accepted or rejected, with its audit row.
    NotFound when it is gone, Conflict when it was decided already."""
    changed = conn.execute(
        sa.update(_table)
        .where(_table.c.id == suggestion_id, _table.c.status == PENDING)
        .values(status=status, decided_at=now, decided_by=actor.user_id)
    ).rowcount
    suggestion = get_suggestion(conn, suggestion_id)
    if not changed:
        raise Conflict(f"suggestion {suggestion_id} is already {suggestion.status}")
    action = f"kb.suggestion.{'accept' if status == ACCEPTED else 'reject'}"
    # Ids only: the text is a customer's words.
    details = {"collection": suggestion.collection, "article_id": suggestion.article_id}
    audit.record(conn, audit.Audit(actor, action, "kb_suggestion", suggestion_id, details))
    return suggestion


# --- the service -------------------------------------------------------------------


async def _kb_call(work: Awaitable[T]) -> T:
    try:
        return await work
    except KBInvalidInput as err:
        raise InvalidInput(str(err)) from err
    except KnowledgeBaseError as err:
        raise Unavailable(f"knowledge base error: {err}") from err


class PhrasingSuggestions:
    """What ``HubService`` and the API call; ``knowledge_base`` None: the KB
    is disabled, so nothing can be accepted and bot votes go unchecked."""

    def __init__(self, db: Database, *, public_url: str, knowledge_base: KnowledgeBase | None) -> None:
        self.db = db
        self.public_url = public_url
        self.knowledge_base = knowledge_base
        # Accepting rewrites the whole article from the copy it read: one at a
        # time, or two accepts for the same article would lose one question.
        self._accepting = asyncio.Lock()

    def from_agent_reply(self, conn: Connection, reply: Message) -> int:
        """Inside the reply's transaction (``HubService.reply``)."""
        return suggest_from_agent_reply(conn, reply, public_url=self.public_url)

    async def from_bot_feedback(
        self, payloads: Iterable[dict[str, Any]], *, conversation_id: int, now: datetime
    ) -> int | None:
        """A helpful vote in a bot turn: the question, unless the article
        already has it. The knowledge base failing skips the vote: it is
        worth less than the rest of the customer's turn."""
        found = bot_feedback(payloads)
        if found is None:
            return None
        collection, article_id, query = found
        if self.knowledge_base is not None:
            try:
                article = await self.knowledge_base.get_article(collection, article_id)
            except KnowledgeBaseError:
                log.warning("phrasing vote for %s/%s skipped", collection, article_id, exc_info=True)
                return None
            if article is None or normalise(query) in known_phrasings(article):
                return None
        return await self.db.write(
            lambda conn: record(
                conn,
                collection=collection,
                article_id=article_id,
                text=query,
                source=BOT_VOTE,
                conversation_id=conversation_id,
                suggested_by=None,
                now=now,
            )
        )

    async def list(self, **filters: Any) -> list[Suggestion]:
        return await self.db.read(lambda conn: list_suggestions(conn, **filters))

    async def accept(self, suggestion_id: int, *, actor: Actor, now: datetime) -> Suggestion:
        """Append the text to the article's ``questions`` (re-indexed at once)
        and mark the suggestion accepted. The article is written first: after
        a crash in between, accepting again finds the question there and only
        marks it. NotFound: the suggestion or the article is gone; Conflict:
        already decided."""
        kb = self.knowledge_base
        if kb is None:
            raise Unavailable("the knowledge base is not enabled (HUB_KB_ENABLED=false)")
        async with self._accepting:
            suggestion = await self.db.read(get_suggestion, suggestion_id)
            if suggestion.status != PENDING:
                raise Conflict(f"suggestion {suggestion_id} is already {suggestion.status}")
            article = await _kb_call(kb.get_article(suggestion.collection, suggestion.article_id))
            if article is None:
                raise NotFound(f"article {suggestion.collection}/{suggestion.article_id} does not exist")
            if normalise(suggestion.text) not in known_phrasings(article):
                await _kb_call(
                    kb.upsert_article(
                        article.collection,
                        article.id,
                        title=article.title,
                        body_markdown=article.body_markdown,
                        tags=article.tags,
                        locale=article.locale,
                        product=article.product,
                        category=article.category,
                        questions=[*article.questions, suggestion.text],
                    )
                )
            return await self.db.write(decide, suggestion_id, ACCEPTED, actor=actor, now=now)

    async def reject(self, suggestion_id: int, *, actor: Actor, now: datetime) -> Suggestion:
        return await self.db.write(decide, suggestion_id, REJECTED, actor=actor, now=now)


async def suggestions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context, after the service's: the service records suggestions
    (agent replies, bot votes) once this is wired in."""
    service = app[keys.SERVICE]
    phrasings = PhrasingSuggestions(
        app[keys.DATABASE], public_url=app[keys.SETTINGS].public_url, knowledge_base=app.get(keys.KNOWLEDGE_BASE)
    )
    app[keys.PHRASINGS] = phrasings
    service.use_phrasings(phrasings)
    try:
        yield
    finally:
        service.use_phrasings(None)
