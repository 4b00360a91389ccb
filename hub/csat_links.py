"""CSAT by e-mail: one-click signed links per rating, and the pages they open.

The survey mail carries five links, ``GET /csat/{token}/{rating}``; the
token names the survey and its expiry and is signed with a key derived from
``HUB_EMAIL_REPLY_SECRET`` (the secret that already signs the reply
addresses, under its own label so a token of one kind is never valid as the
other), so no session and no login are needed. The page thanks the customer
and offers an optional comment form that posts to ``/csat/{token}/comment``
with a token of its own (purpose ``comment``). A second answer is refused
politely; an expired, forged or malformed link gets a clear page (400/410),
never a 500.

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
from hub.csat import COMMENT_MAX, Outcome
from hub.errors import InvalidInput, NotFound

PURPOSES = ("rate", "comment")
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

    def rating_links(self, survey_id: int, expires_at: datetime) -> list[str]:
        token = self.token("rate", survey_id, expires_at)
        return [f"{self.public_url}/csat/{token}/{rating}" for rating in range(1, 6)]

    def email_text(self, question: str, survey_id: int, expires_at: datetime) -> str:
        labels = ("1 (poor)", "2", "3", "4", "5 (great)")
        lines = [f"{label}: {url}" for label, url in zip(labels, self.rating_links(survey_id, expires_at), strict=True)]
        return question + "\n\nOne click is enough:\n" + "\n".join(lines)


def _page(title: str, text: str, *, status: int = 200, form_action: str | None = None) -> web.Response:
    form = ""
    if form_action is not None:
        form = (
            f'<form method="post" action="{html.escape(form_action)}">'
            '<p><label for="comment">Anything you would like to add? (optional)</label></p>'
            f'<p><textarea id="comment" name="comment" rows="5" cols="50" maxlength="{COMMENT_MAX}"></textarea></p>'
            '<p><button type="submit">Send comment</button></p></form>'
        )
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


def _invalid() -> web.Response:
    return _page("Link not valid", "This survey link is not valid. Please use the link from your e-mail.", status=400)


def _closed() -> web.Response:
    return _page("Survey closed", "Sorry, this survey has closed.", status=410)


def _signer(request: web.Request) -> LinkSigner | None:
    return request.app[keys.CSAT].links


routes = web.RouteTableDef()


@routes.get(r"/csat/{token}/{rating:\d}")
async def rate(request: web.Request) -> web.Response:
    signer = _signer(request)
    if signer is None:
        raise web.HTTPNotFound()
    try:
        survey_id, expires_at = signer.verify("rate", request.match_info["token"])
    except BadLink:
        return _invalid()
    rating = int(request.match_info["rating"])
    if not 1 <= rating <= 5:
        return _invalid()
    if expires_at.timestamp() <= time.time():
        return _closed()
    service = request.app[keys.CSAT]
    try:
        result = await service.answer(survey_id, rating)
    except NotFound:  # erased since
        return _invalid()
    if result.outcome == Outcome.EXPIRED:
        return _closed()
    if result.outcome == Outcome.ALREADY_ANSWERED:
        return _page("Thank you", result.reply)
    comment_token = signer.token("comment", survey_id, expires_at)
    return _page("Thank you", f"You rated us {rating} out of 5.", form_action=f"/csat/{comment_token}/comment")


@routes.post("/csat/{token}/comment")
async def comment(request: web.Request) -> web.Response:
    signer = _signer(request)
    if signer is None:
        raise web.HTTPNotFound()
    try:
        survey_id, expires_at = signer.verify("comment", request.match_info["token"])
    except BadLink:
        return _invalid()
    if expires_at.timestamp() <= time.time():
        return _closed()
    try:
        form = await request.post()
    except ValueError:
        return _page("Comment not sent", "That comment could not be read.", status=400)
    text = form.get("comment")
    if not isinstance(text, str) or not text.strip():
        return _page("Nothing to send", "The comment was empty; your rating is kept.", status=400)
    try:
        result = await request.app[keys.CSAT].comment(survey_id, text)
    except NotFound:
        return _invalid()
    except InvalidInput as err:
        return _page("Comment not sent", err.message, status=400)
    if result.outcome == Outcome.EXPIRED:
        return _closed()
    if result.outcome == Outcome.ALREADY_ANSWERED:
        return _page("Thank you", "Thanks, we already have your comment.")
    return _page("Thank you", "Thanks for your comment!")
