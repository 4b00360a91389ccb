"""Every agent or admin action writes one audit row, in the transaction of its change.

Each action is driven through its real door (the REST API, Slack buttons,
thread replies and slash commands signed as Slack signs them, the command
line) and its row is found with the actor, the door (``via``), the action and
the target. A change that fails writes no row.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.storage.schema import audit_log
from tests.channels.test_slack import (  # noqa: F401 (fixtures)
    AGENT_SLACK,
    bot_handoff,
    customer_conversation,
    make_agent,
    posted_card,
    send_signed,
    slack_api,
    slack_hub,
    thread_event,
)
from tests.conftest import Hub, wait_for
from tests.fakes.slack_api import FakeSlackApi, block_action_body, command_body


async def rows(hub: Hub) -> list[Any]:
    return await hub.db.read(lambda conn: conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).all())


async def one_row(hub: Hub, action: str, target: tuple[str, Any], *, user_id: int | None, via: str) -> Any:
    """The one row of ``action`` on ``target`` through ``via``, by ``user_id``."""
    found = [
        r
        for r in await rows(hub)
        if r.action == action and (r.target_type, r.target_id) == (target[0], str(target[1])) and r.via == via
    ]
    assert len(found) == 1, (action, target, found)
    assert found[0].user_id == user_id, found[0]
    return found[0]


@pytest.mark.asyncio
async def test_api_actions_are_audited_with_their_change(slack_hub: Hub) -> None:
    hub = slack_hub
    admin = (await hub.api("GET", "/api/v1/me"))["id"]
    agent = (await hub.api("GET", "/api/v1/me", role="agent"))["id"]
    cid = await customer_conversation(hub, sender="audit-1")
    contact = (await hub.api("GET", f"/api/v1/conversations/{cid}"))["contact_id"]

    await hub.api("POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "Hello"}, expect=201)
    await one_row(hub, "conversation.reply", ("conversation", cid), user_id=agent, via="api")
    await hub.api("POST", f"/api/v1/conversations/{cid}/notes", role="agent", json={"text": "vip"}, expect=201)
    await one_row(hub, "conversation.note", ("conversation", cid), user_id=agent, via="api")
    await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"priority": "high"})
    row = await one_row(hub, "conversation.update", ("conversation", cid), user_id=agent, via="api")
    assert row.details["changes"] == {"priority": "high"}

    ticket = await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=201)
    row = await one_row(hub, "ticket.handoff", ("conversation", cid), user_id=agent, via="api")
    assert row.details["ticket_id"] == ticket["id"]
    tid = ticket["id"]
    await hub.api("POST", f"/api/v1/tickets/{tid}/assign", json={"assignee_id": agent})
    assert (await one_row(hub, "ticket.assign", ("ticket", tid), user_id=admin, via="api")).details[
        "assignee_id"
    ] == agent
    await hub.api("POST", f"/api/v1/tickets/{tid}/priority", role="agent", json={"priority": "urgent"})
    await one_row(hub, "ticket.priority", ("ticket", tid), user_id=agent, via="api")
    await hub.api("POST", f"/api/v1/tickets/{tid}/snooze", role="agent", json={"minutes": 5})
    await one_row(hub, "ticket.snooze", ("ticket", tid), user_id=agent, via="api")
    await hub.api("POST", f"/api/v1/tickets/{tid}/resolve", role="agent")
    await one_row(hub, "ticket.resolve", ("ticket", tid), user_id=agent, via="api")
    fresh = await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=201)
    await hub.api("POST", f"/api/v1/tickets/{fresh['id']}/claim", role="agent")
    await one_row(hub, "ticket.claim", ("ticket", fresh["id"]), user_id=agent, via="api")

    await hub.api("PATCH", f"/api/v1/agents/{agent}", json={"capacity": 3})
    await one_row(hub, "agent.update", ("user", agent), user_id=admin, via="api")
    await hub.api("POST", "/api/v1/agents/me/duty", role="agent", json={"on_duty": True})
    await one_row(hub, "agent.duty", ("user", agent), user_id=agent, via="api")
    rule = await hub.api(
        "POST",
        "/api/v1/routing/rules",
        json={"kind": "keyword", "params": {"words": ["x"]}, "priority": "high"},
        expect=201,
    )
    await one_row(hub, "routing_rule.create", ("routing_rule", rule["id"]), user_id=admin, via="api")
    await hub.api("DELETE", f"/api/v1/routing/rules/{rule['id']}")
    await one_row(hub, "routing_rule.delete", ("routing_rule", rule["id"]), user_id=admin, via="api")

    user = await hub.api(
        "POST", "/api/v1/users", json={"name": "N", "email": "n@example.test", "role": "viewer"}, expect=201
    )
    await one_row(hub, "user.create", ("user", user["id"]), user_id=admin, via="api")
    token = await hub.api("POST", f"/api/v1/users/{user['id']}/tokens", json={"name": "t"}, expect=201)
    await one_row(hub, "token.create", ("user", user["id"]), user_id=admin, via="api")
    await hub.api("DELETE", f"/api/v1/tokens/{token['id']}")
    await one_row(hub, "token.revoke", ("token", token["id"]), user_id=admin, via="api")

    await hub.api("PATCH", f"/api/v1/contacts/{contact}", role="agent", json={"tags": ["vip"]})
    await one_row(hub, "contact.update", ("contact", contact), user_id=agent, via="api")
    other = await hub.api("GET", f"/api/v1/conversations/{await customer_conversation(hub, sender='audit-2')}")
    await hub.api("POST", f"/api/v1/contacts/{contact}/merge", role="agent", json={"source_id": other["contact_id"]})
    await one_row(hub, "contact.merge", ("contact", contact), user_id=agent, via="api")
    await hub.api("GET", f"/api/v1/contacts/{contact}/export")
    await one_row(hub, "contact.export", ("contact", contact), user_id=admin, via="api")
    await hub.api("DELETE", f"/api/v1/contacts/{contact}")
    await one_row(hub, "contact.erase", ("contact", contact), user_id=admin, via="api")
    # No row carries a customer's words or address.
    assert not any("audit-1" in str(r.details) or "Hello" in str(r.details) for r in await rows(hub))


@pytest.mark.asyncio
async def test_slack_actions_are_audited_as_slack(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    hub = slack_hub
    agent = await make_agent(hub)
    await hub.api("POST", f"/api/v1/agents/{agent}/duty", json={"on_duty": False})
    cid = await customer_conversation(hub, sender="audit-s")
    ticket = await posted_card(hub, slack_api, (await bot_handoff(hub, cid, priority="normal"))["id"])

    async def press(action_id: str, value: str) -> None:
        body = block_action_body(
            user=AGENT_SLACK,
            channel=ticket["slack_channel"],
            message_ts=ticket["slack_ts"],
            action_id=action_id,
            value=value,
        )
        assert (await send_signed(hub, body, content_type="application/x-www-form-urlencoded")).status == 200

    async def audited(action: str, target: tuple[str, Any]) -> Any:
        async def found() -> bool:
            return any(
                r.action == action and r.target_id == str(target[1]) and r.via == "slack" for r in await rows(hub)
            )

        await wait_for(found)
        return await one_row(hub, action, target, user_id=agent, via="slack")

    await press("ticket_claim", str(ticket["id"]))
    await audited("ticket.claim", ("ticket", ticket["id"]))
    await thread_event(hub, ticket, "Looking into it now")
    await audited("conversation.reply", ("conversation", cid))
    await thread_event(hub, ticket, "// customer seems upset")
    await audited("conversation.note", ("conversation", cid))
    await press("ticket_snooze", str(ticket["id"]))
    await audited("ticket.snooze", ("ticket", ticket["id"]))
    await press("ticket_resolve", str(ticket["id"]))
    await audited("ticket.resolve", ("ticket", ticket["id"]))
    body = command_body(user=AGENT_SLACK, channel="CSUPPORT", text="duty on")
    assert (await send_signed(hub, body, content_type="application/x-www-form-urlencoded")).status == 200
    await audited("agent.duty", ("user", agent))


@pytest.mark.asyncio
async def test_cli_actions_are_audited_as_cli(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub import keys
    from hub.__main__ import main

    monkeypatch.setenv("HUB_DATABASE_URL", hub.app[keys.SETTINGS].database_url)
    cid = await customer_conversation(hub, sender="audit-cli")
    contact = (await hub.api("GET", f"/api/v1/conversations/{cid}"))["contact_id"]

    async def cli(*args: str) -> str:
        result = await asyncio.to_thread(CliRunner().invoke, main, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    created = await cli("users", "create", "--name", "Cli", "--email", "cli@example.test", "--role", "agent")
    user_id = int(created.split("#")[1].split()[0])
    row = await one_row(hub, "user.create", ("user", user_id), user_id=None, via="cli")
    assert row.details["os_user"]
    token = await hub.api("POST", f"/api/v1/users/{user_id}/tokens", json={"name": "laptop"}, expect=201)
    await cli("tokens", "revoke", str(token["id"]))
    await one_row(hub, "token.revoke", ("token", token["id"]), user_id=None, via="cli")
    await cli("contacts", "export", str(contact))
    await one_row(hub, "contact.export", ("contact", contact), user_id=None, via="cli")
    await cli("contacts", "erase", str(contact), "--yes")
    await one_row(hub, "contact.erase", ("contact", contact), user_id=None, via="cli")


@pytest.mark.asyncio
async def test_a_failed_change_writes_no_audit_row(hub: Hub) -> None:
    viewer = (await hub.api("GET", "/api/v1/me", role="viewer"))["id"]
    cid = await customer_conversation(hub, sender="audit-f")
    before = len(await rows(hub))
    await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"assignee_id": viewer}, expect=400)
    await hub.api("POST", "/api/v1/tickets/999999/resolve", role="agent", expect=404)
    await hub.api("POST", "/api/v1/contacts/999999/merge", role="agent", json={"source_id": 999998}, expect=404)
    await hub.api("DELETE", "/api/v1/tokens/999999", expect=404)
    assert len(await rows(hub)) == before


# --- the door is shown; a retry or a no-op is not a second action ------------------------------


@pytest.mark.asyncio
async def test_the_audit_api_and_the_contact_export_name_the_door(hub: Hub) -> None:
    agent = (await hub.api("GET", "/api/v1/me", role="agent"))["id"]
    cid = await customer_conversation(hub, sender="audit-door")
    contact = (await hub.api("GET", f"/api/v1/conversations/{cid}"))["contact_id"]
    ticket = await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=201)
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/claim", role="agent")

    claims = (await hub.api("GET", "/api/v1/audit", params={"action": "ticket.claim"}))["items"]
    assert [(e["target_type"], e["target_id"], e["user_id"], e["via"]) for e in claims] == [
        ("ticket", str(ticket["id"]), agent, "api")
    ]
    about = await hub.api("GET", "/api/v1/audit", params={"target_type": "conversation", "target_id": str(cid)})
    assert [e["action"] for e in about["items"]] == ["ticket.handoff"]
    assert (await hub.api("GET", "/api/v1/audit", params={"via": "slack"}))["items"] == []
    bad = await hub.api("GET", "/api/v1/audit", params={"via": "fax"}, expect=400)
    assert "'via' must be one of api, slack, cli" in bad["error"]["message"]
    await hub.api("GET", "/api/v1/audit", role="agent", expect=403)

    exported = await hub.api("GET", f"/api/v1/contacts/{contact}/export")
    assert {(e["action"], e["via"]) for e in exported["audit"]} == {("ticket.handoff", "api"), ("ticket.claim", "api")}


@pytest.mark.asyncio
async def test_a_retried_request_or_a_change_that_changes_nothing_writes_no_second_row(hub: Hub) -> None:
    cid = await customer_conversation(hub, sender="audit-twice")
    retry = {"Idempotency-Key": "audit-twice-1"}
    for _ in range(2):  # a client retrying its POST: one reply, one row
        await hub.api(
            "POST",
            f"/api/v1/conversations/{cid}/messages",
            role="agent",
            json={"text": "Hi"},
            headers=retry,
            expect=201,
        )
    for _ in range(2):
        await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"priority": "high"})
    ticket = await hub.api("POST", f"/api/v1/conversations/{cid}/handoff", role="agent", json={}, expect=201)
    for _ in range(2):
        await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent")
    actions = [r.action for r in await rows(hub)]
    assert actions == ["conversation.reply", "conversation.update", "ticket.handoff", "ticket.resolve"]


@pytest.mark.asyncio
async def test_phrasing_decisions_are_audited_with_their_door(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub import keys
    from hub.__main__ import main
    from hub.events import utcnow
    from hub.kb.suggestions import record

    def suggest(conn: sa.Connection, text: str) -> int | None:
        return record(
            conn,
            collection="default",
            article_id="refunds",
            text=text,
            source="agent",
            conversation_id=None,
            suggested_by=None,
            now=utcnow(),
        )

    by_api = await hub.db.write(suggest, "How long do refunds take?")
    by_cli = await hub.db.write(suggest, "When is my money back?")
    admin = (await hub.api("GET", "/api/v1/me"))["id"]
    await hub.api("POST", f"/api/v1/kb/suggestions/{by_api}/reject")
    row = await one_row(hub, "kb.suggestion.reject", ("kb_suggestion", by_api), user_id=admin, via="api")
    assert row.details == {"collection": "default", "article_id": "refunds"}

    monkeypatch.setenv("HUB_DATABASE_URL", hub.app[keys.SETTINGS].database_url)
    monkeypatch.setenv("HUB_KB_ENABLED", "false")
    result = await asyncio.to_thread(CliRunner().invoke, main, ["kb", "suggestions", "--reject", str(by_cli)])
    assert result.exit_code == 0, result.output
    row = await one_row(hub, "kb.suggestion.reject", ("kb_suggestion", by_cli), user_id=None, via="cli")
    assert row.details["os_user"] and "money" not in str(row.details)


# --- one transaction ---------------------------------------------------------------------------


async def refuse_audit_rows(hub: Hub) -> None:
    """Make the database refuse every new audit row, as a full disk or a
    revoked grant would (a trigger: nothing of the hub is replaced)."""

    def install(conn: sa.Connection) -> None:
        if conn.dialect.name == "sqlite":
            conn.execute(
                sa.text(
                    "CREATE TRIGGER audit_log_refused BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit log refused'); END"
                )
            )
            return
        conn.execute(
            sa.text(
                "CREATE FUNCTION audit_log_refused() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit log refused'; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER audit_log_refused BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_refused()"
            )
        )

    await hub.db.write(install)


@pytest.mark.asyncio
async def test_a_change_whose_audit_row_cannot_be_written_is_not_made(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub import keys
    from hub.__main__ import main

    cid = await customer_conversation(hub, sender="audit-atomic", text="Where is parcel 4471?")
    path = f"/api/v1/conversations/{cid}"
    conversation = await hub.api("GET", path)
    ticket = await hub.api("POST", f"{path}/handoff", role="agent", json={}, expect=201)
    await refuse_audit_rows(hub)

    async def fails(method: str, url: str, **kwargs: Any) -> None:
        # The database's refusal, whatever status it maps to (SQLite reports
        # a trigger's abort as a constraint error): the request fails.
        response = await hub.client.request(method, url, headers=hub.auth("agent"), **kwargs)
        assert response.status >= 400, response.status

    await fails("PATCH", path, json={"priority": "urgent"})
    assert (
        (await hub.api("GET", path))["priority"]
        == (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["priority"]
        != "urgent"
    )
    await fails("POST", f"/api/v1/tickets/{ticket['id']}/resolve")
    assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["status"] == "open"
    await fails("POST", f"{path}/messages", json={"text": "Tracing 4471 now"})
    assert "Tracing 4471" not in str(await hub.api("GET", f"{path}/timeline"))
    monkeypatch.setenv("HUB_DATABASE_URL", hub.app[keys.SETTINGS].database_url)
    erased = await asyncio.to_thread(
        CliRunner().invoke, main, ["contacts", "erase", str(conversation["contact_id"]), "--yes"]
    )
    assert erased.exit_code != 0
    assert (await hub.api("GET", f"/api/v1/contacts/{conversation['contact_id']}"))["id"] == conversation["contact_id"]
    assert [r.action for r in await rows(hub)] == ["ticket.handoff"]
