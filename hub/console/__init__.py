"""The agents' web console at ``/console`` (issue #16): server-rendered pages
with a small layer of ES modules, on the hub's own services and events.

What lives where:

- ``__init__.py``   ``setup_console(app)``: the console's routes, static files and middlewares
                    (called by ``hub.app.create_app``)
- ``sessions.py``   who is signed in: server-side sessions (``console_sessions``), the cookie,
                    ``current_user`` / ``require_user`` / ``csrf_token``, the CSRF middleware
- ``render.py``     the one Jinja2 environment, ``render(request, template, **context)``,
                    the security headers of every console response
- ``passwords.py``  argon2id hashing and checking, off the event loop
- ``login.py``      ``/console/login`` (password, rate-limited, audited), ``/console/login/mfa``
                    (the code step), ``/console/logout``
- ``totp.py``       the second factor: TOTP codes (never twice), recovery codes, the QR code
- ``account.py``    ``/console/account``: password, second factor (``/console/account/mfa``), sessions
- ``links.py``      one-time sign-in links (``/console/link/{token}``, ``hub users link``)
- ``supervisor.py`` ``/console/supervisor``: agents' load, the queue, tickets near or past SLA, reassigning
- ``dashboard.py``  ``/console/dashboard``: the reports as cards, charts (Chart.js, vendored under
                    ``static/vendor/chartjs``) and tables, live; their JSON and CSV for a session
- ``dashboard_figures.py`` the dashboard's cards, chart specifications and tables, from the reports
- ``conversation.py`` ``/console/conversations/{id}``: the contact's timeline, profile and ticket,
                    and every action on them (through the services the API and Slack use);
                    ``conversation_view.py`` reads what the page shows in one transaction
- ``inbox.py``      the inbox's queries: views, filters, search, keyset pages, SLA state
- ``inbox_pages.py`` ``/console`` (the inbox) and the row fragments its script fetches
- ``live.py``       ``/console/events``: the bus as a Server-Sent Events stream (event shapes there)
- ``templates/``    ``base.html`` (landmarks, nav, the CSRF meta tag) and the pages
- ``static/``       ``console.css``; ``console.js`` (CSRF header on fetch/htmx, the ``?``
                    shortcut help); pages add their own modules

The rule for every page: ``user = await require_user(request, Role.AGENT)``
first, ``render(request, "page.html", ...)`` last; forms post ``csrf_token``,
scripts send ``X-CSRF-Token`` (console.js does it for fetch and htmx).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from hub import keys

# --- the console's pages: the inbox and conversation modules import theirs here ---
from hub.console import account, conversation, dashboard, inbox_pages, links, live, login, sessions, supervisor
from hub.console.render import STATIC_DIR, console_headers, is_console, render
from hub.errors import Forbidden, HubError, RateLimited

# ----------------------------------------------------------------------------------


def setup_console(app: web.Application) -> None:
    app.add_routes(login.routes)
    app.add_routes(links.routes)
    app.add_routes(account.routes)
    app.add_routes(supervisor.routes)
    dashboard.setup_dashboard(app)
    # --- the console's pages: the inbox and conversation modules add theirs here ---
    app.add_routes(inbox_pages.routes)
    live.setup_live(app)  # GET /console/events: the live feed every page can follow
    app.add_routes(conversation.routes)
    # --------------------------------------------------------------------------------
    app.router.add_static("/console/static", STATIC_DIR, name="console_static")
    # In order: error pages around everything, CSRF before any work, then the session.
    app.middlewares.extend([console_errors, sessions.csrf_middleware, load_session])
    app.on_response_prepare.append(console_headers)


def _page(request: web.Request) -> bool:
    return is_console(request.path) and not request.path.startswith("/console/static/")


def wants_html(request: web.Request) -> bool:
    """A browser navigating (a page or a form post), not a script's fetch."""
    return "text/html" in request.headers.get("Accept", "")


@web.middleware
async def console_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A console error a person sees is a page (the hub's JSON errors stay for scripts)."""
    if not _page(request):
        return await handler(request)
    try:
        return await handler(request)
    except HubError as err:
        if err.status >= 500 or not wants_html(request):
            raise
        retry_after = max(1, int(err.retry_after + 0.999)) if isinstance(err, RateLimited) else None
        response = render(request, "error.html", status=err.status, message=err.message, retry_after=retry_after)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response


# What an admin who must enrol a second factor (HUB_REQUIRE_MFA) may still reach.
_ENROLMENT_OPEN = (sessions.ENROL_PATH, sessions.LOGIN_PATH, sessions.LINK_PREFIX, "/console/logout")


@web.middleware
async def load_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every console page knows its session before the handler runs (``render``
    reads it). An admin who must still enrol a second factor gets only the
    enrolment page, whatever the handler would check: other pages send them
    there, other writes are refused."""
    if _page(request):
        session = await sessions.console_session(request)
        if (
            session is not None
            and session.stage is sessions.Stage.FULL
            and sessions.needs_enrolment(request.app[keys.SETTINGS], session)
            and not request.path.startswith(_ENROLMENT_OPEN)
        ):
            if request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(sessions.ENROL_PATH)
            raise Forbidden("set up a second factor on your account page first")
    return await handler(request)
