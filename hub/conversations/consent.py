"""Who may be sent to: opt-outs (SMS STOP) and reply windows (WhatsApp's 24 hours).

An address opts out of a channel when its owner says so (a STOP keyword the
channel recognised, ``InboundMessage.consent``) or when the provider refuses
a send because they unsubscribed (Twilio 21610, ``ChannelSendError.opted_out``);
it opts back in with START. The outbox asks ``send_refusal`` before every send
on a channel that honours opt-outs or has a reply window, and dead-letters
the message with the reason instead of sending: the agent sees why.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations.transactions import Queued, add_event, queue_outbound, recipient_address
from hub.messages import InboundMessage
from hub.models import AuthorKind, Conversation, Direction, Message
from hub.storage import insert_ignore
from hub.storage.schema import csat_surveys, messages, opt_outs

OPT_OUT, OPT_IN = "opt_out", "opt_in"

_OPTED_OUT = sa.select(opt_outs.c.reason, opt_outs.c.created_at).where(
    opt_outs.c.channel == sa.bindparam("channel"), opt_outs.c.address == sa.bindparam("address")
)
_LAST_INBOUND = sa.select(sa.func.max(messages.c.created_at)).where(
    messages.c.conversation_id == sa.bindparam("conversation_id"),
    messages.c.direction == Direction.INBOUND.value,
)


def opt_out(conn: Connection, *, contact_id: int, channel: str, address: str, reason: str, now: datetime) -> bool:
    """Record that ``address`` wants nothing more on ``channel``; False when it already had."""
    stmt = (
        insert_ignore(conn, opt_outs)
        .values(contact_id=contact_id, channel=channel, address=address, reason=reason[:64], created_at=now)
        .on_conflict_do_nothing()
    )
    return bool(conn.execute(stmt).rowcount)


def provider_opt_out(
    conn: Connection, *, contact_id: int, channel: str, address: str, code: str | None, now: datetime
) -> bool:
    """The provider refused because the recipient unsubscribed (Twilio 21610),
    on a send or in a delivery report: the same opt-out as their STOP."""
    return opt_out(
        conn, contact_id=contact_id, channel=channel, address=address, reason=f"provider {code or 'refusal'}", now=now
    )


def opt_in(conn: Connection, *, channel: str, address: str) -> bool:
    """Lift an opt-out; False when there was none."""
    stmt = sa.delete(opt_outs).where(opt_outs.c.channel == channel, opt_outs.c.address == address)
    return bool(conn.execute(stmt).rowcount)


def opted_out(conn: Connection, channel: str, address: str) -> Any:
    """The opt-out row (reason, created_at) of ``address`` on ``channel``, or None."""
    return conn.execute(_OPTED_OUT, {"channel": channel, "address": address}).first()


def of_contact(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """A contact's opt-outs, for the API and the Slack card."""
    found = conn.execute(
        sa.select(opt_outs.c.channel, opt_outs.c.address, opt_outs.c.reason, opt_outs.c.created_at)
        .where(opt_outs.c.contact_id == contact_id)
        .order_by(opt_outs.c.id)
    )
    return [
        {"channel": row.channel, "address": row.address, "reason": row.reason, "since": row.created_at.isoformat()}
        for row in found
    ]


def send_refusal(
    conn: Connection,
    *,
    channel: str,
    to: str,
    conversation_id: int,
    honours_opt_out: bool,
    reply_window: timedelta | None,
    now: datetime,
) -> str | None:
    """Why a message to ``to`` on ``channel`` must not go out now, or None."""
    if honours_opt_out:
        row = opted_out(conn, channel, to)
        if row is not None:
            return (
                f"the customer opted out of {channel} messages ({row.reason}, {row.created_at:%Y-%m-%d %H:%M} UTC); "
                "nothing is sent to them on this channel until they text START"
            )
    if reply_window is not None:
        last = conn.execute(_LAST_INBOUND, {"conversation_id": conversation_id}).scalar()
        if last is None or now - last > reply_window:
            hours = reply_window.total_seconds() / 3600
            when = f"last wrote {last:%Y-%m-%d %H:%M} UTC" if last is not None else "has not written here"
            return (
                f"outside {channel}'s {hours:g}-hour customer-service window (the customer {when}); "
                "free-form replies are refused until they write again (template messages are not supported)"
            )
    return None


def apply_keywords(
    conn: Connection, inbound: InboundMessage, message: Message, conversation: Conversation, now: datetime
) -> tuple[list[Message], Queued | None]:
    """In the ingest transaction of a keyword message (STOP, START, HELP):
    the opt-out or opt-in, a system line for the agent when it changed
    something, and the reply the channel owes (HELP's text)."""
    address = recipient_address(conn, conversation)
    keyword = " ".join(inbound.text.split()).upper()[:32] or "keyword"
    lines = []
    if inbound.consent == OPT_OUT and opt_out(
        conn, contact_id=message.contact_id, channel=inbound.channel, address=address, reason=keyword, now=now
    ):
        text = f"The customer opted out of {inbound.channel} messages ({keyword}): nothing more is sent to them here until they text START."
        lines.append(add_event(conn, conversation, text, event="opted_out", meta={"channel": inbound.channel}, now=now))
    elif inbound.consent == OPT_IN and opt_in(conn, channel=inbound.channel, address=address):
        text = f"The customer opted back in to {inbound.channel} messages ({keyword})."
        lines.append(add_event(conn, conversation, text, event="opted_in", meta={"channel": inbound.channel}, now=now))
    queued = None
    if inbound.auto_reply and opted_out(conn, inbound.channel, address) is None:
        queued = queue_outbound(
            conn,
            conversation.id,
            inbound.auto_reply,
            author_kind=AuthorKind.SYSTEM,
            to=address,
            idempotency_key=f"auto-reply:{message.id}",
        )
    return lines, queued


# --- CSAT by text: a reply digit is a keyword while a survey is open ----------

# Channels where a customer answers a survey ("Reply 1-5", NPS's "Reply 0-10") with a bare number.
SURVEY_DIGIT_CHANNELS = frozenset({"sms"})
_SURVEY_DIGIT = re.compile(r"\s*(10|[0-9])\s*")
# The answers each kind of survey takes (``hub.csat``'s scales are built on these).
SURVEY_RATINGS = {"csat": range(1, 6), "nps": range(0, 11)}


def survey_digit(channel: str, text: str | None) -> int | None:
    """The rating a bare ``0``-``10`` text on a digit channel would give (the
    hub takes it as the answer while the conversation's survey is open and
    the number is on its scale: ``hub.csat``)."""
    if channel not in SURVEY_DIGIT_CHANNELS or not text or len(text) > 16:
        return None
    match = _SURVEY_DIGIT.fullmatch(text)
    return int(match.group(1)) if match else None


def survey_awaits(conn: Connection, conversation_id: int, now: datetime, rating: int) -> int | None:
    """The id of the conversation's latest unexpired survey, CSAT or NPS, when
    ``rating`` is one of its answers (answered or not: a second digit is
    refused politely, not handed to the bot)."""
    latest = conn.execute(
        sa.select(csat_surveys.c.id, csat_surveys.c.kind)
        .where(csat_surveys.c.conversation_id == conversation_id, csat_surveys.c.expires_at > now)
        .order_by(csat_surveys.c.id.desc())
        .limit(1)
    ).first()
    return latest.id if latest is not None and rating in SURVEY_RATINGS[latest.kind] else None
