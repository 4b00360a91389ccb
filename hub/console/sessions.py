"""Who is signed in to the console: server-side sessions, and CSRF.

A session is a row of ``console_sessions``. The browser holds a random
256-bit id in a cookie (``HttpOnly``, ``SameSite=Lax``, ``Path=/``,
``Secure`` and the ``__Host-`` prefix when HUB_PUBLIC_URL is https); the
row holds only its SHA-256, so a copy of the database signs nobody in. A row
works on every hub instance, and deleting it signs that browser out at the
next request. Each session ends after ``HUB_CONSOLE_SESSION_IDLE_MINUTES``
without a request and ``HUB_CONSOLE_SESSION_MAX_HOURS`` after sign-in.
Every sign-in (password, second factor, one-time link) opens a **new** id
and deletes the one the browser had (no session fixation).

The API other console modules use: ``current_user``, ``require_user``,
``csrf_token``; sign-in pages use ``sign_in``/``sign_out``.

A session's CSRF token is derived from its id (HMAC-SHA256 keyed by the id),
so it is stored nowhere and only the browser holding the cookie can know it.
``csrf_middleware`` checks it, in constant time, on every POST, PUT, PATCH
and DELETE under ``/console`` (header ``X-CSRF-Token`` or form field
``csrf_token``), and refuses a cross-origin ``Origin``/``Referer``. The
sign-in form has no session yet: it carries a pre-session token that must
match a cookie of its own (double submit).

Why not aiohttp-session: its storages keep one opaque blob per session id,
saved when the handler changed it. Here the server must find and delete a
*user's* sessions (sign out everywhere, a password change, an admin
removing someone), list them with their address and last use, expire them
on idle and absolute deadlines read from the hub's clock, and never write a
row for a visitor who has not signed in. Columns and a few statements do all
of that; a blob store would need them anyway, beside the library.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.engine import Connection

from hub import keys
from hub.config import Settings
from hub.errors import Forbidden, Unauthorized
from hub.models import Role, User
from hub.ratelimit import client_ip
from hub.storage import rows
from hub.storage.schema import console_sessions, users

PREFIX = "/console"
LOGIN_PATH = "/console/login"
MFA_PATH = "/console/login/mfa"
ENROL_PATH = "/console/account/mfa"
HOME_PATH = "/console"
SESSION_COOKIE = "sh_console"
# Browsers only accept a __Host- cookie with Secure, Path=/ and no Domain:
# nothing on a sibling subdomain can plant or overwrite it.
SECURE_SESSION_COOKIE = "__Host-sh_console"
LOGIN_COOKIE = "sh_console_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# last_seen_at is written at most this often per session (one write a minute, not one per request).
TOUCH_EVERY = timedelta(seconds=60)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LINK_PREFIX = "/console/link/"
# A session at the ``mfa`` stage lasts this long: enough to type a code.
MFA_WINDOW = timedelta(minutes=10)
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,100}")

_SESSION = web.RequestKey("console_session", object)  # ConsoleSession | None once loaded
_NEW_SESSION_ID = web.RequestKey("console_new_session_id", str)
_NEW_LOGIN_TOKEN = web.RequestKey("console_new_login_token", str)


class Stage(StrEnum):
    MFA = "mfa"  # the first factor was right; the second factor is still to come
    FULL = "full"


class Method(StrEnum):
    """How the first factor was proven."""

    PASSWORD = "password"
    LINK = "link"  # a one-time sign-in link: a password may be set without the current one


# The door is kept with the stage, in the one column ("full+link"): a
# session's state is both, and migration 0009 is already out there.
LINK_SUFFIX = "+link"


def stored_stage(stage: Stage, method: Method) -> str:
    return stage.value + (LINK_SUFFIX if method is Method.LINK else "")


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: int
    user: User
    stage: Stage
    method: Method
    totp_enabled: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One of a user's sessions, as the account page lists them."""

    id: int
    ip: str
    user_agent: str
    created_at: datetime
    last_seen_at: datetime
    current: bool = False


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def token_for(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"servicehub console csrf", hashlib.sha256).hexdigest()


# --- storage: plain functions over a Connection (``Database.read``/``write``) -------


def open_session(
    conn: Connection,
    user_id: int,
    *,
    stage: Stage,
    now: datetime,
    idle: timedelta,
    lifetime: timedelta,
    method: Method = Method.PASSWORD,
    ip: str = "",
    user_agent: str = "",
    replaces: str | None = None,
) -> str:
    """A new session for ``user_id``; returns its id (the cookie's value; only
    its hash is stored). ``replaces``: the hash of the session the browser
    had, deleted in the same transaction. Expired sessions go too."""
    conn.execute(
        sa.delete(console_sessions).where(
            sa.or_(console_sessions.c.expires_at <= now, console_sessions.c.idle_expires_at <= now)
        )
    )
    if replaces is not None:
        conn.execute(sa.delete(console_sessions).where(console_sessions.c.session_hash == replaces))
    session_id = secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(console_sessions).values(
            session_hash=hash_id(session_id),
            user_id=user_id,
            stage=stored_stage(stage, method),
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + idle, now + lifetime),
            expires_at=now + lifetime,
            ip=ip[:64],
            user_agent=user_agent[:300],
        )
    )
    return session_id


def load_session(conn: Connection, session_hash: str, now: datetime) -> ConsoleSession | None:
    row = conn.execute(
        sa.select(
            console_sessions.c.id.label("session_id"),
            console_sessions.c.stage,
            console_sessions.c.created_at.label("session_created_at"),
            console_sessions.c.last_seen_at,
            console_sessions.c.expires_at,
            *users.c,
        )
        .join(users, users.c.id == console_sessions.c.user_id)
        .where(
            console_sessions.c.session_hash == session_hash,
            console_sessions.c.expires_at > now,
            console_sessions.c.idle_expires_at > now,
        )
    ).first()
    if row is None:
        return None
    return ConsoleSession(
        id=row.session_id,
        user=rows.user(row),
        stage=Stage(row.stage.partition(LINK_SUFFIX)[0]),
        method=Method.LINK if row.stage.endswith(LINK_SUFFIX) else Method.PASSWORD,
        totp_enabled=row.totp_enabled_at is not None,
        created_at=row.session_created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )


def touch_session(conn: Connection, session: ConsoleSession, *, now: datetime, idle: timedelta) -> None:
    conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.id == session.id)
        .values(last_seen_at=now, idle_expires_at=min(now + idle, session.expires_at))
    )


def end_session(conn: Connection, session_hash: str) -> int:
    return conn.execute(sa.delete(console_sessions).where(console_sessions.c.session_hash == session_hash)).rowcount


def end_user_sessions(conn: Connection, user_id: int, *, keep: int | None = None) -> int:
    """Sign ``user_id`` out everywhere (but in session ``keep``); how many ended."""
    stmt = sa.delete(console_sessions).where(console_sessions.c.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(console_sessions.c.id != keep)
    return conn.execute(stmt).rowcount


def list_user_sessions(conn: Connection, user_id: int, *, now: datetime) -> list[SessionInfo]:
    found = conn.execute(
        sa.select(console_sessions)
        .where(
            console_sessions.c.user_id == user_id,
            console_sessions.c.expires_at > now,
            console_sessions.c.idle_expires_at > now,
        )
        .order_by(console_sessions.c.last_seen_at.desc(), console_sessions.c.id.desc())
    )
    return [SessionInfo(r.id, r.ip, r.user_agent, r.created_at, r.last_seen_at) for r in found]


# --- requests ----------------------------------------------------------------------


def _settings(request: web.Request) -> Settings:
    return request.app[keys.SETTINGS]


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.lower().startswith("https://")


def session_cookie_name(settings: Settings) -> str:
    return SECURE_SESSION_COOKIE if secure_cookies(settings) else SESSION_COOKIE


def idle_timeout(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.console_session_idle_minutes)


def lifetime(settings: Settings) -> timedelta:
    return timedelta(hours=settings.console_session_max_hours)


def session_id_of(request: web.Request) -> str | None:
    """The raw session id this request carries (or was just given by a sign-in)."""
    if _NEW_SESSION_ID in request:
        return request[_NEW_SESSION_ID] or None
    given = request.cookies.get(session_cookie_name(_settings(request)), "")
    return given if _TOKEN_SHAPE.fullmatch(given) else None


async def console_session(request: web.Request) -> ConsoleSession | None:
    """The session this request carries, at whatever stage (cached on the request)."""
    if _SESSION in request:
        cached: ConsoleSession | None = request[_SESSION]  # type: ignore[assignment]  # the key holds ConsoleSession | None
        return cached
    session_id = session_id_of(request)
    found: ConsoleSession | None = None
    if session_id is not None:
        now = request.app[keys.CLOCK].now()
        db = request.app[keys.DATABASE]
        found = await db.read(load_session, hash_id(session_id), now)
        if found is not None and now - found.last_seen_at >= TOUCH_EVERY:
            await db.write(touch_session, found, now=now, idle=idle_timeout(_settings(request)))
    request[_SESSION] = found
    return found


def needs_enrolment(settings: Settings, session: ConsoleSession) -> bool:
    """HUB_REQUIRE_MFA=true and an admin without a second factor: only the enrolment page is open."""
    return settings.require_mfa and session.user.role is Role.ADMIN and not session.totp_enabled


def _signed_in(request: web.Request, session: ConsoleSession | None) -> User | None:
    if session is None or session.stage is not Stage.FULL or needs_enrolment(_settings(request), session):
        return None
    return session.user


def cached_user(request: web.Request) -> User | None:
    """``current_user`` as far as this request has loaded it (for templates)."""
    session: Any = request.get(_SESSION)
    return _signed_in(request, session)


def cached_session(request: web.Request) -> ConsoleSession | None:
    session: Any = request.get(_SESSION)
    return session if isinstance(session, ConsoleSession) else None


async def current_user(request: web.Request) -> User | None:
    """The signed-in user: a live session, with the second factor done when the
    user has one (or must have one: HUB_REQUIRE_MFA for admins); else None."""
    return _signed_in(request, await console_session(request))


def local_path(target: str | None, default: str = HOME_PATH) -> str:
    """``target`` when it is a path on this site (``/console...``), else ``default``:
    a ``next`` parameter must never send anyone to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 or c == "\x7f" for c in target):
        return default
    if parts.path != PREFIX and not parts.path.startswith(PREFIX + "/"):
        return default
    return target


def login_url(request: web.Request, *, path: str = LOGIN_PATH) -> str:
    here = request.path_qs
    return path if local_path(here, "") in ("", HOME_PATH) else f"{path}?next={quote(here, safe='/')}"


async def require_user(request: web.Request, role: Role = Role.VIEWER) -> User:
    """The signed-in user with at least ``role``. Not signed in: a page (GET,
    HEAD) is sent to the sign-in form and back, anything else is a 401. Signed
    in without the role: 403. A session half-way (code to enter, or an admin
    who must enrol a second factor) goes to that step instead."""
    session = await console_session(request)
    user = _signed_in(request, session)
    if user is not None:
        if not user.role.allows(role):
            raise Forbidden(f"this needs the {role.value} role; you are {user.role.value}")
        return user
    page = request.method in ("GET", "HEAD")
    if session is not None and session.stage is Stage.FULL:  # signed in, second factor still to enrol
        if page:
            raise web.HTTPSeeOther(ENROL_PATH)
        raise Forbidden("set up a second factor on your account page first")
    if page:
        raise web.HTTPSeeOther(login_url(request, path=MFA_PATH if session is not None else LOGIN_PATH))
    raise Unauthorized("sign in first")


async def require_session(request: web.Request) -> ConsoleSession:
    """A fully signed-in session, even one that must still enrol a second
    factor (the enrolment page and sign-out accept it)."""
    session = await console_session(request)
    if session is None or session.stage is not Stage.FULL:
        await require_user(request)  # raises: to the sign-in page, or 401
        raise AssertionError("unreachable")
    return session


def login_token(request: web.Request) -> str:
    """The pre-session CSRF token of the sign-in form (its cookie is set with the response)."""
    if _NEW_LOGIN_TOKEN in request:
        return request[_NEW_LOGIN_TOKEN]
    given = request.cookies.get(LOGIN_COOKIE, "")
    if _TOKEN_SHAPE.fullmatch(given):
        return given
    minted = request[_NEW_LOGIN_TOKEN] = secrets.token_urlsafe(32)
    return minted


def csrf_token(request: web.Request) -> str:
    """The token this request's forms and scripts send back: the session's, or
    before sign-in the pre-session one."""
    session_id = session_id_of(request)
    return token_for(session_id) if session_id is not None else login_token(request)


def _set_cookie(response: web.StreamResponse, settings: Settings, name: str, value: str, **options: Any) -> None:
    response.set_cookie(name, value, httponly=True, secure=secure_cookies(settings), **options)


def session_args(request: web.Request, *, stage: Stage, method: Method = Method.PASSWORD) -> dict[str, Any]:
    """The keyword arguments of ``open_session`` for a sign-in from this
    request (for a transaction that opens a session beside other changes)."""
    settings = _settings(request)
    previous = session_id_of(request)
    return {
        "stage": stage,
        "method": method,
        "now": request.app[keys.CLOCK].now(),
        "idle": idle_timeout(settings),
        "lifetime": min(lifetime(settings), MFA_WINDOW) if stage is Stage.MFA else lifetime(settings),
        "ip": client_ip(request),
        "user_agent": request.headers.get("User-Agent", ""),
        "replaces": hash_id(previous) if previous is not None else None,
    }


def start_session(request: web.Request, response: web.StreamResponse, session_id: str, *, valid_for: timedelta) -> None:
    """This request and ``response`` now carry the new ``session_id``."""
    settings = _settings(request)
    request[_NEW_SESSION_ID] = session_id
    request.pop(_SESSION, None)
    _set_cookie(
        response,
        settings,
        session_cookie_name(settings),
        session_id,
        path="/",
        samesite="Lax",
        max_age=int(valid_for.total_seconds()),
    )
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)


async def sign_in(
    request: web.Request,
    response: web.StreamResponse,
    user_id: int,
    *,
    stage: Stage,
    method: Method = Method.PASSWORD,
) -> str:
    """Open a new session for ``user_id`` (deleting the one this browser had)
    and set its cookie on ``response``; returns the new id."""
    args = session_args(request, stage=stage, method=method)
    session_id = await request.app[keys.DATABASE].write(open_session, user_id, **args)
    start_session(request, response, session_id, valid_for=args["lifetime"])
    return session_id


async def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    """End this browser's session (if any) and clear its cookie."""
    session_id = session_id_of(request)
    if session_id is not None:
        await request.app[keys.DATABASE].write(end_session, hash_id(session_id))
    request[_NEW_SESSION_ID] = ""
    request[_SESSION] = None
    settings = _settings(request)
    response.del_cookie(
        session_cookie_name(settings), path="/", secure=secure_cookies(settings), httponly=True, samesite="Lax"
    )


def set_login_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """Hand the browser the pre-session token minted for this response's form (``render`` calls it)."""
    minted = request.get(_NEW_LOGIN_TOKEN)
    if minted:
        _set_cookie(response, _settings(request), LOGIN_COOKIE, minted, path=PREFIX, samesite="Strict", max_age=3600)


# --- CSRF --------------------------------------------------------------------------


def pre_session(path: str) -> bool:
    """Forms posted before there is a session (sign-in, a one-time link): they
    carry the pre-session token instead of a session's."""
    return path == LOGIN_PATH or path.startswith(LINK_PREFIX)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def same_origin(request: web.Request) -> bool:
    """No ``Origin``/``Referer``, or one naming this hub (as the request
    reached it, or as HUB_PUBLIC_URL names it behind a proxy)."""
    allowed = {f"{request.scheme}://{request.host}".lower(), _origin(_settings(request).public_url)}
    origin = request.headers.get("Origin")
    if origin is not None:
        return _origin(origin) in allowed
    referer = request.headers.get("Referer")
    if referer:
        return _origin(referer) in allowed
    return True


async def _sent_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (403, before the handler runs) a state-changing console request
    without this session's token or from another origin."""
    if request.method not in UNSAFE_METHODS or not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return await handler(request)
    if not same_origin(request):
        raise Forbidden("cross-origin request refused")
    if pre_session(request.path):
        expected = request.cookies.get(LOGIN_COOKIE, "")
    else:
        session_id = session_id_of(request)
        if session_id is None:
            # No session, no authority to abuse: the handler answers 401.
            return await handler(request)
        expected = token_for(session_id)
    sent = await _sent_token(request)
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("the page's security token is missing or out of date; reload the page and try again")
    return await handler(request)
