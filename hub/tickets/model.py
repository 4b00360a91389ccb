"""The ticket: a handed-off conversation with its routing and SLA state, and
its row mapper."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.models import Priority, StrEnum, _Serialisable


class TicketStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Ticket(_Serialisable):
    id: int
    conversation_id: int
    contact_id: int
    status: TicketStatus
    priority: Priority
    assignee_id: int | None
    team: str
    source: str
    reason: str
    summary: str
    kb_hits: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    first_response_at: datetime | None
    first_response_due: datetime | None
    resolution_due: datetime | None
    sla_paused_at: datetime | None
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None
    escalations: int
    snoozed_until: datetime | None
    slack_channel: str | None
    slack_ts: str | None

    @property
    def sla_due(self) -> datetime | None:
        """The next deadline that still matters."""
        if self.status != TicketStatus.OPEN:
            return None
        if self.first_response_at is None and self.first_response_due is not None:
            return self.first_response_due
        return self.resolution_due


def ticket_from_row(row: Any) -> Ticket:
    return Ticket(
        id=row.id,
        conversation_id=row.conversation_id,
        contact_id=row.contact_id,
        status=TicketStatus(row.status),
        priority=Priority(row.priority),
        assignee_id=row.assignee_id,
        team=row.team,
        source=row.source,
        reason=row.reason,
        summary=row.summary,
        kb_hits=list(row.kb_hits or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        first_response_at=row.first_response_at,
        first_response_due=row.first_response_due,
        resolution_due=row.resolution_due,
        sla_paused_at=row.sla_paused_at,
        first_response_breached_at=row.first_response_breached_at,
        resolution_breached_at=row.resolution_breached_at,
        escalations=row.escalations,
        snoozed_until=row.snoozed_until,
        slack_channel=row.slack_channel,
        slack_ts=row.slack_ts,
    )
