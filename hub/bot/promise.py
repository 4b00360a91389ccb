"""What a handoff promises the customer, and nothing the team cannot keep.

The bot only says it passes the conversation on ("I'm passing you to our
team."); the hub appends the promise, because only the hub knows whether an
agent is on duty, when the team is back (``HUB_SLA_BUSINESS_HOURS``, in the
team's time zone) and how the reply can reach the customer:

- someone on duty: a member of the team replies here shortly;
- nobody on duty: when the team is back ("Monday at 09:00 (Europe/Paris)";
  without business hours, or inside them with nobody on duty, "as soon as
  someone is available"), and that the reply also comes by email to the
  address the contact gave (masked), or, in the web chat, a request for that
  address. An SMS never talks about email unless an address is known; an
  email conversation is answered by email anyway.

Pure: the caller passes the duty, the time, the hours, the channel and the
email address; every text lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.tickets.sla import BusinessHours

ON_DUTY = "A member of our team will reply here shortly."
AWAY_UNTIL = "Our team is away right now and back {when}."
AWAY = "Our team is away right now and will reply as soon as someone is available."
REPLY_BY_EMAIL_TOO = "We'll reply here and by email to {email}."
ASK_EMAIL = "What's your email address? Type it here and we'll reply by email too."
REPLY_BY_SMS = "We'll reply here by text message."
REPLY_BY_EMAIL = "We'll reply to this email."
REPLY_HERE = "We'll reply here."

# Where a visitor may leave before the reply comes, so the hub asks for an address.
ASKS_FOR_EMAIL = frozenset({"webchat"})

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Promise:
    text: str
    on_duty: bool
    back_at: datetime | None = None  # the next opening (UTC), when the team is away until then
    asks_email: bool = False  # the text asks for the customer's email address
    email: str | None = None  # the masked address the reply will also go to

    def to_meta(self) -> dict[str, Any]:
        """For the message's ``meta["promise"]``: what the text promised."""
        return {
            "on_duty": self.on_duty,
            "back_at": self.back_at.isoformat() if self.back_at is not None else None,
            "asks_email": self.asks_email,
            "email": self.email,
        }


def handoff_promise(
    *, on_duty: bool, now: datetime, hours: BusinessHours | None, channel: str, email: str | None
) -> Promise:
    """The sentence(s) a handoff ends with, for a conversation on ``channel``
    whose contact has ``email`` (None: unknown), at ``now``."""
    if on_duty:
        return Promise(ON_DUTY, on_duty=True)
    opening = hours.next_opening(now) if hours is not None else None
    back_at = opening if opening is not None and opening > now else None
    away = AWAY if back_at is None or hours is None else AWAY_UNTIL.format(when=when(back_at, now, hours))
    masked = mask_email(email) if email else None
    asks = False
    if channel == "email":
        reply = REPLY_BY_EMAIL
        masked = None
    elif masked is not None:
        reply = REPLY_BY_EMAIL_TOO.format(email=masked)
    elif channel in ASKS_FOR_EMAIL:
        reply, asks = ASK_EMAIL, True
    elif channel == "sms":
        reply = REPLY_BY_SMS
    else:
        reply = REPLY_HERE
    return Promise(f"{away} {reply}", on_duty=False, back_at=back_at, asks_email=asks, email=masked)


def when(moment: datetime, now: datetime, hours: BusinessHours) -> str:
    """``today at 13:00 (Europe/Paris)``, ``tomorrow at 09:00 (...)``,
    ``Monday at 09:00 (...)``, or with the date when a week or more away
    (holidays): ``Monday 4 January at 09:00 (...)``. In the team's zone."""
    local = moment.astimezone(hours.zone)
    days = (local.date() - now.astimezone(hours.zone).date()).days
    clock = local.strftime("%H:%M")
    if days == 0:
        day = "today"
    elif days == 1:
        day = "tomorrow"
    elif days < 7:
        day = _WEEKDAYS[local.weekday()]
    else:
        day = f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"
    return f"{day} at {clock} ({hours.zone.key})"


def mask_email(address: str) -> str:
    """``ada.lovelace@example.com`` -> ``a***@example.com``: enough for the
    customer to recognise their address, not enough to read it off a screen."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"
