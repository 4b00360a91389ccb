"""The inbox's pages: ``GET /console`` and the fragments its script fetches.

- ``GET /console``: the inbox. A view and its filters are GET parameters
  (``view``, ``channel``, ``priority``, ``team``, ``status``, ``q``;
  ``cursor`` for a later page), so a view is a URL to share or bookmark.
  With no ``view`` an agent sees *Mine*, a viewer or an admin *All open*
  (an admin mostly supervises; a viewer has nothing assigned).
- ``GET /console/inbox/page``: the rows of the page after ``cursor`` (the
  "Load more" button), with the next cursor in ``X-Next-Cursor``.
- ``GET /console/inbox/rows?ids=1,2``: the rows among ``ids`` the view shows
  now; the live feed (``hub.console.live``) says which ids changed and the
  page re-reads them here, so what a user sees always went through this
  route's checks.

Every one needs a signed-in user (a viewer may read); the pages hold no
form that writes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.console import inbox
from hub.console.live import EVENTS_PATH
from hub.console.render import render
from hub.console.sessions import require_user
from hub.errors import InvalidInput
from hub.inputs import parse_id
from hub.models import ConversationStatus, Priority, Role, User

routes = web.RouteTableDef()

MAX_QUERY = 200
MAX_IDS = 100
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def default_view(user: User) -> inbox.View:
    return inbox.View.MINE if user.role == Role.AGENT else inbox.View.OPEN


def parse_filters(query: Any, user: User) -> inbox.Filters:
    """The view and filters of a request's query string; a value that is not
    one of the choices is a 400 naming the parameter."""

    def choice(name: str, kind: Any) -> Any:
        value = query.get(name, "").strip()
        if not value:
            return None
        try:
            return kind(value)
        except ValueError:
            raise InvalidInput(f"{name}: not one of {', '.join(v.value for v in kind)}") from None

    def name(param: str) -> str | None:
        value = query.get(param, "").strip()
        if value and not _NAME.match(value):
            raise InvalidInput(f"{param}: letters, digits, '.', '_' or '-', at most 64")
        return value or None

    search = query.get("q", "").strip()
    if len(search) > MAX_QUERY:
        raise InvalidInput(f"q: at most {MAX_QUERY} characters")
    return inbox.Filters(
        view=choice("view", inbox.View) or default_view(user),
        channel=name("channel"),
        priority=choice("priority", Priority),
        team=name("team"),
        status=choice("status", ConversationStatus),
        search=search or None,
    )


def filter_params(filters: inbox.Filters) -> dict[str, str]:
    """The query string of a view (what a link to it carries)."""
    params = {"view": filters.view.value}
    for key, value in (
        ("channel", filters.channel),
        ("priority", filters.priority),
        ("team", filters.team),
        ("status", filters.status),
        ("q", filters.search),
    ):
        if value:
            params[key] = str(value)
    return params


def sla_policy(app: web.Application) -> inbox.SlaPolicy:
    return inbox.sla_policy(app[keys.SETTINGS])


def _cursor(query: Any) -> inbox.Cursor | None:
    text = query.get("cursor", "")
    return inbox.Cursor.decode(text) if text else None


async def _page(request: web.Request, user: User, filters: inbox.Filters) -> inbox.InboxPage:
    return await request.app[keys.DATABASE].read(
        inbox.inbox_page,
        filters,
        user_id=user.id,
        now=request.app[keys.CLOCK].now(),
        sla=sla_policy(request.app),
        after=_cursor(request.query),
    )


def _page_and_teams(
    conn: Connection, filters: inbox.Filters, *, default_team: str, **kwargs: Any
) -> tuple[inbox.InboxPage, list[str]]:
    """A page and the teams of the filter form, in one read (one thread hop)."""
    return inbox.inbox_page(conn, filters, **kwargs), inbox.teams(conn, default_team)


def _context(request: web.Request) -> dict[str, Any]:
    return {"now": request.app[keys.CLOCK].now(), "ago": ago, "left": left}


@routes.get("/console")
async def inbox_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    filters = parse_filters(request.query, user)
    # Before reading: the stream replays whatever changes after this point.
    live_id = request.app[keys.CONSOLE_LIVE].last_id
    page, teams = await request.app[keys.DATABASE].read(
        _page_and_teams,
        filters,
        user_id=user.id,
        now=request.app[keys.CLOCK].now(),
        sla=sla_policy(request.app),
        after=_cursor(request.query),
        default_team=request.app[keys.SETTINGS].ticket_default_team,
    )
    params = filter_params(filters)
    return render(
        request,
        "inbox.html",
        page=page,
        filters=filters,
        params=params,
        views=[(view, {**params, "view": view.value}) for view in inbox.View],
        channels=sorted({*request.app[keys.CHANNELS].keys(), *([filters.channel] if filters.channel else [])}),
        priorities=[p.value for p in Priority],
        statuses=[s.value for s in ConversationStatus],
        teams=teams,
        paged=bool(request.query.get("cursor")),
        events_url=f"{EVENTS_PATH}?{urlencode({'last_event_id': live_id})}",
        **_context(request),
    )


@routes.get("/console/inbox/page")
async def more_rows(request: web.Request) -> web.Response:
    user = await require_user(request)
    filters = parse_filters(request.query, user)
    page = await _page(request, user, filters)
    response = render(request, "_inbox_rows.html", rows=page.rows, **_context(request))
    if page.next_cursor is not None:
        response.headers["X-Next-Cursor"] = page.next_cursor.encode()
    return response


@routes.get("/console/inbox/rows")
async def changed_rows(request: web.Request) -> web.Response:
    user = await require_user(request)
    filters = parse_filters(request.query, user)
    raw = [part for part in request.query.get("ids", "").split(",") if part.strip()]
    if len(raw) > MAX_IDS:
        raise InvalidInput(f"ids: at most {MAX_IDS}")
    parsed = [parse_id(part.strip()) for part in raw]
    ids = sorted({i for i in parsed if i is not None})
    if len(ids) != len(set(parsed)):
        raise InvalidInput("ids: conversation ids, comma-separated")
    rows = await request.app[keys.DATABASE].read(
        inbox.inbox_rows,
        ids,
        filters,
        user_id=user.id,
        now=request.app[keys.CLOCK].now(),
        sla=sla_policy(request.app),
    )
    return render(request, "_inbox_rows.html", rows=rows, **_context(request))


def ago(at: datetime, now: datetime) -> str:
    """``"4 min ago"``, ``"3 h ago"``, ``"just now"``: how long ago, short."""
    span = _span(now - at)
    return "just now" if span == "now" else f"{span} ago"


def left(sla: inbox.Sla) -> str:
    if sla.left.total_seconds() <= 0:
        return f"breached {_span(-sla.left)} ago"
    return f"{_span(sla.left)} left"


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return "now" if seconds < 5 else f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
