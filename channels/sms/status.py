"""A Twilio status callback (form fields) as a ``DeliveryReport``.

Twilio posts one callback per change of a message's status to the
``StatusCallback`` URL the hub gave it, ``.../twilio/status?message_id=N``:
the hub's own message id rides in the signed URL, so a report that arrives
before the send's result is recorded still finds its message.
"""

from __future__ import annotations

from channels.base import DeliveryReport
from channels.sms import codes
from channels.sms.inbound import require
from hub.errors import InvalidInput
from hub.inputs import ascii_int, parse_id

# Twilio's MessageStatus -> the hub's DeliveryStatus. Statuses of inbound
# messages (receiving, received) are not reports on anything the hub sent.
STATUSES: dict[str, str] = {
    "accepted": "queued",  # a Messaging Service took it, no sender chosen yet
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",  # WhatsApp's blue ticks: delivered, and then some
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",  # a scheduled message cancelled before it left
    "partially_delivered": "undelivered",
}


def parse_status(form: dict[str, str], channel: str, query_message_id: str | None) -> DeliveryReport | None:
    """The report, or None for a status that reports nothing the hub sent."""
    sid = require(form, "MessageSid")
    twilio_status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not twilio_status:
        raise InvalidInput("Twilio form field 'MessageStatus' is missing")
    status = STATUSES.get(twilio_status)
    if status is None:
        return None
    error_code = form.get("ErrorCode", "").strip() or None
    if error_code is not None:
        number = ascii_int(error_code)
        if number is None:
            raise InvalidInput("Twilio form field 'ErrorCode' is not a number")
        error_code = str(number) if number else None
    return DeliveryReport(
        channel=channel,
        provider_id=sid,
        status=status,
        message_id=parse_id(query_message_id),
        error_code=error_code,
        error_message=codes.reason(error_code),
        opted_out=error_code in codes.OPTED_OUT,
    )
