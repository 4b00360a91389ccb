"""Queued tickets are routed the moment capacity frees up, never past capacity.

Every change that frees or adds an agent's room (resolve, snooze, reassign,
unassign, a capacity or duty change, a conversation resolved elsewhere) takes
the head of the queue (most urgent, then oldest) in its own transaction, so
the ticket is assigned when the API call returns. Concurrent routing (two
handoffs, two resolves) never books an agent past capacity.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Hub, wait_for
from tests.hub.test_tickets import conversation, handoff, new_agent


async def ticket(hub: Hub, ticket_id: int) -> dict:
    return await hub.api("GET", f"/api/v1/tickets/{ticket_id}")


async def agent(hub: Hub, agent_id: int) -> dict:
    return await hub.api("GET", f"/api/v1/agents/{agent_id}")


async def queued_three(hub: Hub, prefix: str) -> tuple[int, dict, dict, dict]:
    """An agent with room for one: the first ticket is theirs, a normal and
    then a high one wait in the queue."""
    solo = await new_agent(hub, f"{prefix}-solo", capacity=1)
    first = await handoff(hub, (await conversation(hub, f"{prefix}-1"))["id"])
    normal = await handoff(hub, (await conversation(hub, f"{prefix}-2"))["id"], priority="normal")
    high = await handoff(hub, (await conversation(hub, f"{prefix}-3"))["id"], priority="high")
    assert first["assignee_id"] == solo
    assert normal["assignee_id"] is None and high["assignee_id"] is None
    return solo, first, normal, high


@pytest.mark.asyncio
async def test_resolve_assigns_the_most_urgent_queued_ticket_at_once(hub: Hub) -> None:
    solo, first, normal, high = await queued_three(hub, "r")
    await hub.api("POST", f"/api/v1/tickets/{first['id']}/resolve", role="agent")
    # No waiting: the resolve's own transaction routed the queue's head.
    assert (await ticket(hub, high["id"]))["assignee_id"] == solo
    assert (await ticket(hub, normal["id"]))["assignee_id"] is None
    assert (await agent(hub, solo))["open_tickets"] == 1
    conv = await hub.api("GET", f"/api/v1/conversations/{high['conversation_id']}")
    assert conv["assignee_id"] == solo
    await hub.api("POST", f"/api/v1/tickets/{high['id']}/resolve", role="agent")
    assert (await ticket(hub, normal["id"]))["assignee_id"] == solo  # then the oldest


@pytest.mark.asyncio
async def test_same_priority_goes_oldest_first(hub: Hub) -> None:
    solo = await new_agent(hub, "o-solo", capacity=1)
    first = await handoff(hub, (await conversation(hub, "o-1"))["id"])
    older = await handoff(hub, (await conversation(hub, "o-2"))["id"])
    await handoff(hub, (await conversation(hub, "o-3"))["id"])
    await hub.api("POST", f"/api/v1/tickets/{first['id']}/resolve", role="agent")
    assert (await ticket(hub, older["id"]))["assignee_id"] == solo


@pytest.mark.asyncio
async def test_snoozed_tickets_leave_the_load_and_come_back_on_wake(hub: Hub) -> None:
    solo, first, normal, high = await queued_three(hub, "s")
    await hub.api("POST", f"/api/v1/tickets/{first['id']}/snooze", role="agent", json={"minutes": 30})
    assert (await ticket(hub, high["id"]))["assignee_id"] == solo
    assert (await agent(hub, solo))["open_tickets"] == 1  # the snoozed one does not count
    # The customer writes again: the ticket wakes, back in its agent's load.
    await conversation(hub, "s-1", "any news?")
    woken = await wait_for(lambda: _if(ticket(hub, first["id"]), lambda t: t["snoozed_until"] is None))
    assert woken["assignee_id"] == solo
    assert (await agent(hub, solo))["open_tickets"] == 2
    await hub.api("POST", f"/api/v1/tickets/{high['id']}/resolve", role="agent")
    # Still at capacity with the woken ticket: the queue waits.
    assert (await ticket(hub, normal["id"]))["assignee_id"] is None
    assert (await agent(hub, solo))["open_tickets"] == 1


@pytest.mark.asyncio
async def test_reassign_and_unassign_free_room_for_the_queue(hub: Hub) -> None:
    solo, first, normal, high = await queued_three(hub, "u")
    admin = await hub.api("GET", "/api/v1/me")
    await hub.api("POST", f"/api/v1/tickets/{first['id']}/assign", json={"assignee_id": admin["id"]})
    assert (await ticket(hub, high["id"]))["assignee_id"] == solo
    # Unassigned, a ticket goes back to the queue; its agent takes the queue's
    # head, not the ticket they just let go.
    await hub.api("POST", f"/api/v1/tickets/{high['id']}/assign", role="agent", json={"assignee_id": None})
    assert (await ticket(hub, normal["id"]))["assignee_id"] == solo
    assert (await ticket(hub, high["id"]))["assignee_id"] is None
    assert (await agent(hub, solo))["open_tickets"] == 1


@pytest.mark.asyncio
async def test_capacity_and_duty_changes_take_queued_tickets(hub: Hub) -> None:
    solo, _, normal, high = await queued_three(hub, "c")
    await hub.api("PATCH", f"/api/v1/agents/{solo}", json={"capacity": 2})
    assert (await ticket(hub, high["id"]))["assignee_id"] == solo
    assert (await ticket(hub, normal["id"]))["assignee_id"] is None
    spare = await new_agent(hub, "c-spare", capacity=5)  # goes on duty
    assert (await ticket(hub, normal["id"]))["assignee_id"] == spare


@pytest.mark.asyncio
async def test_conversation_resolved_elsewhere_frees_room(hub: Hub) -> None:
    solo, first, _, high = await queued_three(hub, "p")
    await hub.api(
        "PATCH", f"/api/v1/conversations/{first['conversation_id']}", role="agent", json={"status": "resolved"}
    )
    routed = await wait_for(lambda: _if(ticket(hub, high["id"]), lambda t: t["assignee_id"] == solo))
    assert routed["assignee_id"] == solo and (await agent(hub, solo))["open_tickets"] == 1


@pytest.mark.asyncio
async def test_concurrent_handoffs_never_exceed_capacity(hub: Hub) -> None:
    solo = await new_agent(hub, "h-solo", capacity=2)
    convs = [await conversation(hub, f"h-{i}") for i in range(8)]
    opened = await asyncio.gather(*(hub.tickets.open(c["id"]) for c in convs))
    mine = [t for t in opened if t.assignee_id == solo]
    assert len(mine) == 2, [t.assignee_id for t in opened]
    assert (await agent(hub, solo))["open_tickets"] == 2


@pytest.mark.asyncio
async def test_concurrent_resolves_route_each_queued_ticket_once(hub: Hub) -> None:
    a = await new_agent(hub, "x-a", capacity=1)
    b = await new_agent(hub, "x-b", capacity=1)
    mine = [await handoff(hub, (await conversation(hub, f"x-{i}"))["id"]) for i in range(2)]
    assert {t["assignee_id"] for t in mine} == {a, b}
    waiting = await handoff(hub, (await conversation(hub, "x-q"))["id"], priority="high")
    assert waiting["assignee_id"] is None
    tickets = hub.tickets
    await asyncio.gather(*(tickets.resolve(t["id"], actor_id=None) for t in mine))
    routed = await ticket(hub, waiting["id"])
    assert routed["assignee_id"] in (a, b)
    loads = [(await agent(hub, x))["open_tickets"] for x in (a, b)]
    assert sorted(loads) == [0, 1], loads


async def _if(pending: Any, check: Any) -> dict | None:
    found = await pending
    return found if check(found) else None
