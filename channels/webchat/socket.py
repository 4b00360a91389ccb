"""The web chat's WebSocket: one session per socket, its frames and the pushes to it.

The protocol is described in ``channels/webchat/__init__.py``. Over the
~400 lines a module aims at: the pushes (here and, through the relay, on
other instances) and the resync share the sessions' bookkeeping with the
frame handlers, and splitting them would spread one socket's state over two
modules.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channels.base import Channel, OutboundMessage, PushRelay
from channels.webchat.frames import (
    EMAIL_MAX,
    NAME_MAX,
    FrameError,
    is_id,
    message_frame,
    short_str,
    survey_answer,
)
from channels.webchat.security import (
    OriginPolicy,
    VisitorClaims,
    VisitorTokens,
    new_visitor_id,
    verified_visitor_id,
    verify_user_hash,
)
from hub.errors import Forbidden, HubError, InvalidInput, InvalidJSON, InvalidSignature, RateLimited
from hub.inputs import check_phone, load_json
from hub.ratelimit import RateLimiter, TokenBuckets

log = logging.getLogger(__name__)

HISTORY_MAX = 200
SEND_TIMEOUT = 5.0
# Typing and read receipts are cheap and frequent: they spend a quarter token.
LIGHT_FRAME_COST = 0.25
CLOSE_INVALID_TOKEN = 4401
CLOSE_HELLO_TIMEOUT = 4408


@dataclass(eq=False, slots=True)
class Session:
    """One open socket."""

    ws: web.WebSocketResponse
    ip: str
    visitor_id: str | None = None
    conversation_id: int | None = None
    identity: str = "anonymous"
    # Hints attached to the next message; verified ones on the first message of each socket.
    hints: dict[str, str] = field(default_factory=dict)
    hints_verified: bool = False
    sender_name: str | None = None
    # The newest message id this socket got in a ``history`` frame: it has
    # every message up to there (live frames may have gaps); where the widget
    # resumes and where a resync starts.
    synced_id: int | None = None


SESSION = web.RequestKey("webchat_session", Session)


class WebchatSockets(Channel):
    """The socket half of ``WebchatChannel``: sessions, frames, pushes.

    The channel (``channel.py``) sets these attributes in its constructor.
    """

    tokens: VisitorTokens
    identity_secret: str | None
    origins: OriginPolicy
    max_frame_bytes: int
    limits: RateLimiter
    visitor_rule: TokenBuckets
    ip_rule: TokenBuckets
    max_sockets_per_ip: int
    _by_ip: dict[str, int]
    on_visitor_typing: Callable[[str, bool], Awaitable[None] | None] | None
    config: dict[str, Any]
    _sessions: set[Session]
    _by_visitor: dict[str, set[Session]]
    _closing: bool
    relay: PushRelay | None

    @abstractmethod
    async def agents_are_online(self) -> bool: ...

    # --- the socket ----------------------------------------------------------
    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        try:
            await self.verify(request, b"")
        except InvalidSignature as err:
            log.info("webchat socket refused: %s", err.message)
            raise Forbidden("this page may not open the chat") from err
        if self._closing:
            raise web.HTTPServiceUnavailable()
        ip = request.remote or "unknown"
        if self._by_ip.get(ip, 0) >= self.max_sockets_per_ip:
            # A ceiling, not a rate: one address opening sockets slowly but
            # never closing them is held here (HUB_WEBCHAT_MAX_SOCKETS_PER_IP).
            raise RateLimited(f"this address has {self.max_sockets_per_ip} chats open already", retry_after=30.0)
        wait = self.limits.take(self.ip_rule, "ip", ip)
        if wait:
            raise RateLimited("too many connections from this address", retry_after=wait)
        ws = web.WebSocketResponse(
            heartbeat=self.settings.webchat_heartbeat,
            max_msg_size=4 * self.max_frame_bytes,
            autoping=True,
        )
        await ws.prepare(request)
        session = Session(ws=ws, ip=ip)
        request[SESSION] = session
        self._sessions.add(session)
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        loop = asyncio.get_running_loop()
        hello_deadline = loop.time() + self.settings.webchat_hello_timeout
        try:
            while not ws.closed:
                timeout = None if session.visitor_id else max(0.01, hello_deadline - loop.time())
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    await ws.close(code=CLOSE_HELLO_TIMEOUT, message=b"hello expected")
                    break
                if msg.type == WSMsgType.TEXT:
                    await self._on_frame(request, session, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._error(session, "invalid_frame", "binary frames are not supported")
                elif msg.type == WSMsgType.ERROR:
                    log.debug("webchat socket error: %s", ws.exception())
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
        finally:
            self._forget(session)
            if not ws.closed:
                await ws.close()
        return ws

    async def _on_frame(self, request: web.Request, session: Session, data: str) -> None:
        ref = None
        try:
            # surrogatepass: a frame's "\ud800" is refused by load_json, with a reason, not here.
            if len(data) > self.max_frame_bytes or len(data.encode("utf-8", "surrogatepass")) > self.max_frame_bytes:
                raise FrameError("too_large", f"frames are limited to {self.max_frame_bytes} bytes")
            try:
                frame = load_json(data, what="frame")
            except InvalidJSON as err:
                raise FrameError("invalid_json", err.message) from err
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise FrameError("invalid_frame", "a frame is a JSON object with a 'type'")
            kind = frame["type"]
            if isinstance(frame.get("client_id"), str):
                ref = frame["client_id"][:64]
            if kind == "ping":
                await self._send(session, {"type": "pong"})
                return
            self._check_rate(session, LIGHT_FRAME_COST if kind in ("typing", "read") else 1.0)
            if kind in ("hello", "resume"):
                await self._on_hello(session, frame)
            elif session.visitor_id is None:
                raise FrameError("not_ready", "send 'hello' or 'resume' first")
            elif kind == "message":
                await self._on_message(request, session, data)
            elif kind == "typing":
                await self._on_typing(session, frame)
            elif kind == "read":
                await self._on_read(session, frame)
            elif kind == "history":
                await self._on_history(session, frame)
            elif kind == "survey_answer":
                await self._on_survey_answer(session, frame)
            else:
                raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}")
        except FrameError as err:
            await self._error(session, err.code, err.message, ref=ref, **err.extra)
        except InvalidInput as err:
            # The error's own code: ``too_large`` for TooLarge, else ``invalid_input``.
            await self._error(session, err.code, err.message, ref=ref)
        except RateLimited as err:
            await self._error(session, "rate_limited", err.message, ref=ref, retry_after=round(err.retry_after, 3))
        except HubError as err:
            log.warning("webchat frame failed: %s", err.message)
            await self._error(session, "unavailable", "could not handle that right now; try again", ref=ref)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("webchat frame handler failed")
            await self._error(session, "internal_error", "internal error", ref=ref)

    def _check_rate(self, session: Session, cost: float) -> None:
        wait = self.limits.take(self.ip_rule, "ip", session.ip, cost=cost)
        if wait:
            raise RateLimited("too many messages from this address; slow down", retry_after=wait)
        if session.visitor_id is not None:
            wait = self.limits.take(self.visitor_rule, "visitor", session.visitor_id, cost=cost)
            if wait:
                self.limits.refund(self.ip_rule, "ip", session.ip, cost=cost)
                raise RateLimited("you are sending messages too fast; slow down", retry_after=wait)

    async def _on_hello(self, session: Session, frame: dict[str, Any]) -> None:
        if session.visitor_id is not None:
            raise FrameError("invalid_frame", "this socket already said hello")
        claims: VisitorClaims | None = None
        token = frame.get("token")
        if token is not None or frame["type"] == "resume":
            try:
                claims = self.tokens.verify(token)
            except InvalidSignature as err:
                log.info("webchat token refused from %s: %s", session.ip, err.message)
                await self._error(session, "invalid_token", "your chat session is not valid; start a new one")
                await session.ws.close(code=CLOSE_INVALID_TOKEN, message=b"invalid token")
                return
        user_key = await self._identify(session, frame.get("user"))
        if user_key is not None and self.identity_secret:
            visitor_id = verified_visitor_id(self.identity_secret, user_key)
        elif claims is not None and claims.user_key is None:
            visitor_id = claims.visitor_id
        else:
            # No token, or the token belonged to a verified user who is not the
            # one (if any) on the page now: never show their conversation.
            visitor_id = new_visitor_id()
        try:
            conversation = await self.host.conversation_for(self.name, visitor_id)
        except Exception:
            # Without a welcome the widget cannot go on: let it reconnect later.
            log.exception("webchat hello failed")
            await self._error(session, "unavailable", "chat is unavailable right now; reconnecting")
            await session.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"try again later")
            return
        session.visitor_id = visitor_id
        self._by_visitor.setdefault(visitor_id, set()).add(session)
        session.conversation_id = conversation.id if conversation is not None else None
        await self._send(
            session,
            {
                "type": "welcome",
                "token": self.tokens.issue(VisitorClaims(visitor_id, user_key)),
                "visitor_id": visitor_id,
                "conversation_id": session.conversation_id,
                "identity": session.identity,
                "agents_online": await self.agents_are_online(),
                "config": self.config,
            },
        )
        after_id = frame.get("after_id")
        await self._send_history(session, after_id if is_id(after_id) else None, HISTORY_MAX)

    async def _identify(self, session: Session, user: Any) -> str | None:
        """Apply the host site's user details; the user key when they are verified."""
        if user is None:
            return None
        if not isinstance(user, dict):
            raise FrameError("invalid_frame", "'user' must be an object")
        email = short_str(user.get("email"), EMAIL_MAX)
        phone = short_str(user.get("phone"), 40)
        user_id = short_str(user.get("user_id"), 200)
        name = short_str(user.get("name"), NAME_MAX)
        claimed = short_str(user.get("user_hash"), 128)
        basis = user_id or email
        if name:
            session.sender_name = name
        if claimed and basis and self.identity_secret and verify_user_hash(self.identity_secret, basis, claimed):
            session.identity = "verified"
            # The host site vouches for its user's address and number: the
            # chat joins the contact who texts or e-mails from them.
            session.hints = {k: v for k, v in (("email", email), ("phone", await self._phone(session, phone))) if v}
            session.hints_verified = True
            return f"id:{user_id}" if user_id else f"email:{str(email).lower()}"
        if claimed:
            await self._error(session, "identity_rejected", "user_hash does not match; chatting anonymously")
            session.sender_name = None
            return None
        if email or name:  # the host page vouches for nothing: keep as unverified details
            session.identity = "unverified"
            session.hints = {k: v for k, v in (("email", email), ("name", name)) if v}
        return None

    async def _phone(self, session: Session, phone: str | None) -> str | None:
        """The host's number for its user in E.164, or None (with an error frame) when it is not one."""
        if not phone:
            return None
        try:
            return check_phone(phone, "user.phone", default_region=self.settings.sms_default_region)
        except InvalidInput as err:
            await self._error(session, "invalid_phone", err.message)
            return None

    async def _on_message(self, request: web.Request, session: Session, data: str) -> None:
        [inbound] = self.admit(self.parse(request, data.encode("utf-8", "surrogatepass")))
        result = await self.host.ingest(inbound)
        if session.hints:  # the hub has them now; do not rewrite the contact on every message
            session.hints = {}
        session.conversation_id = result.conversation.id
        message = message_frame(result.message, session.visitor_id or "")
        await self._send(
            session,
            {
                "type": "ack",
                "client_id": inbound.metadata["client_id"],
                "duplicate": result.duplicate,
                "message": message,
            },
        )
        if not result.duplicate:
            await self._push(session.visitor_id or "", {"type": "message", "message": message}, skip=session)

    async def _on_typing(self, session: Session, frame: dict[str, Any]) -> None:
        hook = self.on_visitor_typing
        if hook is not None and session.visitor_id:
            outcome = hook(session.visitor_id, bool(frame.get("active")))
            if inspect.isawaitable(outcome):
                await outcome

    async def _on_read(self, session: Session, frame: dict[str, Any]) -> None:
        last_id = frame.get("last_id")
        if not is_id(last_id):
            raise FrameError("invalid_frame", "'last_id' must be a message id")
        await self._push(session.visitor_id or "", {"type": "read", "last_id": last_id}, skip=session)

    async def _on_survey_answer(self, session: Session, frame: dict[str, Any]) -> None:
        survey_id, rating, comment = survey_answer(frame)
        try:
            outcome, text = await self.host.answer_survey(
                self.name, session.visitor_id or "", survey_id, rating, comment
            )
        except Forbidden as err:
            raise FrameError("forbidden", "that survey is not yours") from err
        await self._send(session, {"type": "survey_result", "survey_id": survey_id, "outcome": outcome, "text": text})

    async def _on_history(self, session: Session, frame: dict[str, Any]) -> None:
        wanted = frame.get("conversation_id")
        if wanted is not None and wanted != session.conversation_id:
            conversation = await self.host.conversation_for(self.name, session.visitor_id or "")
            session.conversation_id = conversation.id if conversation is not None else None
            if wanted != session.conversation_id:
                raise FrameError("forbidden", "that conversation is not yours")
        after_id = frame.get("after_id")
        if after_id is not None and not is_id(after_id):
            raise FrameError("invalid_frame", "'after_id' must be a message id")
        limit = frame.get("limit", 50)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= HISTORY_MAX:
            raise FrameError("invalid_frame", f"'limit' must be 1-{HISTORY_MAX}")
        if session.conversation_id is None:
            conversation = await self.host.conversation_for(self.name, session.visitor_id or "")
            session.conversation_id = conversation.id if conversation is not None else None
        await self._send_history(session, after_id, limit)

    async def _send_history(self, session: Session, after_id: int | None, limit: int) -> int:
        """Send one ``history`` frame; how many messages it held."""
        found = []
        if session.conversation_id is not None:
            found = await self.host.history(session.conversation_id, after_id=after_id, limit=limit)
        sent = await self._send(
            session,
            {
                "type": "history",
                "conversation_id": session.conversation_id,
                "messages": [message_frame(m, session.visitor_id or "") for m in found],
            },
        )
        if sent and found and (session.synced_id is None or found[-1].id > session.synced_id):
            session.synced_id = found[-1].id
        elif sent and not found and session.synced_id is None:
            session.synced_id = 0  # nothing yet: everything to come is after id 0 (as the widget does)
        return len(found)

    async def resync(self) -> None:
        """Relayed pushes may have been lost: every open socket with a
        conversation gets the messages after its ``synced_id`` (the widget
        drops ids it has shown), a page at a time."""
        for session in list(self._sessions):
            if session.visitor_id is None or session.conversation_id is None or session.ws.closed:
                continue
            try:
                while True:
                    before = session.synced_id
                    full = await self._send_history(session, before, HISTORY_MAX) == HISTORY_MAX
                    if not full or session.synced_id == before:  # all sent, or the socket is gone
                        break
            except Exception:
                # One visitor's failure (the database busy) must not stop the
                # others; this one catches up on its next reconnect.
                log.warning("webchat resync failed for one socket", exc_info=True)

    # --- sending -------------------------------------------------------------
    async def _author_of(self, message: OutboundMessage) -> str:
        try:
            found = await self.host.history(message.conversation_id, after_id=message.message_id - 1, limit=1)
        except Exception:
            log.debug("could not look up the author of message %s", message.message_id, exc_info=True)
            return "agent"
        if found and found[0].id == message.message_id:
            return found[0].author_kind.value
        return "agent"

    async def _push(self, visitor_id: str, frame: dict[str, Any], *, skip: Session | None = None) -> bool:
        """``frame`` to every socket of the visitor: here (but ``skip``), and
        through the relay on the other instances. True when one here took it."""
        pushed = await self._push_here(visitor_id, (frame,), skip=skip)
        if self.relay is not None:
            await self.relay.relay(visitor_id, (frame,), want_ack=False)
        return pushed

    async def push_local(self, address: str, frames: Sequence[dict[str, Any]]) -> bool:
        """``frames`` relayed by another instance, to the sockets held here."""
        return await self._push_here(address, frames)

    async def _push_here(
        self, visitor_id: str, frames: Sequence[dict[str, Any]], *, skip: Session | None = None
    ) -> bool:
        """Each frame, in order, to this process's sockets of the visitor;
        True when one took the first."""
        sessions = [s for s in self._by_visitor.get(visitor_id, ()) if s is not skip]
        if not sessions:
            return False
        pushed = False
        for index, frame in enumerate(frames):
            data = json.dumps(frame, ensure_ascii=False)
            # A socket whose history already held this message has it (a live
            # push, relayed late, can arrive after a history that includes it).
            message_id = frame["message"].get("id") if frame.get("type") == "message" else None
            has_it = [s for s in sessions if _already_has(s, message_id)]
            targets = [s for s in sessions if s not in has_it]
            if len(targets) == 1:
                took = await self._send_raw(targets[0], data)
            else:
                took = any(await asyncio.gather(*(self._send_raw(s, data) for s in targets)))
            if index == 0:
                pushed = took or bool(has_it)
        return pushed

    async def _send(self, session: Session, frame: dict[str, Any]) -> bool:
        return await self._send_raw(session, json.dumps(frame, ensure_ascii=False))

    async def _send_raw(self, session: Session, data: str) -> bool:
        if session.ws.closed:
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT):  # a stuck client must not hold up the outbox
                await session.ws.send_str(data)
            return True
        except (ConnectionError, RuntimeError, TimeoutError) as err:
            log.debug("webchat push failed: %s", err)
            return False

    async def _error(self, session: Session, code: str, message: str, *, ref: str | None = None, **extra: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            frame["ref"] = ref
        frame.update(extra)
        await self._send(session, frame)

    def _forget(self, session: Session) -> None:
        if session in self._sessions:
            left = self._by_ip.get(session.ip, 1) - 1
            if left > 0:
                self._by_ip[session.ip] = left
            else:
                self._by_ip.pop(session.ip, None)
        self._sessions.discard(session)
        if session.visitor_id is not None:
            sessions = self._by_visitor.get(session.visitor_id)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self._by_visitor[session.visitor_id]


def _already_has(session: Session, message_id: Any) -> bool:
    return is_id(message_id) and session.synced_id is not None and message_id <= session.synced_id
