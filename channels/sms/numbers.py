"""Phone numbers as Twilio writes them: ``+E164`` for SMS, ``whatsapp:+E164`` for WhatsApp."""

from __future__ import annotations

import phonenumbers

from hub.errors import InvalidInput

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
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as err:
        raise InvalidInput(f"'{field}' is not a phone number") from err
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidInput(f"'{field}' is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_messaging_service(sender: str) -> bool:
    """A Messaging Service SID (``MG`` and 32 hex digits) rather than a number."""
    return sender.startswith("MG") and len(sender) == 34
