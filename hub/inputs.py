"""What enters the hub, checked once where it enters: JSON, text, ids, numbers.

Every byte a client controls passes through here before a handler, a channel
or storage sees it: the API's JSON body reader and path ids
(``hub.api.base``), every channel's webhook (``channels.base``) and the web
chat's frames. The rules, so a client gets a 4xx with the field named instead
of a 500 from deep inside:

- JSON: at most ``MAX_JSON_DEPTH`` levels of nesting (checked on the raw bytes
  before parsing, so nothing recurses on a hostile body); ``NaN`` and
  ``Infinity`` are refused (they are not JSON, and PostgreSQL's JSONB refuses
  them), and so are numbers that overflow to them (``1e999``); integers fit a
  signed 64-bit column.
- Text: every string (and object key) must be valid Unicode: a lone
  surrogate (``"\\ud800"``) is refused, naming the field; strings are
  NFC-normalised, so one text is stored one way; a NUL character becomes
  U+FFFD (PostgreSQL refuses NUL in text).
- Ids: ``1 .. 2**63-1`` (``MAX_ID``), written in ASCII digits.
- Lengths: ``check_length``; the limits of stored strings come from the
  columns in ``hub.storage.schema`` (``hub.limits``).

Pure functions; channels may import this module like ``hub.errors``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
from typing import Any

from hub.errors import InvalidInput, InvalidJSON, TooLarge
from hub.messages import InboundMessage

MAX_ID = 2**63 - 1
MIN_INT = -(2**63)
MAX_JSON_DEPTH = 32

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
# What only the walk in ``clean`` can judge: an integer that may pass 64 bits,
# a float whose exponent may overflow to infinity (``1e999``).
_NEEDS_WALK = re.compile(rb"[0-9]{19}|[eE][+-]?[0-9]{3}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def ascii_int(value: str | None) -> int | None:
    """``value`` as an int when it is 1-19 ASCII digits, else None.

    ``str.isdigit`` accepts ``"²"`` and other digits ``int()`` refuses, and
    ``int()`` accepts Arabic-Indic digits, spaces and underscores: neither may
    decide what a header or a path means.
    """
    if value is None or not 0 < len(value) <= 19 or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def parse_id(value: str | None) -> int | None:
    """A path or query id: ASCII digits in ``1 .. MAX_ID``, else None."""
    number = ascii_int(value)
    return number if number is not None and 1 <= number <= MAX_ID else None


def check_id(value: Any, name: str) -> int:
    """An id from a JSON body: an integer in ``1 .. MAX_ID``, else 400 naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise InvalidInput(f"'{name}' must be an id (an integer from 1 to {MAX_ID})")
    return value


def check_length(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise TooLarge(f"'{name}' is {len(value)} characters; at most {limit} are allowed")
    return value


def clean_text(value: str, name: str) -> str:
    """``value`` NFC-normalised, with NUL characters replaced by U+FFFD
    (PostgreSQL cannot store them, and no text means them); InvalidInput
    naming ``name`` when it holds a lone surrogate."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"'{name}' is not valid Unicode text (it holds a lone surrogate)") from None
    if unicodedata.is_normalized("NFC", value):
        return value
    return unicodedata.normalize("NFC", value)


def json_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``raw`` nests deeper than ``max_depth``, without parsing it."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:  # the common case, at C speed
        return False
    depth = 0
    for byte in _STRINGS.sub(b'""', raw).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _printable(key: object) -> str:
    """A field name fit for an error message: no surrogates, not too long."""
    text = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 64 else text[:61] + "..."


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number; send a number or null")


def load_json(raw: bytes | str, *, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``raw`` as strict JSON and ``clean`` the result.

    InvalidInput (400) with the reason for: invalid UTF-8 or JSON, nesting
    deeper than ``max_depth``, ``NaN``/``Infinity`` (or ``1e999``), a lone
    surrogate in any string or key, an integer outside 64 bits (or of more
    digits than Python reads).
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json_depth_exceeds(data, max_depth):
        raise InvalidJSON(f"{what} nests deeper than {max_depth} levels")
    try:
        # Decoded here, strictly: json.loads would let UTF-8-encoded surrogates through.
        parsed = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise InvalidJSON(f"{what} is not valid JSON (not UTF-8: {err.reason})") from err
    except json.JSONDecodeError as err:
        raise InvalidJSON(f"{what} is not valid JSON: {err}") from err
    except ValueError as err:  # an integer of more than 4,300 digits (sys.get_int_max_str_digits)
        raise InvalidJSON(f"{what} holds a number too long to read") from err
    except RecursionError as err:  # only if the depth scan and the parser disagree
        raise InvalidJSON(f"{what} nests too deeply") from err
    if data.isascii() and b"\\u" not in data and not _NEEDS_WALK.search(data):
        # The common webhook: ASCII without escapes, long numbers or large
        # exponents holds no surrogate, nothing to normalise, no integer
        # beyond 64 bits and no infinite float, and the scan above bounded its
        # depth. Skipping the walk halves the cost.
        return parsed
    return clean(parsed, max_depth=max_depth)


def clean(value: Any, *, where: str = "", max_depth: int = MAX_JSON_DEPTH, _depth: int = 0) -> Any:
    """``value`` (parsed JSON) with every string NFC-normalised; InvalidInput
    naming the field (``contact.name``, ``[1].text``) for a lone surrogate,
    an integer beyond 64 bits or nesting beyond ``max_depth``."""
    if isinstance(value, str):
        return clean_text(value, where or "value")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"'{where or 'value'}' is not a finite number")
        return value
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_ID:
            raise InvalidInput(f"'{where or 'value'}' is outside the 64-bit integer range")
        return value
    if _depth >= max_depth:
        raise InvalidInput(f"'{where or 'value'}' nests deeper than {max_depth} levels")
    if isinstance(value, list):
        return [
            clean(item, where=f"{where}[{i}]", max_depth=max_depth, _depth=_depth + 1) for i, item in enumerate(value)
        ]
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            name = f"{where}.{_printable(key)}" if where else _printable(key)
            key = clean_text(key, name) if isinstance(key, str) else key
            cleaned[key] = clean(item, where=name, max_depth=max_depth, _depth=_depth + 1)
        return cleaned
    return value


# The longest text a client may give for each stored field, by the name
# clients use for it. The stored columns' lengths in ``hub.storage.schema``
# are the source; ``tests/hub/test_hardening.py`` checks that each entry
# fits its column and that every string column a client writes is covered.
FIELD_LIMITS: dict[str, int] = {
    "name": 200,  # users.name, contacts.name, api_tokens.name
    "email": 320,  # users.email, identities.address
    "role": 16,
    "slack_user_id": 64,
    "status": 16,
    "priority": 16,
    "handler": 16,
    "kind": 16,  # routing_rules.kind
    "subject": 500,
    "thread": 500,  # conversations.thread_key
    "team": 64,
    "collection": 100,
    "article_id": 100,
    "text": 40_000,  # messages.body (TEXT): the longest any channel takes (Slack)
    "reason": 2_000,  # tickets.reason (TEXT)
}
# What an InboundMessage's fields are stored in (channels.base checks them).
INBOUND_LIMITS: dict[str, int] = {
    "sender": 320,  # identities.address
    "external_id": 500,  # messages.external_id
    "sender_name": 200,  # contacts.name
    "thread_key": 500,  # conversations.thread_key
    "subject": 500,  # conversations.subject
    "text": FIELD_LIMITS["text"],
    "hint": 320,  # contact_hints values: e-mail addresses, phone numbers, names
}
# Fields whose JSON type is always a string wherever an API body holds them.
STRING_FIELDS = frozenset(FIELD_LIMITS) - {"article_id"}


def check_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of an API body that the hub knows: right type
    (400 naming the field) and within their stored length (400 ``too_large``)."""
    for name, value in body.items():
        if value is None or name not in FIELD_LIMITS:
            continue
        if name in STRING_FIELDS and not isinstance(value, str):
            raise InvalidInput(f"'{name}' must be str")
        if isinstance(value, str):
            check_length(value, name, FIELD_LIMITS[name])
    return body


def check_inbound(message: InboundMessage, *, item: str = "") -> InboundMessage:
    """``message`` with its text fields cleaned (``clean_text``) and within
    the lengths they are stored in (``INBOUND_LIMITS``); InvalidInput naming
    the field (prefixed with ``item``, e.g. ``"item 1: "``) otherwise."""
    changes: dict[str, Any] = {}
    for name in ("sender", "text", "external_id", "sender_name", "thread_key", "subject"):
        value = getattr(message, name)
        if value is None and name not in ("sender", "text"):
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{item}'{name}' must be a string")
        cleaned = check_length(clean_text(value, f"{item}{name}"), f"{item}{name}", INBOUND_LIMITS[name])
        if cleaned is not value:
            changes[name] = cleaned
    hints = {}
    for key, value in message.contact_hints.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"{item}contact hints must be strings")
        where = f"{item}hints.{_printable(key)}"
        hints[clean_text(key, where)] = check_length(clean_text(value, where), where, INBOUND_LIMITS["hint"])
    if hints != message.contact_hints:
        changes["contact_hints"] = hints
    if message.metadata:
        changes["metadata"] = clean(message.metadata, where=f"{item}metadata")
    if message.attachments:
        changes["attachments"] = tuple(clean(list(message.attachments), where=f"{item}attachments"))
    return dataclasses.replace(message, **changes) if changes else message


# A practical subset of RFC 5321 (what mail servers deliver to): dot-atom
# local part, a host name of letters/digits/hyphens with a top-level domain
# (or ``localhost``).
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_email(value: str, name: str = "email") -> str:
    """``value`` as a deliverable-looking address, lower-cased; InvalidInput
    naming ``name`` otherwise (``" @ "``, ``a@b``, ``a..b@c.d`` are refused).
    An internationalised domain is accepted in its IDNA form."""
    address = value.strip()
    local, at, domain = address.rpartition("@")
    problem = None
    if not at or not local or not domain:
        problem = "needs a name, '@' and a domain"
    elif len(address) > 254 or len(local) > 64:
        problem = "is too long"
    elif not _EMAIL_LOCAL.fullmatch(local):
        problem = "has characters not allowed before the '@'"
    else:
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_domain = ""
        labels = ascii_domain.split(".")
        # One label only for "localhost" (the bootstrap admin's default address).
        if (
            (len(labels) < 2 and ascii_domain.lower() != "localhost")
            or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()
        ):
            problem = "does not have a valid domain"
    if problem:
        raise InvalidInput(f"'{name}' is not an e-mail address: it {problem}")
    return address.lower()


def check_phone(value: str, name: str = "phone", *, default_region: str | None = None) -> str:
    """``value`` as an E.164 number (``+15551234567``); a national format
    needs ``default_region`` (``HUB_SMS_DEFAULT_REGION``). InvalidInput naming
    ``name`` otherwise, without echoing the number (it is personal)."""
    import phonenumbers  # only where phone numbers are read

    try:
        number = phonenumbers.parse(value.strip(), default_region or None)
    except phonenumbers.NumberParseException as err:
        # The library's reason ("(0) Missing or invalid default region.") names no digits.
        reason = str(err).split(") ", 1)[-1].rstrip(".")
        raise InvalidInput(f"'{name}' is not a phone number: {reason}") from err
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput(f"'{name}' is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
