"""What a web chat frame may hold: ids, the host site's user fields, the pre-chat form, the Message frame.

Pure helpers; the protocol is described in ``channels/webchat/__init__.py``.
"""

from __future__ import annotations

import re
from typing import Any

from hub.inputs import check_email

CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_MAX = 200
EMAIL_MAX = 254


class FrameError(Exception):
    """Answer the current frame with an error frame; the socket stays open."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def short_str(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise FrameError("invalid_frame", "user and contact fields must be strings")
    value = value.strip()
    if len(value) > limit:
        raise FrameError("invalid_input", f"a user or contact field is longer than {limit} characters")
    return value or None


def contact_form(contact: dict[str, Any]) -> dict[str, str]:
    """The pre-chat form: optional name and email, unverified."""
    form: dict[str, str] = {}
    name = short_str(contact.get("name"), NAME_MAX)
    email = short_str(contact.get("email"), EMAIL_MAX)
    if name:
        form["name"] = name
    if email:
        # The hub's one e-mail check (users and contact addresses use it too).
        form["email"] = check_email(email)
    return form


def message_frame(message: Any, visitor_id: str) -> dict[str, Any]:
    client_id = None
    external = message.external_id
    prefix = f"{visitor_id}:"
    if external and visitor_id and external.startswith(prefix):
        client_id = external[len(prefix) :]
    return {
        "id": message.id,
        "author": message.author_kind.value,
        "text": message.body,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "client_id": client_id,
    }
