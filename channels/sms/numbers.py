"""Phone numbers as Twilio writes them: ``+E164`` for SMS, ``whatsapp:+E164`` for WhatsApp."""

from __future__ import annotations

from hub.errors import InvalidInput
from hub.inputs import check_phone

WHATSAPP_PREFIX = "whatsapp:"


def is_whatsapp(address: str) -> bool:
    return address.strip().lower().startswith(WHATSAPP_PREFIX)


def strip_whatsapp(address: str) -> str:
    address = address.strip()
    return address[len(WHATSAPP_PREFIX) :] if is_whatsapp(address) else address


def e164(address: str, default_region: str, *, field: str) -> str:
    """``address`` (``whatsapp:`` stripped) in E.164; InvalidInput naming
    ``field`` (never the number: it is personal data) when it is not one."""
    number = strip_whatsapp(address)
    if not number:
        raise InvalidInput(f"'{field}' is empty")
    return check_phone(number, field, default_region=default_region)  # the hub's one phone check


def is_messaging_service(sender: str) -> bool:
    """A Messaging Service SID (``MG`` and 32 hex digits) rather than a number."""
    return sender.startswith("MG") and len(sender) == 34
