"""NPS: "how likely are you to recommend us" (0-10), asked after a CSAT answer.

Optional (``HUB_NPS_EVERY_DAYS``; unset: never). When a customer answers a
CSAT survey (``hub.csat``'s ``csat-rated`` line), the same transaction asks
them the NPS question on the same channel, unless this contact was asked in
the last N days: ``contacts.nps_asked_at`` is claimed by one conditional
update, so two answers racing (two conversations of one contact, or two
instances) ask once.

The question is a survey of ``csat_surveys`` with ``kind = 'nps'`` and
``hub.csat``'s whole machinery: the outbound message with ``meta.csat``
(web chat shows buttons 0-10), a bare number on SMS, signed links by
e-mail, one answer, a polite refusal of a second, an expiry, the timeline
line (``nps-rated``). It carries no ticket: the ticket's survey is its CSAT.
The figures are the ``nps`` report (``hub.reports.nps``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.conversations import transactions as conversations_tx
from hub.csat import Survey, queue_survey, surveyable
from hub.events import SystemEventAdded
from hub.storage.schema import contacts
from hub.survey_scales import CSAT, NPS
from hub.txhooks import After

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.csat import CsatService
    from hub.csat_links import LinkSigner


def claim_contact(conn: Connection, contact_id: int, *, every: timedelta, now: datetime) -> bool:
    """Mark the contact asked now, if not asked within ``every``; whether this call did."""
    asked = contacts.c.nps_asked_at
    return bool(
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == contact_id, sa.or_(asked.is_(None), asked <= now - every))
            .values(nps_asked_at=now)
        ).rowcount
    )


def ask(
    conn: Connection,
    conversation_id: int,
    *,
    every: timedelta,
    expiry: timedelta,
    now: datetime,
    links: LinkSigner | None,
) -> tuple[Survey, conversations_tx.Queued] | None:
    """In the CSAT answer's transaction: the NPS survey and its message (None: asked lately, or not answerable here)."""
    conversation = conversations_tx.get_conversation(conn, conversation_id)
    if not surveyable(conversation, links) or not claim_contact(conn, conversation.contact_id, every=every, now=now):
        return None
    return queue_survey(conn, conversation, NPS, ticket_id=None, expiry=expiry, now=now, links=links)


class NpsAsker:
    """The tx hook that follows a CSAT answer with the NPS question."""

    def __init__(self, csat: CsatService, *, every: timedelta) -> None:
        self.csat = csat
        self.every = every
        self._remove: Callable[[], None] | None = None

    def start(self) -> None:
        self._remove = self.csat.service.tx_hooks.add(SystemEventAdded, self._rated_tx)

    def stop(self) -> None:
        if self._remove is not None:
            self._remove()
        self._remove = None

    def _rated_tx(self, conn: Connection, event: SystemEventAdded) -> After | None:
        if event.event != f"{CSAT.kind}-rated":
            return None
        csat = self.csat
        sent = ask(
            conn, event.conversation_id, every=self.every, expiry=csat.expiry, now=csat.clock.now(), links=csat.links
        )
        return None if sent is None else csat.sent_tx(conn, sent[1])
