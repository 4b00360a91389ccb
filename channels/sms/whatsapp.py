"""WhatsApp through Twilio: the SMS adapter with ``whatsapp:`` addresses (``HUB_CHANNELS=...,whatsapp``).

Routes ``POST /channels/whatsapp/twilio`` and ``.../twilio/status``; the
sender is ``HUB_WHATSAPP_FROM``. A customer's number is the same E.164
identity as over SMS, so one person is one contact on both. WhatsApp has no
segments (a message may hold 1600 characters) and allows a free-form reply
only within 24 hours of the customer's last message (``reply_window``: the
outbox refuses later ones with the reason; template messages are not
supported).
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from channels.sms.channel import SmsChannel
from channels.sms.numbers import WHATSAPP_PREFIX


class WhatsappChannel(SmsChannel):
    name: ClassVar[str] = "whatsapp"
    identity_kind: ClassVar[str | None] = "phone"
    reply_window: ClassVar[timedelta | None] = timedelta(hours=24)
    required_settings = ("twilio_account_sid", "twilio_auth_token", "whatsapp_from")
    sender_setting: ClassVar[str] = "whatsapp_from"
    address_prefix: ClassVar[str] = WHATSAPP_PREFIX

    @property
    def max_segments(self) -> int | None:
        return None
