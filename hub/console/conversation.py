"""The console's conversation page and its actions.

``GET /console/conversations/{id}`` renders the contact's whole timeline, the
profile and the ticket (``hub.console.conversation_view``); two partials
(``/timeline`` older or newer entries, ``/panel`` the ticket and profile) let
the page follow live changes without reloading.

Every action is a POST (the console's CSRF middleware checks its token) that
calls the same service as the REST API and the Slack desk: ``HubService``
for replies, notes, conversation and contact changes, ``TicketService`` for
claim, assign, resolve, priority and snooze. Their in-transaction hooks do
the rest, exactly as for the other doors (the Slack card and thread are
queued in the change's transaction), and each records its audit row with
``via="console"``. Viewers get no write controls, and their POSTs a 403.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from hub import keys, segments
from hub.audit import Actor, Audit
from hub.console import conversation_view as view
from hub.console import inbox
from hub.console.render import render
from hub.console.sessions import require_user
from hub.conversations import contacts as contacts_tx
from hub.conversations import timeline
from hub.conversations import transactions as conversations_tx
from hub.errors import InvalidInput, NotFound, Unavailable
from hub.inputs import check_length, parse_id
from hub.models import AuthorKind, ConversationStatus, Priority, Role, User
from hub.tickets import queries as tickets_queries
from hub.tickets.model import Ticket, TicketStatus
from hub.tickets.service import TicketService

routes = web.RouteTableDef()

BASE = "/console/conversations/{id:\\d+}"
MAX_TEXT = 20_000
MAX_SNOOZE = timedelta(days=30)
KB_HITS = 6


def _conversation_id(request: web.Request) -> int:
    found = parse_id(request.match_info["id"])
    if found is None:
        raise NotFound("no such conversation")
    return found


def _audit(user: User, action: str, target_type: str, target_id: int, **details: Any) -> Audit:
    """An action from the console, recorded with its change (``hub.audit``)."""
    return Audit(Actor(user.id, "console"), action, target_type, target_id, details)


def _tickets(request: web.Request) -> TicketService:
    service = request.app.get(keys.TICKETS)
    if service is None:
        raise Unavailable("tickets are not running")
    return service


def _sms_channels(app: web.Application) -> frozenset[str]:
    """Channels whose texts cost segments (WhatsApp shares SMS's phone numbers, not its segments)."""
    channels = app[keys.CHANNELS]
    return frozenset(name for name in ("sms",) if name in channels)


def _limits(app: web.Application, channel: str) -> dict[str, Any]:
    """What the reply box shows for the conversation's channel: its hard
    limit and, for SMS, segments (the alphabet and sizes of ``hub.segments``,
    so the page counts exactly as the SMS channel splits)."""
    adapter = app[keys.CHANNELS].get(channel)
    settings = app[keys.SETTINGS]
    limits: dict[str, Any] = {
        "channel": channel,
        "max_chars": adapter.max_text_len if adapter is not None else None,
        "sms": None,
    }
    if channel == "sms":
        limits["sms"] = {
            "gsm7": "".join(sorted(segments.GSM7_BASIC)),
            "extension": "".join(sorted(segments.GSM7_EXTENSION)),
            "single": [segments.GSM7_SINGLE, segments.UCS2_SINGLE],
            "concatenated": [segments.GSM7_CONCATENATED, segments.UCS2_CONCATENATED],
            "max_segments": settings.sms_max_segments,
            "max_body": segments.MAX_BODY_CHARS,
        }
    return limits


async def _load(request: web.Request, conversation_id: int, *, before: str | None = None) -> view.ConversationView:
    settings = request.app[keys.SETTINGS]
    return await request.app[keys.DATABASE].read(
        lambda conn: view.load(
            conn,
            conversation_id,
            now=request.app[keys.CLOCK].now(),
            sla=inbox.sla_policy(settings),
            default_team=settings.ticket_default_team,
            default_capacity=settings.ticket_default_capacity,
            before=before,
            sms_channels=_sms_channels(request.app),
        )
    )


def _context(request: web.Request, user: User, found: view.ConversationView) -> dict[str, Any]:
    conversation = found.conversation
    ticket = found.ticket
    open_ticket = ticket if ticket is not None and ticket.status == TicketStatus.OPEN else None
    limits = _limits(request.app, conversation.channel)
    return {
        "can_write": user.role.allows(Role.AGENT),
        "is_admin": user.role.allows(Role.ADMIN),
        "v": found,
        "c": conversation,
        "ticket": ticket,
        "open_ticket": open_ticket,
        "priorities": [p.value for p in Priority],
        "resolved": conversation.status == ConversationStatus.RESOLVED,
        "limits": limits,
        "limits_json": json.dumps(limits),
        "reply_subject": _reply_subject(conversation.subject) if conversation.channel == "email" else None,
        "kb_enabled": request.app.get(keys.KNOWLEDGE_BASE) is not None,
        "now": request.app[keys.CLOCK].now(),
    }


def _reply_subject(subject: str | None) -> str:
    """The subject an e-mail reply goes with (the e-mail channel adds "Re:" the same way)."""
    subject = " ".join((subject or "").split())
    if not subject:
        return ""
    return subject if subject.lower().startswith(("re:", "aw:", "sv:")) else f"Re: {subject}"


# --- pages and partials ------------------------------------------------------------------------


@routes.get(BASE)
async def conversation_page(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    found = await _load(request, _conversation_id(request))
    canned = request.app.get(keys.CANNED_REPLIES)
    replies = await canned.list() if canned is not None and user.role.allows(Role.AGENT) else []
    return render(request, "conversation.html", refresh=False, canned_replies=replies, **_context(request, user, found))


@routes.get(BASE + "/canned/{name}")
async def canned_reply(request: web.Request) -> web.StreamResponse:
    """A canned reply rendered for this conversation and the signed-in agent
    (what ``POST /api/v1/conversations/{id}/canned-replies/{name}/preview``
    gives), for the reply box: nothing is sent until the agent sends it."""
    user = await require_user(request, role=Role.AGENT)
    canned = request.app.get(keys.CANNED_REPLIES)
    if canned is None:
        raise Unavailable("canned replies are not running")
    reply, text = await canned.render_for(request.match_info["name"], _conversation_id(request), user.id)
    return web.json_response({"name": reply.name, "title": reply.title, "text": text})


@routes.get(BASE + "/timeline")
async def timeline_partial(request: web.Request) -> web.StreamResponse:
    """Entries ``before`` (older, "show earlier") or ``after`` (newer, live) a
    cursor, or the entries ``ids`` (comma-separated, at most 50) as they are now."""
    await require_user(request)
    conversation_id = _conversation_id(request)
    before, after = request.query.get("before") or None, request.query.get("after") or None
    ids = [parse_id(part) for part in request.query.get("ids", "").split(",") if part]
    if None in ids or len(ids) > 50:
        raise InvalidInput("'ids' must be at most 50 message ids")
    if bool(before) + bool(after) + bool(ids) != 1:
        raise InvalidInput("give 'before', 'after' or 'ids'")

    def read(conn: Any) -> view.TimelinePage:
        conversation = conversations_tx.get_conversation(conn, conversation_id)
        contact = contacts_tx.get_contact(conn, conversation.contact_id)
        if ids:
            return view.entries_by_id(
                conn, contact, [i for i in ids if i is not None], sms_channels=_sms_channels(request.app)
            )
        return view.timeline_page(
            conn,
            contact,
            before=before,
            after=after,
            limit=timeline.MAX_PAGE if after else view.TIMELINE_PAGE,
            sms_channels=_sms_channels(request.app),
        )

    page = await request.app[keys.DATABASE].read(read)
    response = render(request, "conversation_timeline.html", page=page, current=conversation_id)
    response.headers["X-Prev-Cursor"] = page.prev_cursor or ""
    response.headers["X-Next-Cursor"] = page.next_cursor or ""
    return response


@routes.get(BASE + "/panel")
async def panel_partial(request: web.Request) -> web.StreamResponse:
    """The ticket and the profile, re-rendered after a change (live updates)."""
    user = await require_user(request)
    found = await _load(request, _conversation_id(request))
    return render(request, "conversation_panel.html", refresh=True, **_context(request, user, found))


@routes.get("/console/kb/search")
async def kb_search(request: web.Request) -> web.StreamResponse:
    """Articles for the reply box (agents): the hub's knowledge-base search,
    with absolute links, as the Slack desk's ``/hub search`` gives them."""
    await require_user(request, role=Role.AGENT)
    query = request.query.get("q", "").strip()
    kb = request.app.get(keys.KNOWLEDGE_BASE)
    hits: list[dict[str, Any]] = []
    if kb is not None and query:
        check_length(query, "q", 500)
        result = await kb.search(query, k=KB_HITS)
        base = request.app[keys.SETTINGS].public_url.rstrip("/")
        for hit in result.hits:
            data = hit.to_dict()
            url = str(data.get("url") or "")
            hits.append({**data, "url": base + url if url.startswith("/") else url})
    return render(request, "conversation_kb.html", hits=hits, query=query, kb_enabled=kb is not None)


# --- actions -------------------------------------------------------------------------------------


async def _form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _text(form: dict[str, str], name: str = "text") -> str:
    text = form.get(name, "").strip()
    if not text:
        raise InvalidInput(f"'{name}' is empty")
    check_length(text, name, MAX_TEXT)
    return text


def _done(request: web.Request, conversation_id: int, **extra: Any) -> web.StreamResponse:
    """JSON for the page's script; a plain form post goes back to the page."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": True, **extra})
    raise web.HTTPSeeOther(f"/console/conversations/{conversation_id}")


async def _open_ticket(request: web.Request, conversation_id: int) -> Ticket | None:
    return await request.app[keys.DATABASE].read(tickets_queries.open_ticket_of, conversation_id)


async def _needs_ticket(request: web.Request, conversation_id: int) -> Ticket:
    ticket = await _open_ticket(request, conversation_id)
    if ticket is None:
        raise InvalidInput("this conversation has no open ticket: take it over first")
    return ticket


@routes.post(BASE + "/reply")
async def reply(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    form = await _form(request)
    subject = form.get("subject", "").strip() or None
    if subject is not None:
        check_length(subject, "subject", 500)
    message = await request.app[keys.SERVICE].reply(
        conversation_id,
        _text(form),
        author_kind=AuthorKind.AGENT,
        author_id=user.id,
        # A double-click or a retried POST sends the reply once.
        idempotency_key=f"console:{user.id}:{form['key']}" if form.get("key") else None,
        subject=subject,
        audit=_audit(user, "conversation.reply", "conversation", conversation_id),
    )
    await request.app[keys.SERVICE].show_typing(conversation_id, False)
    return _done(request, conversation_id, message_id=message.id)


@routes.post(BASE + "/note")
async def note(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    form = await _form(request)
    added = await request.app[keys.SERVICE].add_note(
        conversation_id,
        _text(form),
        author_id=user.id,
        audit=_audit(user, "conversation.note", "conversation", conversation_id),
    )
    return _done(request, conversation_id, message_id=added.id)


@routes.post(BASE + "/claim")
async def claim(request: web.Request) -> web.StreamResponse:
    """Claim the open ticket; a conversation the bot still has is handed off
    first (a ticket opened by an agent, as ``POST .../handoff`` does)."""
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    tickets = _tickets(request)
    ticket = await _open_ticket(request, conversation_id)
    if ticket is None:
        conversation = await request.app[keys.SERVICE].get_conversation(conversation_id)
        ticket = await tickets.open(
            conversation_id,
            priority=conversation.priority,
            reason="taken over in the console",
            source="agent",
            actor_id=user.id,
            audit=_audit(user, "ticket.handoff", "conversation", conversation_id),
        )
    await tickets.claim(ticket.id, user.id, audit=_audit(user, "ticket.claim", "ticket", ticket.id))
    return _done(request, conversation_id)


@routes.post(BASE + "/assign")
async def assign(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    form = await _form(request)
    raw = form.get("assignee_id", "")
    assignee = None if raw in ("", "none") else parse_id(raw)
    if raw not in ("", "none") and assignee is None:
        raise InvalidInput("'assignee_id' must be a user id or none")
    ticket = await _needs_ticket(request, conversation_id)
    await _tickets(request).assign(
        ticket.id,
        assignee,
        actor_id=user.id,
        audit=_audit(user, "ticket.assign", "ticket", ticket.id, assignee_id=assignee),
    )
    return _done(request, conversation_id)


@routes.post(BASE + "/resolve")
async def resolve(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    ticket = await _open_ticket(request, conversation_id)
    if ticket is not None:
        await _tickets(request).resolve(
            ticket.id, actor_id=user.id, audit=_audit(user, "ticket.resolve", "ticket", ticket.id)
        )
    else:  # the bot's conversation: resolved as PATCH /conversations does
        await _set_status(request, user, conversation_id, ConversationStatus.RESOLVED)
    return _done(request, conversation_id)


async def _set_status(request: web.Request, user: User, conversation_id: int, status: ConversationStatus) -> None:
    """The conversation's status, changed as ``PATCH /api/v1/conversations/{id}`` does, audited via=console."""
    await request.app[keys.SERVICE].update_conversation(
        conversation_id,
        {"status": status.value},
        actor_id=user.id,
        audit=_audit(user, "conversation.update", "conversation", conversation_id),
    )


@routes.post(BASE + "/reopen")
async def reopen(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    await _set_status(request, user, conversation_id, ConversationStatus.OPEN)
    return _done(request, conversation_id)


@routes.post(BASE + "/priority")
async def priority(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    level = (await _form(request)).get("priority", "")
    if level not in {p.value for p in Priority}:
        raise InvalidInput("priority must be one of urgent, high, normal, low")
    ticket = await _open_ticket(request, conversation_id)
    if ticket is not None:
        await _tickets(request).set_priority(
            ticket.id,
            level,
            actor_id=user.id,
            audit=_audit(user, "ticket.priority", "ticket", ticket.id, priority=level),
        )
    else:
        await request.app[keys.SERVICE].update_conversation(
            conversation_id,
            {"priority": level},
            actor_id=user.id,
            audit=_audit(user, "conversation.update", "conversation", conversation_id),
        )
    return _done(request, conversation_id)


def snooze_minutes(form: dict[str, str], now: datetime) -> float:
    """``until`` (a local ``datetime-local`` value with the browser's UTC
    offset in ``tz_offset`` minutes, as ``Date.getTimezoneOffset`` gives it)
    or ``minutes``, as minutes from ``now``."""
    if form.get("until"):
        try:
            local = datetime.fromisoformat(form["until"])
            offset = int(form.get("tz_offset") or 0)
        except ValueError:
            raise InvalidInput("'until' must be a date and time") from None
        if local.tzinfo is None:
            local = local.replace(tzinfo=UTC) + timedelta(minutes=offset)
        minutes = (local - now).total_seconds() / 60
    else:
        try:
            minutes = float(form.get("minutes", ""))
        except ValueError:
            raise InvalidInput("give 'until' or 'minutes'") from None
    if not 0 < minutes <= MAX_SNOOZE.total_seconds() / 60:
        raise InvalidInput("snooze until a time in the next 30 days")
    return minutes


@routes.post(BASE + "/snooze")
async def snooze(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, role=Role.AGENT)
    conversation_id = _conversation_id(request)
    minutes = snooze_minutes(await _form(request), request.app[keys.CLOCK].now())
    ticket = await _needs_ticket(request, conversation_id)
    await _tickets(request).snooze(
        ticket.id,
        minutes=minutes,
        actor_id=user.id,
        audit=_audit(user, "ticket.snooze", "ticket", ticket.id, minutes=round(minutes, 1)),
    )
    return _done(request, conversation_id)


@routes.post(BASE + "/typing")
async def typing(request: web.Request) -> web.StreamResponse:
    """The agent types (or stopped): the web chat visitor sees the indicator
    (throttled in ``HubService.show_typing``). Nothing is recorded."""
    await require_user(request, role=Role.AGENT)
    active = (await _form(request)).get("active", "true") == "true"
    shown = await request.app[keys.SERVICE].show_typing(_conversation_id(request), active)
    return web.json_response({"ok": True, "shown": shown})


# --- admin: the contact ---------------------------------------------------------------------


@routes.post(BASE + "/merge")
async def merge(request: web.Request) -> web.StreamResponse:
    """Merge another contact (``source_id``) into this conversation's contact."""
    user = await require_user(request, role=Role.ADMIN)
    conversation_id = _conversation_id(request)
    source = parse_id((await _form(request)).get("source_id", "").strip().lstrip("#"))
    if source is None:
        raise InvalidInput("'source_id' must be a contact id")
    service = request.app[keys.SERVICE]
    target = (await service.get_conversation(conversation_id)).contact_id
    await service.merge_contacts(
        source, target, actor_id=user.id, audit=_audit(user, "contact.merge", "contact", target, source_id=source)
    )
    return _done(request, conversation_id)


@routes.post(BASE + "/export")
async def export(request: web.Request) -> web.StreamResponse:
    """The contact's data as ``GET /api/v1/contacts/{id}/export`` gives it, as a download."""
    user = await require_user(request, role=Role.ADMIN)
    service = request.app[keys.SERVICE]
    contact_id = (await service.get_conversation(_conversation_id(request))).contact_id
    data = await service.export_contact(contact_id, audit=_audit(user, "contact.export", "contact", contact_id))
    return web.json_response(data, headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'})


@routes.post(BASE + "/erase")
async def erase(request: web.Request) -> web.StreamResponse:
    """Erase the contact (right to erasure); the form must repeat the contact's id."""
    user = await require_user(request, role=Role.ADMIN)
    service = request.app[keys.SERVICE]
    contact_id = (await service.get_conversation(_conversation_id(request))).contact_id
    if (await _form(request)).get("confirm", "").strip() != str(contact_id):
        raise InvalidInput(f"type the contact's id ({contact_id}) to confirm the erasure")
    counts = await service.erase_contact(contact_id, audit=_audit(user, "contact.erase", "contact", contact_id))
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": True, "erased": contact_id, "deleted": counts, "location": "/console"})
    raise web.HTTPSeeOther("/console")
