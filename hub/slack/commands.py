"""``/hub`` slash commands: queue, duty on|off, search the knowledge base, contact."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.audit import Actor, Audit
from hub.conversations import contacts as contacts_tx
from hub.errors import HubError
from hub.slack import cards as slack_blocks
from hub.slack.transport import SlackTransport, post_ephemeral

if TYPE_CHECKING:
    from hub.config import Settings
    from hub.conversations.service import HubService
    from hub.tickets.service import TicketService

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
        return "Usage: /hub queue | /hub duty on|off | /hub search <text> | /hub contact <email|phone>"

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
