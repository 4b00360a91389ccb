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
    frame = {
        "id": message.id,
        "author": message.author_kind.value,
        "text": message.body,
        "created_at": message.created_at.isoformat() if message.created_at else None,
        "client_id": client_id,
    }
    choices = choices_of(message.meta or {})
    if choices:  # a clarifying question: the widget shows a button per answer
        frame["choices"] = choices
    survey = survey_frame(message.meta or {}, message.body)
    if survey is not None:  # a survey: the widget shows its rating buttons
        frame["survey_id"] = survey["survey_id"]
        frame["survey_low"], frame["survey_high"] = survey["low"], survey["high"]
    return frame


COMMENT_MAX = 2000


def survey_answer(frame: dict[str, Any]) -> tuple[int, int | None, str | None]:
    """A ``survey_answer`` frame: ``(survey_id, rating or None, comment or None)``; the
    rating 0-10 here, the survey's own scale (CSAT 1-5, NPS 0-10) checked by the hub."""
    survey_id, rating, comment = frame.get("survey_id"), frame.get("rating"), frame.get("comment")
    if not is_id(survey_id):
        raise FrameError("invalid_frame", "'survey_id' must be a survey id")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 10):
        raise FrameError("invalid_input", "'rating' must be a whole number from 0 to 10")
    if comment is not None:
        if not isinstance(comment, str):
            raise FrameError("invalid_frame", "'comment' must be a string")
        comment = comment.strip()
        if len(comment) > COMMENT_MAX:
            raise FrameError("invalid_input", f"'comment' is longer than {COMMENT_MAX} characters")
        comment = comment or None
    if rating is None and comment is None:
        raise FrameError("invalid_input", "send a 'rating' or a 'comment'")
    assert isinstance(survey_id, int)  # is_id checked it
    return survey_id, rating, comment


CHOICES_MAX = 5
CHOICE_MAX = 200


def choices_of(metadata: dict[str, Any]) -> list[str]:
    """The answers a bot's clarifying question offers (the article titles of
    ``decision.offered``), for the widget's quick-reply buttons: a click sends
    the title as the visitor's message, which the bot takes as their pick."""
    decision = metadata.get("decision")
    if not isinstance(decision, dict) or decision.get("action") != "clarify":
        return []
    offered = decision.get("offered")
    titles = [o.get("title") for o in offered if isinstance(o, dict)] if isinstance(offered, list) else []
    return [t.strip()[:CHOICE_MAX] for t in titles if isinstance(t, str) and t.strip()][:CHOICES_MAX]


def survey_frame(metadata: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The ``survey`` frame that follows a survey message (CSAT or NPS; None: not one)."""
    survey = metadata.get("csat")
    if not isinstance(survey, dict) or not is_id(survey.get("survey_id")):
        return None
    return {
        "type": "survey",
        "survey_id": survey["survey_id"],
        "question": text,
        "expires_at": survey.get("expires_at"),
        **survey_scale(survey),
    }


def survey_scale(survey: dict[str, Any]) -> dict[str, int]:
    """The answers a survey takes, for the widget's buttons: ``low``..``high``
    (a survey sent before NPS carries none: CSAT's 1-5)."""
    low, high = survey.get("low", 1), survey.get("high", 5)
    if not isinstance(low, int) or not isinstance(high, int) or not 0 <= low <= high <= 10:
        low, high = 1, 5
    return {"low": low, "high": high}
