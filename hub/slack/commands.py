"""``/hub`` slash commands: queue, duty on|off, search the knowledge base,
contact, and canned replies (``replies`` lists them, ``reply <name>`` sends
one to a ticket's customer).

Slack does not say in which thread a command was typed (a slash command's
payload has the channel, not the thread), so ``/hub reply <name>`` takes the
ticket from ``thread_ts`` when Slack sends one and otherwise from a ticket
number after the name: ``/hub reply refund-policy #42``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit
from hub.conversations import contacts as contacts_tx
from hub.errors import HubError, NotFound
from hub.slack import cards as slack_blocks
from hub.slack.transport import SlackTransport, post_ephemeral
from hub.tickets import queries as tickets_queries

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.conversations.service import HubService
    from hub.tickets.service import TicketService

# The callback id of the "Send canned reply" shortcut and its modal (channels.slack.CANNED_REPLY).
CANNED_REPLY = "canned_reply"
USAGE = (
    "Usage: /hub queue | /hub duty on|off | /hub search <text> | /hub contact <email|phone> "
    "| /hub replies | /hub reply <name> #<ticket>"
)

# Returns hit dicts ({"title", "url", ...}) or an object with ``.hits`` whose
# items have ``to_dict()`` (knowledge_base.models.SearchResult).
KbSearch = Callable[[str, int], Awaitable[Any]]


def _hit_dicts(result: Any) -> list[dict[str, Any]]:
    hits = getattr(result, "hits", result) or []
    return [hit.to_dict() if hasattr(hit, "to_dict") else dict(hit) for hit in hits]


def absolute_link(hit: dict[str, Any], public_url: str) -> dict[str, Any]:
    """A knowledge-base hit whose relative article URL is made absolute (Slack needs full links)."""
    url = hit.get("url")
    if isinstance(url, str) and url.startswith("/"):
        return {**hit, "url": public_url.rstrip("/") + url}
    return hit


class SlashCommands:
    def __init__(
        self,
        app: web.Application,
        channel: SlackTransport,
        service: HubService,
        tickets: TicketService,
        settings: Settings,
    ) -> None:
        self.app = app
        self.channel = channel
        self.service = service
        self.tickets = tickets
        self.db = service.db
        self.settings = settings
        self.kb_search: KbSearch | None = None

    async def on_command(self, body: dict[str, Any]) -> None:
        user, channel = body.get("user_id", ""), body.get("channel_id", "")
        words = (body.get("text") or "").strip().split(maxsplit=1)
        verb, rest = (words[0].lower() if words else "help"), (words[1].strip() if len(words) > 1 else "")
        agent = await self.tickets.agent_for_slack_user(user)
        if agent is None:
            await post_ephemeral(
                self.channel,
                channel,
                user,
                "Only Servicehub agents can use /hub. Ask an admin to link your Slack account.",
            )
            return
        try:
            if verb == "reply":
                text = await self._reply(agent.id, rest, body)
            else:
                text = await self._command(agent.id, verb, rest)
        except HubError as err:
            text = err.message
        await post_ephemeral(self.channel, channel, user, text)

    async def _command(self, agent_id: int, verb: str, rest: str) -> str:
        if verb == "queue":
            waiting = await self.tickets.queue(limit=15)
            if not waiting:
                return "The queue is empty."
            lines = [f"• #{t.id} [{t.priority.value}] {t.team}: {slack_blocks.escape(t.summary[:80])}" for t in waiting]
            return f"*{len(waiting)} unassigned ticket(s)*\n" + "\n".join(lines)
        if verb == "duty":
            if rest not in ("on", "off"):
                return "Usage: /hub duty on|off"
            agent = await self.tickets.set_duty(
                agent_id,
                rest == "on",
                actor_id=agent_id,
                audit=Audit(Actor(agent_id, "slack"), "agent.duty", "user", agent_id, {"on_duty": rest == "on"}),
            )
            return f"You are {'on' if agent.on_duty else 'off'} duty ({agent.open_tickets} open ticket(s))."
        if verb == "search":
            if not rest:
                return "Usage: /hub search <text>"
            search = self._kb_search()
            if search is None:
                return "The knowledge base is not connected to the hub."
            hits = [self._absolute(hit) for hit in _hit_dicts(await search(rest, 5))]
            if not hits:
                return f"No article matches “{slack_blocks.escape(rest)}”."
            lines = []
            for hit in hits:
                title = slack_blocks.escape(str(hit.get("title") or hit.get("id") or "article"))
                lines.append(f"• <{hit['url']}|{title}>" if hit.get("url") else f"• {title}")
            return "\n".join(lines)
        if verb == "contact":
            return await self._contact_summary(rest)
        if verb == "replies":
            found = await self.app[keys.CANNED_REPLIES].list()
            if not found:
                return "There are no canned replies yet (an admin adds them: POST /api/v1/canned-replies)."
            lines = [f"• `{r.name}` {slack_blocks.escape(r.title)}" + (f" ({r.team})" if r.team else "") for r in found]
            return "*Canned replies* (send one with `/hub reply <name> #<ticket>`)\n" + "\n".join(lines)
        return USAGE

    async def on_shortcut(self, body: dict[str, Any]) -> None:
        """The "Send canned reply" message shortcut, on a ticket's card or a
        message of its thread (a shortcut, unlike a command, names the
        message): a modal to choose the reply (``on_view`` sends it)."""
        user, channel = _dig(body, "user", "id"), _dig(body, "channel", "id")
        thread = _dig(body, "message", "thread_ts") or _dig(body, "message", "ts")
        if not isinstance(user, str) or not isinstance(channel, str) or not isinstance(thread, str):
            return  # not a message shortcut's shape
        agent = await self.tickets.agent_for_slack_user(user)
        if agent is None:
            await post_ephemeral(self.channel, channel, user, "Only Servicehub agents can send canned replies.")
            return
        ticket = await self.db.read(tickets_queries.ticket_for_slack_message, channel, thread)
        if ticket is None:
            await post_ephemeral(
                self.channel, channel, user, "Use “Send canned reply” on a ticket's card or a message in its thread."
            )
            return
        replies = await self.app[keys.CANNED_REPLIES].list(team=ticket.team)
        if not replies:
            await post_ephemeral(self.channel, channel, user, "There are no canned replies for this team yet.")
            return
        options = [
            {"text": {"type": "plain_text", "text": f"{r.title} ({r.name})"[:75]}, "value": r.name}
            for r in replies[:100]  # Slack's limit for a static select
        ]
        view = {
            "type": "modal",
            "callback_id": CANNED_REPLY,
            "private_metadata": str(ticket.id),
            "title": {"type": "plain_text", "text": "Canned reply"},
            "submit": {"type": "plain_text", "text": "Send"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": "reply",
                    "label": {"type": "plain_text", "text": f"Send to the customer of ticket #{ticket.id}"},
                    "element": {"type": "static_select", "action_id": "name", "options": options},
                }
            ],
        }
        try:  # direct: a trigger id lives three seconds, no queue can wait
            await self.channel.call("views.open", trigger_id=str(body.get("trigger_id") or ""), view=view)
        except HubError as err:
            await post_ephemeral(self.channel, channel, user, f"Could not open the canned replies: {err.message}")

    async def on_view(self, body: dict[str, Any]) -> None:
        """The modal of ``on_shortcut`` submitted: send the chosen reply."""
        user = _dig(body, "user", "id")
        view = _dig(body, "view")
        name = _dig(view, "state", "values", "reply", "name", "selected_option", "value")
        ticket_ref = _dig(view, "private_metadata")
        if not isinstance(user, str) or not isinstance(name, str) or not isinstance(ticket_ref, str):
            return
        if not ticket_ref.isascii() or not ticket_ref.isdigit() or len(ticket_ref) > 18 or not name:
            return  # not a modal of ours (Slack validated the required select)
        agent = await self.tickets.agent_for_slack_user(user)
        try:
            ticket = await self.tickets.get(int(ticket_ref))
        except HubError:
            return  # erased meanwhile
        if agent is None:
            text = "Only Servicehub agents can send canned replies."
        else:
            try:
                reply = await self.app[keys.CANNED_REPLIES].get(name)
                await self.app[keys.CANNED_REPLIES].send(
                    name,
                    ticket.conversation_id,
                    agent_id=agent.id,
                    via="slack",
                    idempotency_key=f"slack-view:{view.get('id')}" if view.get("id") else None,
                )
                text = f"Sent “{slack_blocks.escape(reply.title)}” to the customer of ticket #{ticket.id}."
            except HubError as err:
                text = f"Not sent: {err.message}"
        if ticket.slack_channel:
            await post_ephemeral(self.channel, ticket.slack_channel, user, text)

    async def _reply(self, agent_id: int, rest: str, body: dict[str, Any]) -> str:
        """``/hub reply <name> [#ticket]``: the canned reply, rendered, to the
        ticket's customer as this agent's reply (mirrored into its thread)."""
        words = rest.split()
        if not words or len(words) > 2:
            return "Usage: /hub reply <name> [#ticket] (`/hub replies` lists the names)"
        name, ticket_ref = words[0].lower(), (words[1].lstrip("#") if len(words) > 1 else "")
        canned = self.app[keys.CANNED_REPLIES]
        try:
            reply = await canned.get(name)
        except NotFound:
            return f"No canned reply is named “{slack_blocks.escape(words[0][:64])}”. `/hub replies` lists them."
        ticket = None
        if ticket_ref:
            if not ticket_ref.isascii() or not ticket_ref.isdigit() or len(ticket_ref) > 18:
                return f"“{slack_blocks.escape(words[1][:30])}” is not a ticket number. Usage: /hub reply <name> #42"
            ticket = await self.tickets.get(int(ticket_ref))
        elif body.get("thread_ts"):
            ticket = await self.db.read(
                tickets_queries.ticket_for_slack_message, body.get("channel_id", ""), body["thread_ts"]
            )
        if ticket is None:
            return (
                f"Which ticket? Slack does not tell apps the thread a command was typed in: "
                f"`/hub reply {reply.name} #<ticket number>` (the number is on the card)."
            )
        await canned.send(
            reply.name,
            ticket.conversation_id,
            agent_id=agent_id,
            via="slack",
            idempotency_key=f"slack-command:{body['trigger_id']}" if body.get("trigger_id") else None,
        )
        return f"Sent “{slack_blocks.escape(reply.title)}” to the customer of ticket #{ticket.id}."

    def use_kb_search(self, search: KbSearch) -> None:
        """``/hub search`` asks ``search`` instead of the hub's knowledge base."""
        self.kb_search = search

    def _kb_search(self) -> KbSearch | None:
        """The registered search (``use_kb_search``), else the hub's knowledge base if it runs."""
        if self.kb_search is not None:
            return self.kb_search
        kb = self.app.get(keys.KNOWLEDGE_BASE)
        if kb is None:
            return None
        return lambda query, limit: kb.search(query, k=limit)

    def _absolute(self, hit: dict[str, Any]) -> dict[str, Any]:
        return absolute_link(hit, self.settings.public_url)

    async def _contact_summary(self, ref: str) -> str:
        if not ref:
            return "Usage: /hub contact <email|phone>"
        kind = "email" if "@" in ref else "phone"

        def find(conn: Connection) -> int | None:
            row = contacts_tx.find_identity(conn, kind, contacts_tx.normalise_address(kind, ref))
            return row.contact_id if row is not None else None

        contact_id = await self.db.read(find)
        if contact_id is None:
            return f"No contact with {kind} {slack_blocks.escape(ref)}."
        contact = await self.service.get_contact(contact_id)
        page = await self.service.timeline(contact_id=contact_id, limit=10)
        conversations = await self.service.list_conversations(contact_id=contact_id, limit=5)
        head = f"*{slack_blocks.escape(contact.name or 'Unnamed contact')}* · {contact.email or '—'} · {contact.phone or '—'}"
        convs = ", ".join(f"#{c.id} {c.channel} ({c.status.value})" for c in conversations) or "none"
        lines = [
            f"`{m.created_at:%m-%d %H:%M}` {m.channel} {m.author_kind.value}{' (note)' if m.kind.value == 'note' else ''}: "
            f"{slack_blocks.escape(m.body[:120])}"
            for m in page.items
        ]
        return f"{head}\nConversations: {convs}\n*Timeline*\n" + ("\n".join(lines) or "—")


def _dig(value: Any, *path: str) -> Any:
    """``value[path[0]][path[1]]...``, or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
