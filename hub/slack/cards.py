"""Block Kit for the agents' Slack: the ticket card and short notices.

Pure functions over plain data (``TicketCard``), so the hub fills a card
from its storage and this module never sees a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# action_id -> what the button does; the value is always the ticket id.
CLAIM, RESOLVE, PRIORITY, SNOOZE = "ticket_claim", "ticket_resolve", "ticket_priority", "ticket_snooze"
ACTIONS = (CLAIM, RESOLVE, PRIORITY, SNOOZE)

PRIORITY_EMOJI = {
    "urgent": ":rotating_light:",
    "high": ":large_orange_circle:",
    "normal": ":large_blue_circle:",
    "low": ":white_circle:",
}
MAX_TEXT = 2900  # a section's text may hold 3000 characters
# Slack message metadata every card carries (``chat.postMessage`` ``metadata``):
# a post job run again (a retry, or another instance after a crash between
# Slack's answer and storing it) finds the card it may have posted already
# (``conversations.history`` with ``include_all_metadata``) instead of posting twice.
CARD_EVENT = "servicehub_ticket"


def card_metadata(ticket_id: int) -> dict[str, Any]:
    return {"event_type": CARD_EVENT, "event_payload": {"ticket_id": ticket_id}}


# The same for a message a ``thread`` job posts in a card's thread: a run
# again finds its post (``conversations.replies``) by the job's id.
THREAD_POST_EVENT = "servicehub_thread_post"


def thread_post_metadata(job_id: int) -> dict[str, Any]:
    return {"event_type": THREAD_POST_EVENT, "event_payload": {"job_id": job_id}}


def thread_post_job_id(message: dict[str, Any]) -> int | None:
    """The Slack job that posted a thread message, from its metadata (None: not the hub's post)."""
    return _metadata_id(message, THREAD_POST_EVENT, "job_id")


def _metadata_id(message: dict[str, Any], event_type: str, key: str) -> int | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != event_type:
        return None
    payload = metadata.get("event_payload")
    found = payload.get(key) if isinstance(payload, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def card_ticket_id(message: dict[str, Any]) -> int | None:
    """The ticket a Slack message is the card of, from its metadata (None: not a card)."""
    return _metadata_id(message, CARD_EVENT, "ticket_id")


@dataclass(frozen=True, slots=True)
class TicketCard:
    ticket_id: int
    conversation_id: int
    customer: str
    channel: str
    priority: str
    status: str  # open | resolved
    conversation_status: str
    team: str
    summary: str
    reason: str = ""
    assignee: str | None = None  # a Slack mention (<@U..>) or a name
    sla_due: datetime | None = None
    sla_breached: bool = False
    snoozed_until: datetime | None = None
    last_messages: list[tuple[str, str]] = field(default_factory=list)  # (who, text)
    kb_hits: list[dict[str, Any]] = field(default_factory=list)
    csat_rating: int | None = None  # 1-5, once the customer answered the survey


def escape(text: str) -> str:
    """Slack's three control characters (mrkdwn)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def plain_text(mrkdwn: str) -> str:
    """What an agent typed in Slack, as the customer should read it: links
    and mentions resolved (``<https://x|label>`` -> ``label (https://x)``),
    Slack's escapes undone."""

    def link(found: re.Match[str]) -> str:
        target, label = found.group(1), found.group(2)
        if target.startswith(("@", "#", "!")):
            return label or ("@" + target[1:] if target.startswith("@") else target[1:])
        target = target.removeprefix("mailto:")
        return f"{label} ({target})" if label and label != target else target

    text = _LINK.sub(link, mrkdwn)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_date(at: datetime) -> str:
    """A date Slack shows in each reader's own time zone."""
    stamp = int(at.timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"


def fallback_text(card: TicketCard) -> str:
    return f"[{card.priority}] Ticket #{card.ticket_id} from {card.customer} via {card.channel}: {_clip(card.summary, 150)}"


def ticket_blocks(card: TicketCard) -> list[dict[str, Any]]:
    emoji = PRIORITY_EMOJI.get(card.priority, "")
    # The conversation can be resolved a moment before its ticket (two
    # events); either way the card shows a resolved ticket without buttons.
    resolved = card.status == "resolved" or card.conversation_status == "resolved"
    state = "Resolved" if resolved else ("Snoozed" if card.snoozed_until else card.conversation_status.capitalize())
    header = f"{emoji} Ticket #{card.ticket_id} · {card.priority.upper()} · {state}"
    fields = [
        {"type": "mrkdwn", "text": f"*Customer*\n{escape(card.customer)}"},
        {"type": "mrkdwn", "text": f"*Channel*\n{escape(card.channel)}"},
        {"type": "mrkdwn", "text": f"*Priority*\n{card.priority}"},
        {"type": "mrkdwn", "text": f"*Assignee*\n{card.assignee or '_unassigned_'}"},
        {"type": "mrkdwn", "text": f"*Team*\n{escape(card.team)}"},
        {
            "type": "mrkdwn",
            "text": "*SLA due*\n"
            + (slack_date(card.sla_due) if card.sla_due else "—")
            + (" :warning: *breached*" if card.sla_breached else ""),
        },
    ]
    if card.csat_rating is not None:
        stars = "★" * card.csat_rating + "☆" * (5 - card.csat_rating)
        fields.append({"type": "mrkdwn", "text": f"*CSAT*\n{stars} {card.csat_rating}/5"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(header, 150), "emoji": True}},
        {"type": "section", "fields": fields},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Summary*\n" + escape(_clip(card.summary or "—", 1000))},
        },
    ]
    if card.reason:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Why: " + escape(_clip(card.reason, 500))}]}
        )
    if card.last_messages:
        lines = [f"*{escape(who)}*: {escape(_clip(text, 300))}" for who, text in card.last_messages]
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip("*Last messages*\n" + "\n".join(lines), MAX_TEXT)},
            }
        )
    if card.kb_hits:
        hits = []
        for hit in card.kb_hits[:3]:
            title = escape(str(hit.get("title") or hit.get("id") or "article"))
            url = hit.get("url")
            hits.append(f"• <{url}|{title}>" if url else f"• {title}")
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "*KB articles the bot found*\n" + "\n".join(hits)}}
        )
    if not resolved:
        value = str(card.ticket_id)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"ticket:{card.ticket_id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CLAIM,
                        "text": {"type": "plain_text", "text": "Claim"},
                        "value": value,
                        "style": "primary",
                    },
                    {
                        "type": "button",
                        "action_id": RESOLVE,
                        "text": {"type": "plain_text", "text": "Resolve"},
                        "value": value,
                    },
                    {
                        "type": "static_select",
                        "action_id": PRIORITY,
                        "placeholder": {"type": "plain_text", "text": "Priority"},
                        "options": [
                            {"text": {"type": "plain_text", "text": p.capitalize()}, "value": f"{value}:{p}"}
                            for p in ("urgent", "high", "normal", "low")
                        ],
                    },
                    {
                        "type": "button",
                        "action_id": SNOOZE,
                        "text": {"type": "plain_text", "text": "Snooze 1h"},
                        "value": value,
                    },
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Conversation {card.conversation_id} · reply in this thread to answer the customer; start with `//` for an internal note",
                }
            ],
        }
    )
    return blocks


def mirrored_text(who: str, text: str, *, note: bool = False) -> str:
    prefix = ":memo: _note_ " if note else ""
    return _clip(f"{prefix}*{escape(who)}*: {escape(text)}", 3900)
