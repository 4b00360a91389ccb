"""``/console/account``: one's own password, second factor and sessions.

- A new password needs the current one (unless this session came from a
  one-time link: that is how a new person, or one who forgot it, sets it);
  it ends every other session of the user and gives this browser a new id.
- The second factor (``/console/account/mfa``): enrolment shows a QR code
  drawn here and the secret as text; a code from the app enables it and
  shows ten recovery codes once; turning it off, or new recovery codes, need
  a code. Enabling it ends the user's other sessions (they were opened
  without it). Under HUB_REQUIRE_MFA an admin without it reaches only this page.
- The sessions list (address, browser, last seen), "sign out" of one, and
  "sign out everywhere".

Each change is audited with ``via="console"`` in its own transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit, record
from hub.console import passwords, sessions, totp
from hub.console.login import count_failure, refuse_while_limited
from hub.console.render import render
from hub.console.sessions import ConsoleSession, Method, Stage
from hub.errors import Forbidden, InvalidInput, NotFound
from hub.models import Role
from hub.storage.schema import console_sessions, users

PATH = "/console/account"
routes = web.RouteTableDef()

DONE = {
    "password": "Your password is set. Your other sessions were signed out.",
    "mfa-off": "The second factor is off.",
    "signed-out": "That session is signed out.",
}


def _audit(conn: Connection, user_id: int, action: str, **details: Any) -> None:
    record(conn, Audit(Actor(user_id, "console"), action, "user", user_id, details))


def _now(request: web.Request) -> datetime:
    return request.app[keys.CLOCK].now()


async def _form(request: web.Request) -> dict[str, str]:
    return {key: value for key, value in (await request.post()).items() if isinstance(value, str)}


# --- the page ------------------------------------------------------------------------


async def account_page(
    request: web.Request, session: ConsoleSession, *, status: int = 200, error: str = "", **context: Any
) -> web.Response:
    db = request.app[keys.DATABASE]
    user = session.user
    factor = await db.read(totp.state, user.id)
    listed = await db.read(sessions.list_user_sessions, user.id, now=_now(request))
    has_password = await db.read(
        lambda conn: (
            conn.execute(sa.select(users.c.password_hash).where(users.c.id == user.id)).scalar_one() is not None
        )
    )
    return render(
        request,
        "account.html",
        status=status,
        account=user,
        factor=factor,
        sessions=listed,
        current_session_id=session.id,
        has_password=has_password,
        needs_current=has_password and session.method is not Method.LINK,
        min_length=passwords.MIN_LENGTH,
        error=error,
        done=DONE.get(request.query.get("done", ""), ""),
        **context,
    )


@routes.get(PATH)
async def account(request: web.Request) -> web.StreamResponse:
    await sessions.require_user(request)
    session = await sessions.require_session(request)
    return await account_page(request, session)


# --- password --------------------------------------------------------------------------


def change_password(
    conn: Connection, user_id: int, password_hash: str, *, now: datetime, session_args: dict[str, Any]
) -> str:
    """Set the hash, end every session of the user and open this browser's new one (returned)."""
    passwords.set_password_hash(conn, user_id, password_hash, now=now)
    ended = sessions.end_user_sessions(conn, user_id)
    _audit(conn, user_id, "console.password_change", sessions_ended=max(0, ended - 1))
    return sessions.open_session(conn, user_id, **session_args)


@routes.post(PATH + "/password")
async def password(request: web.Request) -> web.StreamResponse:
    await sessions.require_user(request)
    session = await sessions.require_session(request)
    user = session.user
    form = await _form(request)
    db = request.app[keys.DATABASE]
    stored = await db.read(
        lambda conn: conn.execute(sa.select(users.c.password_hash).where(users.c.id == user.id)).scalar_one()
    )
    if stored is not None and session.method is not Method.LINK:
        await refuse_while_limited(request, user.email)
        if not (await passwords.verify(stored, form.get("current_password", ""))).ok:
            await count_failure(request, user.email)
            return await account_page(request, session, status=400, error="Your current password is not right.")
    new = form.get("new_password", "")
    if new != form.get("confirm_password", ""):
        return await account_page(request, session, status=400, error="The two new passwords are not the same.")
    try:
        new_hash = await passwords.hash_password(new)
    except InvalidInput as err:
        return await account_page(request, session, status=400, error=err.message[:1].upper() + err.message[1:] + ".")
    args = sessions.session_args(request, stage=Stage.FULL, method=Method.PASSWORD)
    session_id = await db.write(change_password, user.id, new_hash, now=_now(request), session_args=args)
    response = web.HTTPSeeOther(f"{PATH}?done=password")
    sessions.start_session(request, response, session_id, valid_for=args["lifetime"])
    return response


# --- sessions ---------------------------------------------------------------------------


def end_all(conn: Connection, user_id: int) -> int:
    ended = sessions.end_user_sessions(conn, user_id)
    _audit(conn, user_id, "console.sign_out_everywhere", sessions_ended=ended)
    return ended


@routes.post(PATH + "/sessions/end-all")
async def sign_out_everywhere(request: web.Request) -> web.StreamResponse:
    await sessions.require_user(request)
    session = await sessions.require_session(request)
    await request.app[keys.DATABASE].write(end_all, session.user.id)
    response = web.HTTPSeeOther(sessions.LOGIN_PATH)
    await sessions.sign_out(request, response)
    return response


def end_one(conn: Connection, user_id: int, session_id: int) -> int:
    ended = conn.execute(
        sa.delete(console_sessions).where(console_sessions.c.id == session_id, console_sessions.c.user_id == user_id)
    ).rowcount
    if ended:
        _audit(conn, user_id, "console.sign_out_session", session_id=session_id)
    return ended


@routes.post(PATH + "/sessions/{session_id:[0-9]{1,18}}/end")
async def sign_out_session(request: web.Request) -> web.StreamResponse:
    await sessions.require_user(request)
    session = await sessions.require_session(request)
    target = int(request.match_info["session_id"])
    if not await request.app[keys.DATABASE].write(end_one, session.user.id, target):
        raise NotFound("no such session of yours")
    if target == session.id:
        response = web.HTTPSeeOther(sessions.LOGIN_PATH)
        await sessions.sign_out(request, response)
        return response
    return web.HTTPSeeOther(f"{PATH}?done=signed-out")


# --- the second factor -----------------------------------------------------------------


async def mfa_page(
    request: web.Request, session: ConsoleSession, *, status: int = 200, error: str = "", restart: bool = False
) -> web.Response:
    settings = request.app[keys.SETTINGS]
    user = session.user
    factor = await request.app[keys.DATABASE].write(totp.start_enrolment, user.id, restart=restart)
    enrol: dict[str, str] | None = None
    if factor.pending_secret is not None:
        uri = totp.provisioning_uri(factor.pending_secret, user.email, settings.site_name)
        enrol = {"qr": totp.qr_data_uri(uri), "secret": totp.grouped(factor.pending_secret), "uri": uri}
    return render(
        request,
        "account_mfa.html",
        status=status,
        account=user,
        factor=factor,
        enrol=enrol,
        required=sessions.needs_enrolment(settings, session) or (settings.require_mfa and user.role is Role.ADMIN),
        error=error,
    )


@routes.get(sessions.ENROL_PATH)
async def mfa(request: web.Request) -> web.StreamResponse:
    return await mfa_page(request, await sessions.require_session(request))


@routes.post(sessions.ENROL_PATH + "/restart")
async def mfa_restart(request: web.Request) -> web.StreamResponse:
    return await mfa_page(request, await sessions.require_session(request), restart=True)


def enable(conn: Connection, user_id: int, code: str, *, now: datetime, keep: int) -> list[str] | None:
    codes = totp.confirm_enrolment(conn, user_id, code, now=now)
    if codes is not None:
        ended = sessions.end_user_sessions(conn, user_id, keep=keep)
        _audit(conn, user_id, "console.mfa_enable", sessions_ended=ended)
    return codes


@routes.post(sessions.ENROL_PATH + "/enable")
async def mfa_enable(request: web.Request) -> web.StreamResponse:
    session = await sessions.require_session(request)
    user = session.user
    await refuse_while_limited(request, user.email)
    code = (await _form(request)).get("code", "")[:64]
    codes = await request.app[keys.DATABASE].write(enable, user.id, code, now=_now(request), keep=session.id)
    if codes is None:
        await count_failure(request, user.email)
        return await mfa_page(request, session, status=400, error="That code is not right. Try the next one.")
    return render(request, "recovery_codes.html", account=user, codes=codes, enabled=True)


def turn_off(conn: Connection, user_id: int, code: str, *, now: datetime) -> bool:
    done = totp.disable(conn, user_id, code, now=now)
    if done:
        _audit(conn, user_id, "console.mfa_disable")
    return done


@routes.post(sessions.ENROL_PATH + "/disable")
async def mfa_disable(request: web.Request) -> web.StreamResponse:
    user = await sessions.require_user(request)
    session = await sessions.require_session(request)
    if request.app[keys.SETTINGS].require_mfa and user.role is Role.ADMIN:
        raise Forbidden("admins must keep a second factor here (HUB_REQUIRE_MFA)")
    await refuse_while_limited(request, user.email)
    code = (await _form(request)).get("code", "")[:64]
    if not await request.app[keys.DATABASE].write(turn_off, user.id, code, now=_now(request)):
        await count_failure(request, user.email)
        return await mfa_page(request, session, status=400, error="That code is not right, or it was used already.")
    return web.HTTPSeeOther(f"{PATH}?done=mfa-off")


def new_codes(conn: Connection, user_id: int, code: str, *, now: datetime) -> list[str] | None:
    codes = totp.regenerate_recovery_codes(conn, user_id, code, now=now)
    if codes is not None:
        _audit(conn, user_id, "console.recovery_codes")
    return codes


@routes.post(sessions.ENROL_PATH + "/recovery-codes")
async def mfa_recovery_codes(request: web.Request) -> web.StreamResponse:
    user = await sessions.require_user(request)
    session = await sessions.require_session(request)
    await refuse_while_limited(request, user.email)
    code = (await _form(request)).get("code", "")[:64]
    codes = await request.app[keys.DATABASE].write(new_codes, user.id, code, now=_now(request))
    if codes is None:
        await count_failure(request, user.email)
        return await mfa_page(request, session, status=400, error="That code is not right, or it was used already.")
    return render(request, "recovery_codes.html", account=user, codes=codes, enabled=False)
