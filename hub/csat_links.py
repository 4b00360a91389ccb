"""CSAT by e-mail: signed links per rating, and the pages they open.

The survey mail carries a link per rating, ``GET /csat/{token}/{rating}``;
the token names the survey and its expiry and is signed with a key derived
from ``HUB_EMAIL_REPLY_SECRET`` (the secret that already signs the reply
addresses, under its own label so a token of one kind is never valid as the
other), so no session and no login are needed.

Opening a link records nothing. Mail scanners (Outlook Safe Links,
Mimecast, Proofpoint) fetch every link in a mail before the customer sees
it, which would record the first rating for them. So ``GET`` (and ``HEAD``)
only shows a confirmation page: the ratings with the link's one selected,
an optional comment box and a button; the answer is recorded by the form's
``POST /csat/{token}`` (rating and comment together), under the same signed
token, once. A second answer is refused politely; an expired, forged or
malformed link gets a clear page (400/410), never a 500.

Pages follow the hub's conventions: autoescaped text, a strict
Content-Security-Policy (no script at all, no inline style), no caching,
not indexed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import time
from datetime import UTC, datetime

from aiohttp import web

from hub import keys
from hub.csat import COMMENT_MAX, REPLIES, Outcome, Survey
from hub.errors import InvalidInput, NotFound

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; style-src 'none'"
)


class BadLink(Exception):
    """A link whose token is forged, malformed or of another kind."""


class LinkSigner:
    """Signs and verifies survey tokens: ``{survey_id}.{expires}.{signature}``."""

    def __init__(self, secret: bytes, public_url: str) -> None:
        self._key = hmac.new(secret, b"hub-csat-links-v1", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")

    def _signature(self, purpose: str, survey_id: int, expires: int) -> str:
        digest = hmac.new(self._key, f"{purpose}:{survey_id}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def token(self, purpose: str, survey_id: int, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        return f"{survey_id}.{expires}.{self._signature(purpose, survey_id, expires)}"

    def verify(self, purpose: str, token: str) -> tuple[int, datetime]:
        """``(survey_id, expires_at)``; ``BadLink`` unless signed by us for ``purpose``."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(token) > 200:
            raise BadLink("malformed")
        survey_id, expires = int(parts[0]), int(parts[1])
        if not hmac.compare_digest(self._signature(purpose, survey_id, expires), parts[2]):
            raise BadLink("bad signature")
        return survey_id, datetime.fromtimestamp(expires, UTC)

    def rating_links(self, survey: Survey) -> list[tuple[str, str]]:
        """``(label, url)`` per answer on the survey's scale."""
        token = self.token("rate", survey.id, survey.expires_at)
        return [(label, f"{self.public_url}/csat/{token}/{rating}") for rating, label in survey.scale.labels()]

    def email_text(self, question: str, survey: Survey) -> str:
        lines = [f"{label}: {url}" for label, url in self.rating_links(survey)]
        return question + "\n\nChoose your answer:\n" + "\n".join(lines)


def _page(title: str, text: str, *, status: int = 200, form: str = "") -> web.Response:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</main></body></html>"
    )
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Robots-Tag": "noindex",
        },
    )


def _confirm_form(token: str, survey: Survey, chosen: int) -> str:
    """The ratings (``chosen`` selected), an optional comment and the button that records them."""
    scale = survey.scale
    options = "".join(
        f'<p><label><input type="radio" name="rating" value="{rating}"'
        f"{' checked' if rating == chosen else ''} required> {html.escape(label)}</label></p>"
        for rating, label in scale.labels()
    )
    return (
        f'<form method="post" action="/csat/{html.escape(token)}">'
        f"<fieldset><legend>{html.escape(scale.question)}</legend>{options}</fieldset>"
        '<p><label for="comment">Anything you would like to add? (optional)</label></p>'
        f'<p><textarea id="comment" name="comment" rows="5" cols="50" maxlength="{COMMENT_MAX}"></textarea></p>'
        '<p><button type="submit">Send my rating</button></p></form>'
    )


def _invalid() -> web.Response:
    return _page("Link not valid", "This survey link is not valid. Please use the link from your e-mail.", status=400)


def _closed() -> web.Response:
    return _page("Survey closed", "Sorry, this survey has closed.", status=410)


def _answered() -> web.Response:
    return _page("Thank you", REPLIES[Outcome.ALREADY_ANSWERED])


def _verified(request: web.Request) -> tuple[int, datetime] | web.Response:
    """The link's survey and expiry, or the page that refuses it."""
    signer = request.app[keys.CSAT].links
    if signer is None:
        raise web.HTTPNotFound()
    try:
        survey_id, expires_at = signer.verify("rate", request.match_info["token"])
    except BadLink:
        return _invalid()
    if expires_at.timestamp() <= time.time():
        return _closed()
    return survey_id, expires_at


routes = web.RouteTableDef()


@routes.get(r"/csat/{token}/{rating:\d{1,2}}")
async def confirm(request: web.Request) -> web.Response:
    """The confirmation page (GET and HEAD): records nothing."""
    verified = _verified(request)
    if isinstance(verified, web.Response):
        return verified
    survey_id, _ = verified
    service = request.app[keys.CSAT]
    try:
        survey = await service.survey(survey_id)
    except NotFound:  # erased since
        return _invalid()
    rating = int(request.match_info["rating"])
    if rating not in survey.scale:
        return _invalid()
    if survey.answered_at is not None:
        return _answered()
    if not survey.open_at(service.clock.now()):
        return _closed()
    token = request.match_info["token"]
    return _page("Your rating", "Please confirm your rating below.", form=_confirm_form(token, survey, rating))


@routes.post("/csat/{token}")
async def record(request: web.Request) -> web.Response:
    """The confirmed answer: the rating and the optional comment, recorded once."""
    verified = _verified(request)
    if isinstance(verified, web.Response):
        return verified
    survey_id, _ = verified
    try:
        form = await request.post()
    except ValueError:
        return _page("Rating not sent", "That form could not be read.", status=400)
    rating_text, comment = form.get("rating"), form.get("comment")
    if not isinstance(rating_text, str) or not rating_text.isdigit() or len(rating_text) > 2:
        return _page("Rating not sent", "Please choose a rating.", status=400)
    if comment is not None and not isinstance(comment, str):
        return _page("Rating not sent", "That comment could not be read.", status=400)
    try:
        result = await request.app[keys.CSAT].answer(survey_id, int(rating_text), comment)
    except NotFound:
        return _invalid()
    except InvalidInput as err:
        return _page("Rating not sent", err.message, status=400)
    if result.outcome == Outcome.EXPIRED:
        return _closed()
    if result.outcome == Outcome.ALREADY_ANSWERED:
        return _answered()
    scale = result.survey.scale
    said = f"You rated us {int(rating_text)} out of {scale.high}." + (
        " Thanks for your comment!" if result.survey.comment else ""
    )
    return _page("Thank you", f"{result.reply} {said}")
