"""The web chat channel: routes, the widget's assets, and the Channel contract.

The protocol is described in ``channels/webchat/__init__.py``; the socket
itself lives in ``socket.py``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import html
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import WSCloseCode, web

from channels.base import InboundMessage, OutboundMessage, PushRelay, SendResult
from channels.webchat.frames import CLIENT_ID, choices_of, contact_form, survey_frame
from channels.webchat.security import OriginPolicy, VisitorTokens
from channels.webchat.socket import SESSION, Session, WebchatSockets
from hub.errors import InvalidInput, InvalidSignature
from hub.inputs import load_json
from hub.ratelimit import RateLimiter, TokenBuckets

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
WS_PATH = "/channels/webchat/ws"
PRUNE_INTERVAL = 60.0


_INLINE_HANDLER = re.compile(rb'\son[a-z]+="([^"]*)"')


@functools.cache
def page_policy(html: bytes) -> str:
    """The Content-Security-Policy of a page the channel serves (``/demo``):
    scripts from this origin only, plus the page's own inline event handlers
    by hash; no framing by other sites; sockets to this origin."""
    handlers = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(html_unescape(m).encode()).digest()).decode() + "'"
        for m in sorted(set(_INLINE_HANDLER.findall(html)))
    )
    scripts = f"'self' 'unsafe-hashes' {handlers}" if handlers else "'self'"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


def html_unescape(raw: bytes) -> str:
    return html.unescape(raw.decode("utf-8"))


def _setting_secret(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


class WebchatChannel(WebchatSockets):
    name: ClassVar[str] = "webchat"
    max_text_len: ClassVar[int | None] = 4000
    required_settings = ("webchat_secrets",)

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        secret_list = [s.strip() for s in (_setting_secret(settings.webchat_secrets) or "").split(",") if s.strip()]
        self.tokens = VisitorTokens(secret_list, max_age_seconds=settings.webchat_token_max_age_days * 86400)
        self.identity_secret = _setting_secret(settings.webchat_identity_secret)
        allowed = [o.strip() for o in settings.webchat_allowed_origins.split(",") if o.strip()]
        self.origins = OriginPolicy(allowed, settings.public_url)
        self.max_text_len = settings.webchat_max_message_chars  # type: ignore[misc]  # configurable per deployment; Channel declares it a ClassVar for the fixed-limit channels
        self.max_frame_bytes = settings.webchat_max_frame_bytes
        self.limits = RateLimiter()
        self.visitor_rule = TokenBuckets(settings.webchat_session_rate, settings.webchat_session_burst)
        self.ip_rule = TokenBuckets(settings.webchat_ip_rate, settings.webchat_ip_burst)
        self.max_sockets_per_ip = settings.webchat_max_sockets_per_ip
        self._by_ip: dict[str, int] = {}  # open sockets per address
        # The hub answers (the duty roster under auto); a test may pin it (sync or async).
        self.agents_online: Callable[[], bool | Awaitable[bool]] = lambda: self.host.agents_online()
        # Called with (visitor_id, active) when a visitor types; the agent UI may hook in.
        self.on_visitor_typing: Callable[[str, bool], Awaitable[None] | None] | None = None
        self.config = {
            "title": settings.webchat_title,
            "greeting": settings.webchat_greeting,
            "color": settings.webchat_color,
            "max_chars": settings.webchat_max_message_chars,
        }
        self._sessions: set[Session] = set()
        self._by_visitor: dict[str, set[Session]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._assets: dict[str, bytes] = {}
        # Other instances' sockets (``use_relay``; HUB_REDIS_URL): None is one instance.
        self.relay: PushRelay | None = None

    # --- routes -------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(WS_PATH, self.handle_socket),
            web.get("/widget.js", self.handle_asset("widget.js", "application/javascript")),
            web.get("/widget.css", self.handle_asset("widget.css", "text/css")),
            web.get("/demo", self.handle_asset("demo.html", "text/html")),
        ]

    def handle_asset(self, filename: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            body = self._assets.get(filename)
            if body is None:
                body = self._assets[filename] = await asyncio.to_thread((STATIC_DIR / filename).read_bytes)
            headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
            if content_type == "text/html":
                headers["Content-Security-Policy"] = page_policy(body)
                headers["Referrer-Policy"] = "same-origin"
            return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

        serve.__name__ = f"webchat_{filename.replace('.', '_')}"
        return serve

    # --- Channel contract ----------------------------------------------------
    async def verify(self, request: web.Request, body: bytes) -> None:
        """The socket's page origin must be allowed (checked at the handshake)."""
        own = f"{request.scheme}://{request.host}"
        if not self.origins.allows(request.headers.get("Origin"), own_origin=own):
            raise InvalidSignature(f"origin {request.headers.get('Origin')!r} is not allowed")

    def parse(self, request: web.Request, body: bytes) -> list[InboundMessage]:
        """One ``message`` frame of the request's session -> one InboundMessage."""
        session = request[SESSION]
        frame = load_json(body, what="frame")
        if not isinstance(frame, dict):
            raise InvalidInput("frame is not an object")
        if session.visitor_id is None:
            raise InvalidInput("say hello first")
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            raise InvalidInput("'client_id' must be 1-64 letters, digits, '-' or '_'")
        text = frame.get("text")
        if not isinstance(text, str):
            raise InvalidInput("'text' must be a string")
        text = self.check_text(text.strip())
        hints = dict(session.hints)
        verified = session.hints_verified
        name = session.sender_name
        contact = frame.get("contact")
        if contact is not None:
            if not isinstance(contact, dict):
                raise InvalidInput("'contact' must be an object")
            form = contact_form(contact)
            name = name or form.get("name")
            if not verified:
                hints.update(form)
        return [
            InboundMessage(
                channel=self.name,
                sender=session.visitor_id,
                text=text,
                external_id=f"{session.visitor_id}:{client_id}",
                sender_name=name,
                contact_hints=hints,
                hints_verified=verified and bool(hints),
                metadata={"client_id": client_id},
            )
        ]

    async def send(self, message: OutboundMessage) -> SendResult:
        """Push an agent or bot reply to every open socket of the visitor ``message.to``.

        ``delivered``: a socket took it, here or on another instance (whose
        relay acknowledged it). Otherwise the send is still a success (``sent``):
        the message is in the history the widget fetches on its next connect.
        """
        provider_id = f"webchat-{message.message_id}"
        relay = self.relay
        if relay is None and message.to not in self._by_visitor:
            # One instance and no socket here: nothing to push (nor to look up).
            if message.metadata.get("handoff"):
                await self.notify_handoff(message.to)
            return SendResult(provider_id=provider_id, delivered=False)
        author = message.metadata.get("author_kind") or await self._author_of(message)
        pushed: dict[str, Any] = {
            "id": message.message_id,
            "author": author,
            "text": message.text,
            "created_at": None,
            "client_id": None,
        }
        choices = choices_of(message.metadata)
        if choices:
            pushed["choices"] = choices
        frames: list[dict[str, Any]] = [{"type": "message", "message": pushed}]
        survey = survey_frame(message.metadata, message.text)
        if survey is not None:
            frames.append({**survey, "message_id": message.message_id})
        if message.metadata.get("handoff") and not await self.agents_are_online():
            frames.append({"type": "offline"})  # see notify_handoff
        delivered = await self._push_here(message.to, frames)
        if relay is not None:
            # Other tabs may be on other instances: always relayed; an
            # acknowledgement is awaited only when no socket here took it.
            acknowledged = await relay.relay(message.to, frames, want_ack=not delivered)
            delivered = delivered or acknowledged
        return SendResult(provider_id=provider_id, delivered=delivered)

    def use_relay(self, relay: PushRelay | None) -> None:
        """Relay pushes to the sockets other hub instances hold (``hub/app.py``
        wires one over Redis when HUB_REDIS_URL is set)."""
        self.relay = relay

    async def notify_handoff(self, visitor_id: str) -> None:
        """The conversation went to humans: with nobody on duty, switch the widget to offline mode.

        No text of its own: the handoff message already says when the team is
        back and how the reply will come (hub/bot/promise.py)."""
        if not await self.agents_are_online():
            await self._push(visitor_id, {"type": "offline"})

    async def push_typing(self, visitor_id: str, active: bool, *, author: str = "agent") -> bool:
        """To the sockets held here only: the hub fans the indicator out to
        every instance itself (``AgentTyping`` on the bus), so relaying it
        too would show it twice."""
        return await self._push_here(visitor_id, ({"type": "typing", "author": author, "active": bool(active)},))

    async def agents_are_online(self) -> bool:
        try:
            online = self.agents_online()
            if inspect.isawaitable(online):
                online = await online
            return bool(online)
        except Exception:
            log.exception("agents_online failed; assuming agents are online")
            return True

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self._closing = False
        pruner = asyncio.create_task(self._prune_forever(), name="webchat-prune")
        self._tasks.add(pruner)
        try:
            yield
        finally:
            await self.close_all(WSCloseCode.GOING_AWAY, b"server shutting down", closing=True)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()

    async def on_shutdown(self, app: web.Application) -> None:
        """For ``app.on_shutdown``: close sockets before aiohttp waits for handlers to end."""
        await self.close_all(WSCloseCode.GOING_AWAY, b"server shutting down", closing=True)

    async def close_all(
        self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"", *, closing: bool = False
    ) -> int:
        """Close every open socket (shutdown; tests use it to cut connections)."""
        if closing:
            self._closing = True
        sockets = [s.ws for s in self._sessions]
        await asyncio.gather(*(ws.close(code=code, message=message) for ws in sockets), return_exceptions=True)
        return len(sockets)

    @property
    def open_sockets(self) -> int:
        return len(self._sessions)

    def visitor_sockets(self, visitor_id: str) -> int:
        return len(self._by_visitor.get(visitor_id, ()))

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            self.limits.prune()
