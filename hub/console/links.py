"""One-time sign-in links: ``hub users link``, ``hub users bootstrap``, a new person's first sign-in.

A link is ``{HUB_PUBLIC_URL}/console/link/{token}``: 256 random bits, stored
as SHA-256, valid for ``HUB_CONSOLE_LINK_HOURS`` (24 h) and used once. A new
link for someone makes their unused older ones void, so only the last one
printed works.

Opening the link shows a page with one button; the button (a POST) spends
the link and signs in with a new session id, then lands on the account page
to set a password. Spending it on the GET would let any link preview
(a chat's unfurler, a mail scanner) use it up before the person clicks. A
user with a second factor still enters a code: the link stands in for the
password only.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.console import sessions
from hub.console.login import audit
from hub.console.render import render
from hub.console.sessions import Method, Stage
from hub.storage.schema import sign_in_links, users

PATH = "/console/link/"
ACCOUNT_PATH = "/console/account"
routes = web.RouteTableDef()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_link(conn: Connection, user_id: int, *, now: datetime, valid_for: timedelta) -> str:
    """A new one-time token for ``user_id`` (older unused ones stop working)."""
    conn.execute(
        sa.update(sign_in_links)
        .where(sign_in_links.c.user_id == user_id, sign_in_links.c.used_at.is_(None))
        .values(expires_at=now)
    )
    conn.execute(sa.delete(sign_in_links).where(sign_in_links.c.expires_at < now - timedelta(days=30)))
    token = secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(sign_in_links).values(
            token_hash=hash_token(token), user_id=user_id, created_at=now, expires_at=now + valid_for
        )
    )
    return token


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{PATH}{token}"


def _usable(token: str, now: datetime) -> Any:
    return sa.and_(
        sign_in_links.c.token_hash == hash_token(token),
        sign_in_links.c.used_at.is_(None),
        sign_in_links.c.expires_at > now,
    )


def peek_link(conn: Connection, token: str, *, now: datetime) -> Any:
    """The user a usable link signs in as (name, e-mail), without spending it."""
    return conn.execute(
        sa.select(users.c.name, users.c.email)
        .join(sign_in_links, sign_in_links.c.user_id == users.c.id)
        .where(_usable(token, now))
    ).first()


def use_link(conn: Connection, token: str, *, now: datetime) -> Any:
    """Spend the link: the user row (id, second factor) it signs in as, or None
    (unknown, used, expired). Conditional, so two clicks never both win."""
    spent = conn.execute(
        sa.update(sign_in_links).where(_usable(token, now)).values(used_at=now).returning(sign_in_links.c.user_id)
    ).first()
    if spent is None:
        return None
    return conn.execute(sa.select(users.c.id, users.c.totp_enabled_at).where(users.c.id == spent.user_id)).one()


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    return token if len(token) <= 100 else ""


@routes.get(PATH + "{token}")
async def link_page(request: web.Request) -> web.StreamResponse:
    now = request.app[keys.CLOCK].now()
    found = await request.app[keys.DATABASE].read(peek_link, _token(request), now=now)
    return render(
        request,
        "link.html",
        status=200 if found is not None else 410,
        found=found,
        login_csrf=sessions.login_token(request),
    )


@routes.post(PATH + "{token}")
async def link_sign_in(request: web.Request) -> web.StreamResponse:
    db = request.app[keys.DATABASE]
    now = request.app[keys.CLOCK].now()
    found = await db.write(use_link, _token(request), now=now)
    if found is None:
        await audit(request, None, "console.sign_in_failed", reason="link")
        return render(request, "link.html", status=410, found=None, login_csrf=sessions.login_token(request))
    if found.totp_enabled_at is not None:
        response = web.HTTPSeeOther(f"{sessions.MFA_PATH}?next={ACCOUNT_PATH}")
        await sessions.sign_in(request, response, found.id, stage=Stage.MFA, method=Method.LINK)
        return response
    response = web.HTTPSeeOther(ACCOUNT_PATH)
    await sessions.sign_in(request, response, found.id, stage=Stage.FULL, method=Method.LINK)
    await audit(request, found.id, "console.sign_in", factor="link")
    return response
