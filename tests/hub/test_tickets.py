"""Tickets over every storage backend: handoff, urgency rules, assignment, the queue, duty."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Hub, wait_for


async def conversation(hub: Hub, sender: str, text: str = "hello", **extra: Any) -> dict:
    received = await hub.inbound({"from": sender, "text": text, "id": f"{sender}-{time.time_ns()}", **extra})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return await hub.api("GET", f"/api/v1/conversations/{message['conversation_id']}")


async def new_agent(hub: Hub, name: str, **profile: Any) -> int:
    user = await hub.api(
        "POST", "/api/v1/users", json={"name": name, "email": f"{name}@example.test", "role": "agent"}, expect=201
    )
    on_duty = profile.pop("on_duty", True)
    await hub.api("PATCH", f"/api/v1/agents/{user['id']}", json=profile)
    await hub.api("POST", f"/api/v1/agents/{user['id']}/duty", json={"on_duty": on_duty})
    return user["id"]


async def handoff(hub: Hub, conversation_id: int, **body: Any) -> dict:
    return await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json=body or None, expect=201
    )


@pytest.mark.asyncio
async def test_agent_handoff_opens_one_ticket_and_escalates_it(hub: Hub) -> None:
    conv = await conversation(hub, "t-1", "I was double charged")
    ticket = await handoff(hub, conv["id"], priority="normal", reason="asked for a human")
    assert ticket["status"] == "open" and ticket["priority"] == "normal" and ticket["source"] == "agent"
    assert ticket["team"] == "support" and ticket["summary"] == "I was double charged"
    assert ticket["first_response_due"] and ticket["resolution_due"]
    updated = await hub.api("GET", f"/api/v1/conversations/{conv['id']}")
    assert updated["handler"] == "human"
    # A second handoff never opens a second ticket; it can raise the priority.
    again = await handoff(hub, conv["id"], priority="urgent")
    assert again["id"] == ticket["id"] and again["priority"] == "urgent"
    updated = await hub.api("GET", f"/api/v1/conversations/{conv['id']}")
    assert updated["priority"] == "urgent"
    page = await hub.api("GET", f"/api/v1/conversations/{conv['id']}/timeline")
    events = [m["meta"].get("event") for m in page["items"] if m["kind"] == "event"]
    assert "ticket-opened" in events and "handler-changed" in events and "priority-changed" in events
    listed = await hub.api("GET", "/api/v1/tickets", params={"status": "open"})
    assert [t["id"] for t in listed["items"]] == [ticket["id"]]


@pytest.mark.asyncio
async def test_keyword_rule_opens_ticket_on_inbound_message(hub: Hub) -> None:
    await hub.api(
        "POST",
        "/api/v1/routing/rules",
        json={
            "kind": "keyword",
            "params": {"words": ["chargeback", "lawyer"]},
            "priority": "urgent",
            "team": "billing",
        },
        expect=201,
    )
    await hub.api("POST", "/api/v1/routing/rules", json={"kind": "keyword", "params": {}}, expect=400)
    quiet = await conversation(hub, "t-2", "How do I change my address?")
    loud = await conversation(hub, "t-3", "I will file a CHARGEBACK today")

    async def ticket_of(conversation_id: int) -> dict | None:
        items = (await hub.api("GET", "/api/v1/tickets"))["items"]
        return next((t for t in items if t["conversation_id"] == conversation_id), None)

    ticket = await wait_for(lambda: ticket_of(loud["id"]))
    assert ticket["priority"] == "urgent" and ticket["team"] == "billing" and ticket["source"] == "rule"
    assert "chargeback" in ticket["reason"].lower()
    assert await ticket_of(quiet["id"]) is None


@pytest.mark.asyncio
async def test_vip_and_repeat_contact_rules_raise_priority(hub: Hub) -> None:
    await hub.api(
        "POST",
        "/api/v1/routing/rules",
        json={"kind": "attribute", "params": {"key": "tier", "values": ["vip", "enterprise"]}, "priority": "high"},
        expect=201,
    )
    await hub.api(
        "POST",
        "/api/v1/routing/rules",
        json={"kind": "repeat", "params": {"hours": 24, "count": 3}, "priority": "urgent"},
        expect=201,
    )
    vip = await conversation(hub, "t-vip", "hi")
    await hub.api("PATCH", f"/api/v1/contacts/{vip['contact_id']}", json={"attributes": {"tier": "VIP"}})
    assert (await handoff(hub, vip["id"], priority="low"))["priority"] == "high"

    for n in range(3):  # three conversations (three threads) within 24 hours
        repeat = await conversation(hub, "t-repeat", f"again {n}", thread=f"th-{n}")
    ticket = await handoff(hub, repeat["id"])
    assert ticket["priority"] == "urgent" and "3 conversations within 24h" in ticket["reason"]
    rules = await hub.api("GET", "/api/v1/routing/rules", role="agent")
    assert [r["kind"] for r in rules["items"]] == ["attribute", "repeat"]
    await hub.api("DELETE", f"/api/v1/routing/rules/{rules['items'][1]['id']}")
    other = await conversation(hub, "t-repeat", "and again", thread="th-9")
    assert (await handoff(hub, other["id"]))["priority"] == "normal"


@pytest.mark.asyncio
async def test_assignment_senior_first_for_urgent_then_least_loaded(hub: Hub) -> None:
    junior_a = await new_agent(hub, "junior-a", capacity=5)
    junior_b = await new_agent(hub, "junior-b", capacity=5)
    senior = await new_agent(hub, "senior", senior=True, capacity=5)
    urgent = await handoff(hub, (await conversation(hub, "a-1"))["id"], priority="urgent")
    assert urgent["assignee_id"] == senior
    assignees = []
    for n in range(4):
        ticket = await handoff(hub, (await conversation(hub, f"a-n{n}"))["id"], priority="normal")
        assignees.append(ticket["assignee_id"])
    # Least open load first, then round-robin: the juniors get the first two, then all rotate.
    assert sorted(assignees[:2]) == sorted([junior_a, junior_b])
    assert set(assignees) == {junior_a, junior_b, senior}
    loads = {a["id"]: a["open_tickets"] for a in (await hub.api("GET", "/api/v1/agents", role="agent"))["items"]}
    assert loads[junior_a] + loads[junior_b] + loads[senior] == 5
    assert (
        max(loads[junior_a], loads[junior_b], loads[senior]) - min(loads[junior_a], loads[junior_b], loads[senior]) <= 1
    )


@pytest.mark.asyncio
async def test_capacity_queue_and_duty_changes_reroute(hub: Hub) -> None:
    first = await new_agent(hub, "first", capacity=1)
    one = await handoff(hub, (await conversation(hub, "q-1"))["id"])
    two = await handoff(hub, (await conversation(hub, "q-2"))["id"], priority="high")
    assert one["assignee_id"] == first and two["assignee_id"] is None  # over capacity: queued
    queue = await hub.api("GET", "/api/v1/tickets/queue", role="agent")
    assert [t["id"] for t in queue["items"]] == [two["id"]]

    second = await new_agent(hub, "second", capacity=3, on_duty=False)
    await hub.api("POST", f"/api/v1/agents/{second}/duty", json={"on_duty": True})  # picks up the queue
    assert (await hub.api("GET", f"/api/v1/tickets/{two['id']}"))["assignee_id"] == second
    await hub.api("POST", f"/api/v1/agents/{first}/duty", json={"on_duty": False})  # hands its tickets on
    moved = await hub.api("GET", f"/api/v1/tickets/{one['id']}")
    assert moved["assignee_id"] == second
    conv = await hub.api("GET", f"/api/v1/conversations/{moved['conversation_id']}")
    assert conv["assignee_id"] == second
    await hub.api("POST", f"/api/v1/agents/{second}/duty", json={"on_duty": False})
    assert (await hub.api("GET", f"/api/v1/tickets/{one['id']}"))["assignee_id"] is None
    queue = await hub.api("GET", "/api/v1/tickets/queue", role="agent")
    assert [t["id"] for t in queue["items"]] == [two["id"], one["id"]]  # most urgent first
    # An agent may only change their own duty.
    await hub.api("POST", f"/api/v1/agents/{second}/duty", role="agent", json={"on_duty": True}, expect=403)
    me = await hub.api("POST", "/api/v1/agents/me/duty", role="agent", json={"on_duty": True})
    assert me["on_duty"] is True and me["open_tickets"] == 2


@pytest.mark.asyncio
async def test_claim_resolve_and_conversation_patch_stay_in_sync(hub: Hub) -> None:
    agent = await hub.api("GET", "/api/v1/me", role="agent")
    ticket = await handoff(hub, (await conversation(hub, "s-1"))["id"])
    claimed = await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/claim", role="agent")
    assert claimed["assignee_id"] == agent["id"]
    admin = await hub.api("GET", "/api/v1/me")
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/claim", role="admin", expect=409)
    # Changing the conversation elsewhere (the REST PATCH) reaches the ticket.
    await hub.api(
        "PATCH",
        f"/api/v1/conversations/{ticket['conversation_id']}",
        role="agent",
        json={"assignee_id": admin["id"], "priority": "high"},
    )
    synced = await wait_for(lambda: _ticket_if(hub, ticket["id"], lambda t: t["assignee_id"] == admin["id"]))
    assert synced["priority"] == "high"
    agents = {a["id"]: a for a in (await hub.api("GET", "/api/v1/agents", role="agent"))["items"]}
    assert agents[admin["id"]]["open_tickets"] == 1 and agents[agent["id"]]["open_tickets"] == 0
    await hub.api(
        "PATCH", f"/api/v1/conversations/{ticket['conversation_id']}", role="agent", json={"status": "resolved"}
    )
    resolved = await wait_for(lambda: _ticket_if(hub, ticket["id"], lambda t: t["status"] == "resolved"))
    assert resolved["resolved_at"]
    agents = {a["id"]: a for a in (await hub.api("GET", "/api/v1/agents", role="agent"))["items"]}
    assert agents[admin["id"]]["open_tickets"] == 0
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/claim", role="agent", expect=409)
    # A new handoff after resolution opens a new ticket.
    fresh = await handoff(hub, ticket["conversation_id"])
    assert fresh["id"] != ticket["id"]


async def _ticket_if(hub: Hub, ticket_id: int, check: Any) -> dict | None:
    ticket = await hub.api("GET", f"/api/v1/tickets/{ticket_id}")
    return ticket if check(ticket) else None


@pytest.mark.asyncio
async def test_ticket_api_validation_and_roles(hub: Hub, tmp_path: Path) -> None:
    conv = await conversation(hub, "v-1")
    await hub.api("POST", f"/api/v1/conversations/{conv['id']}/handoff", role="viewer", json={}, expect=403)
    await hub.api(
        "POST", f"/api/v1/conversations/{conv['id']}/handoff", role="agent", json={"priority": "asap"}, expect=400
    )
    await hub.api("POST", "/api/v1/conversations/999999/handoff", role="agent", json={}, expect=404)
    await hub.api("GET", "/api/v1/tickets/999999", expect=404)
    ticket = await handoff(hub, conv["id"])
    await hub.api(
        "POST", f"/api/v1/tickets/{ticket['id']}/priority", role="agent", json={"priority": "asap"}, expect=400
    )
    await hub.api("PATCH", "/api/v1/agents/1", role="agent", json={"team": "x"}, expect=403)
    await hub.api("PATCH", "/api/v1/agents/1", json={"capacity": -1}, expect=400)
    await hub.api("PATCH", "/api/v1/agents/1", json={"on_duty": True}, expect=400)
    snoozed = await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/snooze", role="agent", json={"minutes": 5})
    assert snoozed["snoozed_until"]
    assert (await hub.api("GET", f"/api/v1/conversations/{conv['id']}"))["status"] == "snoozed"
    policies = await hub.api("GET", "/api/v1/sla/policies", role="viewer")
    assert policies["urgent"] == {"first_response_minutes": 15.0, "resolution_minutes": 240.0}


@pytest.mark.asyncio
async def test_handoff_raises_priority_never_lowers_it(hub: Hub) -> None:
    conv = await conversation(hub, "p-1", "hello")
    await hub.api("PATCH", f"/api/v1/conversations/{conv['id']}", role="agent", json={"priority": "high"})
    ticket = await handoff(hub, conv["id"])  # no priority given: normal by default
    assert ticket["priority"] == "high"
    assert (await hub.api("GET", f"/api/v1/conversations/{conv['id']}"))["priority"] == "high"
    raised = await handoff(hub, conv["id"], priority="urgent")
    assert raised["priority"] == "urgent"


@pytest.mark.asyncio
async def test_only_agents_and_admins_take_work(hub: Hub) -> None:
    viewer = await hub.api("GET", "/api/v1/me", role="viewer")
    conv = await conversation(hub, "w-1")
    refused = await hub.api(
        "PATCH", f"/api/v1/conversations/{conv['id']}", role="agent", json={"assignee_id": viewer["id"]}, expect=400
    )
    assert "assignee_id" in json.dumps(refused) and "viewer" in json.dumps(refused)
    unknown = await hub.api(
        "PATCH", f"/api/v1/conversations/{conv['id']}", role="agent", json={"assignee_id": 987654}, expect=400
    )
    assert "assignee_id" in json.dumps(unknown)
    ticket = await handoff(hub, conv["id"])
    refused = await hub.api(
        "POST", f"/api/v1/tickets/{ticket['id']}/assign", role="agent", json={"assignee_id": viewer["id"]}, expect=400
    )
    assert "assignee_id" in json.dumps(refused)
    assert (await hub.api("GET", f"/api/v1/conversations/{conv['id']}"))["assignee_id"] != viewer["id"]
    agent = await hub.api("GET", "/api/v1/me", role="agent")
    taken = await hub.api(
        "POST", f"/api/v1/tickets/{ticket['id']}/assign", role="agent", json={"assignee_id": agent["id"]}
    )
    assert taken["assignee_id"] == agent["id"]


@pytest.mark.asyncio
async def test_cli_revocation_holds_at_once_on_a_running_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from hub import keys
    from hub.__main__ import main

    agent = await hub.api("GET", "/api/v1/me", role="agent")
    created = await hub.api("POST", f"/api/v1/users/{agent['id']}/tokens", json={"name": "laptop"}, expect=201)
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 200
    monkeypatch.setenv("HUB_DATABASE_URL", hub.app[keys.SETTINGS].database_url)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["tokens", "revoke", str(created["id"])])
    assert result.exit_code == 0, result.output
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 401  # no cache to wait out
