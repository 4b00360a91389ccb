"""No double texts after a crash: which parts a previous attempt already sent.

Twilio has no idempotency key. When the hub dies after Twilio accepted a
message but before the hub recorded its sid, the outbox sends the message
again once the lease expires (``OutboundMessage.attempt`` > 1). Before that
second send the channel lists the recent messages to the same number from the
same sender and takes a part as sent when one of them has the same body and
was created since the message was queued (less ``CLOCK_SKEW``: the hub's clock
and Twilio's may differ by a little). Each listed message stands for one part
at most, so a reply that repeats a part is sent as often as it repeats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from channels.sms.client import SentMessage

CLOCK_SKEW = timedelta(seconds=10)
# How many of the latest messages to that number are looked at.
RECENT_LIMIT = 100


def _same_body(sent: str, part: str) -> bool:
    return " ".join(sent.split()) == " ".join(part.split())


def already_sent(parts: Sequence[str], recent: Sequence[SentMessage], queued_at: datetime) -> list[str | None]:
    """For each part, the sid of the message that already carries it, or None."""
    if queued_at.tzinfo is None:  # the hub's times are UTC
        queued_at = queued_at.replace(tzinfo=UTC)
    cutoff = queued_at.replace(microsecond=0) - CLOCK_SKEW  # Twilio's dates are whole seconds
    candidates = [m for m in recent if m.created_at is None or m.created_at >= cutoff]
    # Oldest first: parts were sent in order, so the first copy is the first part.
    candidates.sort(key=lambda m: m.created_at or cutoff)
    found: list[str | None] = [None] * len(parts)
    for message in candidates:
        for index, part in enumerate(parts):
            if found[index] is None and _same_body(message.body, part):
                found[index] = message.sid
                break
    return found
