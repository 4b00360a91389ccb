"""Pages of the console: one Jinja2 environment, ``render``, and the headers every console response carries.

Templates live in ``hub/console/templates`` and extend ``base.html``;
autoescape is on and an undefined name is an error (StrictUndefined), as in
the help portal. Every template gets ``user`` (the signed-in user or None),
``session_user`` (the session's user at any stage: the enrolment page has
one while ``user`` is still None), ``csrf_token``, ``static(name)`` (a
cache-busted URL under ``/console/static/``) and ``request``.

The policy forbids inline scripts and styles: behaviour goes in ES modules
under ``static/`` (loaded with ``{% block scripts %}``), data for them in
``data-*`` attributes.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from hub.console import sessions

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/console/static/"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


@cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def static_version() -> str:
    """A digest of every static file: a new release gets new URLs, so the files can be cached for good."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def static(name: str) -> str:
    return f"{STATIC_PREFIX}{name}?v={static_version()}"


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """``template`` rendered as an HTML response. The session must have been
    loaded (the console's middleware does it for every console request)."""
    body = (
        environment()
        .get_template(template)
        .render(
            user=sessions.cached_user(request),
            session_user=session.user if (session := sessions.cached_session(request)) is not None else None,
            csrf_token=sessions.csrf_token(request),
            static=static,
            request=request,
            **context,
        )
    )
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    sessions.set_login_cookie(request, response)
    return response


def is_console(path: str) -> bool:
    return path == sessions.PREFIX or path.startswith(sessions.PREFIX + "/")


async def console_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the policy and headers of every console response.

    Pages are never stored (they hold customers' data); a versioned static
    file (``?v=``) never changes, so it is cached for good instead.
    """
    if not is_console(request.path):
        return
    response.headers.update(HEADERS)
    if request.path.startswith(STATIC_PREFIX) and "v" in request.query and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "no-store"
