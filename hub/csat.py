"""CSAT: a one-question satisfaction survey on resolve, on the customer's own channel.

When a conversation is resolved (a ticket's resolve, or a conversation
resolved without one: both produce ONE ``ConversationUpdated`` with
``status: resolved``), a ``csat_surveys`` row and the outbound survey message
(the outbox row) are written in the resolve's transaction (STYLE habit 13):
a crash between the two cannot lose the survey nor send it twice. A ticket
gets one survey at most (``ticket_id`` is unique, an ``INSERT ... ON
CONFLICT DO NOTHING``); a conversation without a ticket gets none while it
already has one open (unanswered, unexpired).

The survey goes out only on channels that can take the answer back
(``ANSWERABLE``); its message carries ``meta.csat`` (survey id, expiry) for
the channel to render (web chat: rating buttons).

A survey has a ``Scale`` (``kind``, ``hub.survey_scales``): CSAT, 1-5, sent on resolve; NPS, 0-10,
"how likely are you to recommend us", sent after a CSAT answer when
``HUB_NPS_EVERY_DAYS`` is set (``hub.nps`` decides when, through
``queue_survey`` and the same answering below). Their rows share
``csat_surveys``, so every channel's answering (web chat buttons, an SMS
number, e-mail links) serves both.

``answer`` records a rating once: a conditional update, so two answers
racing record one and the other is told ``already-answered``; an expired
survey is refused (``expired``). A recorded rating lands on the timeline (a
``csat-rated`` system event, mirrored to the ticket's Slack thread through
``SystemEventAdded``) and on the ticket (``TicketChanged`` with
``csat_rating``: the Slack card is rebuilt and shows it). ``comment`` adds
the optional comment to an answered survey, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection, Row

from hub import keys
from hub.conversations import consent
from hub.conversations import transactions as conversations_tx
from hub.errors import Forbidden, InvalidInput, NotFound
from hub.events import Clock, ConversationUpdated, MessageReceived, SystemEventAdded, TicketChanged
from hub.models import AuthorKind, Conversation
from hub.storage import insert_ignore
from hub.storage.schema import bot_jobs, conversations, csat_surveys, identities, tickets
from hub.survey_scales import CSAT, SCALES, Scale, nps_group
from hub.txhooks import After, run_afters

if TYPE_CHECKING:
    from hub.conversations.service import HubService
    from hub.csat_links import LinkSigner
    from hub.storage import Database

# Channels whose customers can answer (web chat: buttons; SMS: a digit;
# the fake test channel); e-mail too when its links can be signed
# (``hub.csat_links``: HUB_EMAIL_REPLY_SECRET set).
ANSWERABLE = frozenset({"webchat", "sms", "fake"})

COMMENT_MAX = 2000


class Outcome(StrEnum):
    RECORDED = "recorded"
    ALREADY_ANSWERED = "already-answered"  # "Thanks, we already have your rating"
    EXPIRED = "expired"


# What a channel tells the customer for each outcome.
REPLIES = {
    Outcome.RECORDED: "Thanks for your feedback!",
    Outcome.ALREADY_ANSWERED: "Thanks, we already have your rating.",
    Outcome.EXPIRED: "Sorry, this survey has closed.",
}


@dataclass(frozen=True, slots=True)
class Survey:
    id: int
    conversation_id: int
    ticket_id: int | None
    channel: str
    sent_at: datetime
    expires_at: datetime
    rating: int | None
    comment: str | None
    answered_at: datetime | None

    kind: str  # CSAT or NPS: ``scale``

    def open_at(self, now: datetime) -> bool:
        return self.answered_at is None and now < self.expires_at

    @property
    def scale(self) -> Scale:
        return SCALES[self.kind]


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    survey: Survey

    @property
    def reply(self) -> str:
        return REPLIES[self.outcome]


def _survey(row: Row[Any]) -> Survey:
    return Survey(**{c.name: getattr(row, c.name) for c in csat_surveys.c})


def get_survey(conn: Connection, survey_id: int) -> Survey:
    row = conn.execute(sa.select(csat_surveys).where(csat_surveys.c.id == survey_id)).first()
    if row is None:
        raise NotFound(f"survey {survey_id} not found")
    return _survey(row)


def open_survey_of_conversation(
    conn: Connection, conversation_id: int, now: datetime, kind: str = CSAT.kind
) -> Survey | None:
    """The conversation's latest survey of ``kind`` still waiting for its answer."""
    row = conn.execute(
        sa.select(csat_surveys)
        .where(
            csat_surveys.c.conversation_id == conversation_id,
            csat_surveys.c.kind == kind,
            csat_surveys.c.answered_at.is_(None),
            csat_surveys.c.expires_at > now,
        )
        .order_by(csat_surveys.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _survey(row)


def question_for(channel: str, survey: Survey, links: LinkSigner | None) -> str:
    scale = survey.scale
    if channel == "sms":
        return scale.text_sms
    if channel == "email" and links is not None:
        return links.email_text(scale.text, survey)
    return scale.text


def surveyable(conversation: Conversation, links: LinkSigner | None) -> bool:
    """Whether the customer can answer a survey on the conversation's channel."""
    answerable = ANSWERABLE | ({"email"} if links is not None else set())
    return conversation.channel in answerable and conversation.identity_id is not None


def queue_survey(
    conn: Connection,
    conversation: Conversation,
    scale: Scale,
    *,
    ticket_id: int | None,
    expiry: timedelta,
    now: datetime,
    links: LinkSigner | None,
) -> tuple[Survey, conversations_tx.Queued] | None:
    """The survey row and its outbound message, in the caller's transaction
    (None: this ticket was surveyed already)."""
    expires_at = now + expiry
    values = {
        "conversation_id": conversation.id,
        "ticket_id": ticket_id,
        "channel": conversation.channel,
        "sent_at": now,
        "expires_at": expires_at,
        "kind": scale.kind,
    }
    survey_id = conn.execute(
        insert_ignore(conn, csat_surveys).values(**values).on_conflict_do_nothing().returning(csat_surveys.c.id)
    ).scalar()
    if survey_id is None:
        return None
    survey = get_survey(conn, survey_id)
    queued = conversations_tx.queue_outbound(
        conn,
        conversation.id,
        question_for(conversation.channel, survey, links),
        author_kind=AuthorKind.SYSTEM,
        to=conversations_tx.recipient_address(conn, conversation),
        idempotency_key=f"{scale.kind}:{survey_id}",
        meta={
            "csat": {
                "survey_id": survey_id,
                "expires_at": expires_at.isoformat(),
                "kind": scale.kind,
                "low": scale.low,
                "high": scale.high,
            }
        },
    )
    return survey, queued


def send_survey(
    conn: Connection,
    conversation_id: int,
    *,
    expiry: timedelta,
    now: datetime,
    links: LinkSigner | None = None,
) -> tuple[Survey, conversations_tx.Queued] | None:
    """In the resolve's transaction: the CSAT survey row and its outbound message
    (None: not surveyed here, or already surveyed)."""
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    if not surveyable(conversation, links):
        return None
    ticket_id = conn.execute(
        sa.select(tickets.c.id).where(tickets.c.conversation_id == conversation_id).order_by(tickets.c.id.desc())
    ).scalar()
    if ticket_id is None and open_survey_of_conversation(conn, conversation_id, now) is not None:
        return None
    return queue_survey(conn, conversation, CSAT, ticket_id=ticket_id, expiry=expiry, now=now, links=links)


def answer(
    conn: Connection, survey_id: int, rating: int, comment: str | None, *, now: datetime
) -> tuple[Answer, list[Any]]:
    """Record ``rating`` (on the survey's scale: CSAT 1-5, NPS 0-10) and the
    optional ``comment`` once; returns the outcome and the events to run hooks
    for (a recorded answer's timeline line and, for CSAT, the ticket change)."""
    scale = get_survey(conn, survey_id).scale
    if rating not in scale:
        raise InvalidInput(f"rating must be a whole number from {scale.low} to {scale.high}")
    comment = _clean(comment)
    recorded = conn.execute(
        sa.update(csat_surveys)
        .where(
            csat_surveys.c.id == survey_id,
            csat_surveys.c.answered_at.is_(None),
            csat_surveys.c.expires_at > now,
        )
        .values(rating=rating, comment=comment, answered_at=now)
    ).rowcount
    survey = get_survey(conn, survey_id)
    if not recorded:
        outcome = Outcome.ALREADY_ANSWERED if survey.answered_at is not None else Outcome.EXPIRED
        return Answer(outcome, survey), []
    conversation = conversations_tx.get_conversation(conn, survey.conversation_id)
    said = (
        f"Customer rated the conversation {rating}/5"
        if scale is CSAT
        else f"Customer would recommend us {rating}/10 ({nps_group(rating)})"
    )
    event = f"{scale.kind}-rated"
    line = conversations_tx.add_event(
        conn,
        conversation,
        said + (f": “{comment}”" if comment else "."),
        event=event,
        meta={"survey_id": survey.id, "rating": rating, "ticket_id": survey.ticket_id},
        now=now,
    )
    events: list[Any] = [
        SystemEventAdded(
            message_id=line.id, conversation_id=conversation.id, event=event, ticket_id=survey.ticket_id, at=now
        )
    ]
    if survey.ticket_id is not None and scale is CSAT:
        events.append(
            TicketChanged(
                ticket_id=survey.ticket_id,
                conversation_id=conversation.id,
                changes={"csat_rating": rating},
                at=now,
            )
        )
    return Answer(Outcome.RECORDED, survey), events


def add_comment(conn: Connection, survey_id: int, comment: str, *, now: datetime) -> tuple[Answer, list[Any]]:
    """The optional comment after the rating (web chat, the e-mail page):
    once, while the survey has not expired."""
    text = _clean(comment)
    if not text:
        raise InvalidInput("comment is empty")
    survey = get_survey(conn, survey_id)
    if survey.answered_at is None:
        raise InvalidInput("rate first, then comment")
    added = conn.execute(
        sa.update(csat_surveys)
        .where(csat_surveys.c.id == survey_id, csat_surveys.c.comment.is_(None), csat_surveys.c.expires_at > now)
        .values(comment=text)
    ).rowcount
    if not added:
        outcome = Outcome.ALREADY_ANSWERED if survey.comment is not None else Outcome.EXPIRED
        return Answer(outcome, survey), []
    conversation = conversations_tx.get_conversation(conn, survey.conversation_id)
    kind = survey.scale.kind
    line = conversations_tx.add_event(
        conn,
        conversation,
        f"Customer's comment on their {survey.rating}/{survey.scale.high} rating: “{text}”",
        event=f"{kind}-commented",
        meta={"survey_id": survey.id, "ticket_id": survey.ticket_id},
        now=now,
    )
    event = SystemEventAdded(
        message_id=line.id,
        conversation_id=conversation.id,
        event=f"{kind}-commented",
        ticket_id=survey.ticket_id,
        at=now,
    )
    return Answer(Outcome.RECORDED, get_survey(conn, survey_id)), [event]


def _clean(comment: str | None) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise InvalidInput("comment must be text")
    text = comment.strip()
    if len(text) > COMMENT_MAX:
        raise InvalidInput(f"comment is longer than {COMMENT_MAX} characters")
    return text or None


def rating_of_ticket(conn: Connection, ticket_id: int) -> int | None:
    """The ticket's CSAT rating (for its card), if answered."""
    value = conn.execute(sa.select(csat_surveys.c.rating).where(csat_surveys.c.ticket_id == ticket_id)).scalar()
    return None if value is None else int(value)


class CsatService:
    """Sends the survey on resolve (a tx hook) and takes the answers."""

    def __init__(
        self,
        db: Database,
        service: HubService,
        *,
        expiry: timedelta,
        clock: Clock | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self.db = db
        self.service = service
        self.expiry = expiry
        self.links = links  # e-mail's signed rating links; None: no e-mail surveys
        self.clock = clock or Clock()
        self._removers: list[Callable[[], None]] = []

    def start(self) -> None:
        self._removers = [
            self.service.tx_hooks.add(ConversationUpdated, self._resolved_tx),
            self.service.tx_hooks.add(MessageReceived, self._digit_tx),
        ]
        self.service.attach_surveys(self.answer_from)

    def stop(self) -> None:
        for remove in self._removers:
            remove()
        if self._removers:
            self.service.attach_surveys(None)
        self._removers = []

    def _digit_tx(self, conn: Connection, event: MessageReceived) -> After | None:
        """By text, in the ingest transaction: a bare number on the open survey's
        scale (the latest unexpired one: CSAT 1-5, NPS 0-10) is its answer, not
        a question for the bot (its bot job is dropped), thanked (or refused
        politely) by text."""
        rating = consent.survey_digit(event.channel, event.body)
        now = self.clock.now()
        survey_id = consent.survey_awaits(conn, event.conversation_id, now, rating) if rating is not None else None
        if rating is None or survey_id is None:
            return None
        conn.execute(sa.delete(bot_jobs).where(bot_jobs.c.message_id == event.message_id))
        result, events = answer(conn, survey_id, rating, None, now=now)
        conversation = conversations_tx.get_conversation(conn, event.conversation_id)
        # The thanks first: what the answer causes (the NPS question) follows it.
        queued = conversations_tx.queue_outbound(
            conn,
            conversation.id,
            result.reply,
            author_kind=AuthorKind.SYSTEM,
            to=conversations_tx.recipient_address(conn, conversation),
            idempotency_key=f"csat-reply:{event.message_id}",
        )
        afters: list[After] = []
        if not queued.repeated:
            afters.extend(self.service.queued_tx(conn, queued, AuthorKind.SYSTEM))
        for follow in events:
            afters.extend(self.service.tx_hooks.run(conn, follow))

        async def after() -> None:
            for follow in events:
                await self.service.bus.publish(follow)
            await run_afters(afters)

        return after

    async def answer_from(
        self, channel: str, address: str, survey_id: int, rating: int | None, comment: str | None
    ) -> tuple[str, str]:
        """A channel's answer (``ChannelHost.answer_survey``): only for a
        survey sent to that address on that channel."""

        def sent_to(conn: Connection) -> bool:
            row = conn.execute(
                sa.select(identities.c.address)
                .select_from(csat_surveys)
                .join(conversations, conversations.c.id == csat_surveys.c.conversation_id)
                .join(identities, identities.c.id == conversations.c.identity_id)
                .where(csat_surveys.c.id == survey_id, csat_surveys.c.channel == channel)
            ).first()
            return row is not None and row.address == address

        if not await self.db.read(sent_to):
            raise Forbidden("that survey is not yours")
        if rating is None:
            if comment is None:
                raise InvalidInput("a rating or a comment is needed")
            result = await self.comment(survey_id, comment)
        else:
            result = await self.answer(survey_id, rating, comment)
        return result.outcome.value, result.reply

    def _resolved_tx(self, conn: Connection, event: ConversationUpdated) -> After | None:
        if event.changes.get("status") != "resolved":
            return None
        sent = send_survey(conn, event.conversation_id, expiry=self.expiry, now=self.clock.now(), links=self.links)
        return None if sent is None else self.sent_tx(conn, sent[1])

    def sent_tx(self, conn: Connection, queued: conversations_tx.Queued) -> After:
        """In a survey's transaction: the hooks of its outbound message, and what runs after the commit."""
        afters = self.service.queued_tx(conn, queued, AuthorKind.SYSTEM)

        async def after() -> None:
            await run_afters(afters)

        return after

    async def answer(self, survey_id: int, rating: int, comment: str | None = None) -> Answer:
        return await self._write(answer, survey_id, rating, comment)

    async def comment(self, survey_id: int, text: str) -> Answer:
        return await self._write(add_comment, survey_id, text)

    async def survey(self, survey_id: int) -> Survey:
        """The survey (``NotFound``: none, or erased)."""
        return await self.db.read(get_survey, survey_id)

    async def open_survey(self, conversation_id: int) -> Survey | None:
        now = self.clock.now()
        return await self.db.read(lambda conn: open_survey_of_conversation(conn, conversation_id, now))

    async def _write(self, fn: Any, *args: Any) -> Answer:
        now = self.clock.now()

        def write(conn: Connection) -> tuple[Answer, list[After], list[Any]]:
            result, events = fn(conn, *args, now=now)
            afters: list[After] = []
            for event in events:
                afters.extend(self.service.tx_hooks.run(conn, event))
            return result, afters, events

        result, afters, events = await self.db.write(write)
        for event in events:
            await self.service.bus.publish(event)
        await run_afters(afters)
        return result


async def csat_ctx(app: web.Application) -> AsyncIterator[None]:
    from hub.csat_links import LinkSigner  # it imports this module's outcomes
    from hub.nps import NpsAsker  # it builds on this module

    settings = app[keys.SETTINGS]
    secret = settings.email_reply_secret
    service = CsatService(
        app[keys.DATABASE],
        app[keys.SERVICE],
        expiry=timedelta(hours=settings.csat_expiry_hours),
        clock=app[keys.CLOCK],
        links=LinkSigner(secret.get_secret_value().encode(), settings.public_url) if secret is not None else None,
    )
    app[keys.CSAT] = service
    nps = NpsAsker(service, every=timedelta(days=settings.nps_every_days)) if settings.nps_every_days else None
    if settings.csat_enabled:
        service.start()
        if nps is not None:
            nps.start()
    try:
        yield
    finally:
        if nps is not None:
            nps.stop()
        service.stop()
