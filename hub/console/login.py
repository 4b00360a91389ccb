"""Signing in and out of the console: e-mail and password, then the second factor when the user has one.

``GET/POST /console/login`` checks the password (argon2id, ``passwords``);
a user with TOTP gets a session at the ``mfa`` stage and goes on to
``/console/login/mfa`` (``mfa.py``), everyone else is signed in. Failed
attempts are limited per account and per client address with the hub's
limiter (``HUB_CONSOLE_LOGIN_RATE_LIMIT``, ``..._IP_RATE_LIMIT``; shared
through Redis when configured): while either is exhausted every attempt,
the right password included, gets a 429 page with ``Retry-After``. Every
sign-in and every failure is audited (``via="console"``).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit, record
from hub.console import passwords, sessions, totp
from hub.console.render import render
from hub.console.sessions import Stage
from hub.errors import RateLimited, Unauthorized
from hub.ratelimit import client_ip
from hub.storage.schema import users

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

WRONG = "The e-mail address or the password is not right."


def find_login(conn: Connection, email: str) -> Any:
    """The user row an e-mail signs in as (id, password hash, second factor), or None."""
    return conn.execute(
        sa.select(users.c.id, users.c.password_hash, users.c.totp_enabled_at).where(users.c.email == email)
    ).first()


def audit_sign_in(conn: Connection, user_id: int | None, action: str, **details: Any) -> None:
    record(conn, Audit(Actor(user_id, "console"), action, "user", user_id, details))


async def audit(request: web.Request, user_id: int | None, action: str, **details: Any) -> None:
    await request.app[keys.DATABASE].write(audit_sign_in, user_id, action, ip=client_ip(request), **details)


def limit_keys(request: web.Request, email: str) -> list[tuple[str, tuple[str, ...]]]:
    settings = request.app[keys.SETTINGS]
    return [
        (settings.console_login_rate_limit, ("console-login", "account", email)),
        (settings.console_login_ip_rate_limit, ("console-login", "ip", client_ip(request))),
    ]


async def refuse_while_limited(request: web.Request, email: str) -> None:
    limiter = request.app[keys.RATE_LIMITER]
    waits = [wait for rule, key in limit_keys(request, email) if (wait := await limiter.blocked(rule, *key))]
    if waits:
        raise RateLimited("too many failed sign-ins; wait a little and try again", retry_after=max(waits))


async def count_failure(request: web.Request, email: str) -> None:
    limiter = request.app[keys.RATE_LIMITER]
    for rule, key in limit_keys(request, email):
        await limiter.hit(rule, *key)


def login_page(
    request: web.Request, *, status: int = 200, error: str = "", email: str = "", next_path: str | None = None
) -> web.Response:
    next_path = sessions.local_path(request.query.get("next") if next_path is None else next_path, "")
    return render(
        request,
        "login.html",
        status=status,
        error=error,
        email=email,
        next_path=next_path,
        login_csrf=sessions.login_token(request),
    )


@routes.get(sessions.LOGIN_PATH)
async def login_form(request: web.Request) -> web.StreamResponse:
    if await sessions.current_user(request) is not None:
        return web.HTTPSeeOther(sessions.local_path(request.query.get("next")))
    return login_page(request)


@routes.post(sessions.LOGIN_PATH)
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email = str(form.get("email", "")).strip().lower()[:320]
    password = str(form.get("password", ""))
    next_path = sessions.local_path(str(form.get("next", "")) or request.query.get("next"))
    await refuse_while_limited(request, email)
    db = request.app[keys.DATABASE]
    found = await db.read(find_login, email) if email else None
    verdict = await passwords.verify(found.password_hash if found is not None else None, password)
    if found is None or not verdict.ok:
        await count_failure(request, email)
        await audit(
            request,
            found.id if found is not None else None,
            "console.sign_in_failed",
            reason="password" if found is not None else "unknown_account",
        )
        return login_page(request, status=401, error=WRONG, email=email, next_path=next_path)
    now = request.app[keys.CLOCK].now()
    if verdict.rehash is not None:
        await db.write(passwords.set_password_hash, found.id, verdict.rehash, now=now)
    if found.totp_enabled_at is not None:
        response = web.HTTPSeeOther(
            sessions.MFA_PATH
            if next_path == sessions.HOME_PATH
            else f"{sessions.MFA_PATH}?next={quote(next_path, safe='/')}"
        )
        await sessions.sign_in(request, response, found.id, stage=Stage.MFA)
        return response
    response = web.HTTPSeeOther(next_path)
    await sessions.sign_in(request, response, found.id, stage=Stage.FULL)
    await audit(request, found.id, "console.sign_in", factor="password", first_factor="password")
    return response


@routes.post("/console/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = await sessions.console_session(request)
    response = web.HTTPSeeOther(sessions.LOGIN_PATH)
    await sessions.sign_out(request, response)
    if session is not None:
        await audit(request, session.user.id, "console.sign_out")
    return response


def code_page(
    request: web.Request, *, status: int = 200, error: str = "", next_path: str | None = None
) -> web.Response:
    next_path = sessions.local_path(request.query.get("next") if next_path is None else next_path, "")
    return render(request, "login_mfa.html", status=status, error=error, next_path=next_path)


@routes.get(sessions.MFA_PATH)
async def code_form(request: web.Request) -> web.StreamResponse:
    session = await sessions.console_session(request)
    if session is None:
        return web.HTTPSeeOther(sessions.LOGIN_PATH)
    if session.stage is Stage.FULL:
        return web.HTTPSeeOther(sessions.local_path(request.query.get("next")))
    return code_page(request)


@routes.post(sessions.MFA_PATH)
async def code_submit(request: web.Request) -> web.StreamResponse:
    """The second step: a code from the authenticator app, or a recovery code.
    Limited like passwords (a six-digit code must not be guessed), and a
    success opens yet another new session id."""
    session = await sessions.console_session(request)
    if session is None or session.stage is not Stage.MFA:
        raise Unauthorized("sign in with your password first")
    form = await request.post()
    code = str(form.get("code", ""))[:64]
    next_path = sessions.local_path(str(form.get("next", "")) or request.query.get("next"))
    user = session.user
    await refuse_while_limited(request, user.email)
    factor = await request.app[keys.DATABASE].write(totp.use_either, user.id, code, now=request.app[keys.CLOCK].now())
    if factor is None:
        await count_failure(request, user.email)
        await audit(request, user.id, "console.sign_in_failed", reason="code")
        return code_page(
            request, status=401, error="That code is not right, or it was used already.", next_path=next_path
        )
    response = web.HTTPSeeOther(next_path)
    await sessions.sign_in(request, response, user.id, stage=Stage.FULL, method=session.method)
    await audit(request, user.id, "console.sign_in", factor=factor, first_factor=session.method.value)
    return response
