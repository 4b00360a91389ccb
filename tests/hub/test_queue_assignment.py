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


# --- Two instances on PostgreSQL -------------------------------------------------
# Each test runs one change in a transaction on its own engine and, while it is
# still uncommitted, a second change on another engine (a second instance);
# then the first commits. The second either runs through or waits on a lock the
# first holds: the outcome must be the one a serial run gives.


def _postgres_url(hub: Hub) -> str:
    from hub import keys

    url = str(hub.app[keys.SETTINGS].database_url)
    if not url.startswith("postgresql"):
        pytest.skip("two instances racing is a PostgreSQL matter: SQLite has one writer")
    return url


async def _race(url: str, first: Any, second: Any) -> None:
    """``first(conn)`` in a transaction held open until ``second(conn)``, on
    another engine, has committed or is waiting on one of first's locks."""
    from sqlalchemy.ext.asyncio import create_async_engine

    one, two = create_async_engine(url), create_async_engine(url)

    async def run_second() -> None:
        async with two.begin() as conn:
            await conn.run_sync(second)

    try:
        async with one.begin() as conn:
            await conn.run_sync(first)
            pending = asyncio.create_task(run_second())
            await asyncio.wait({pending}, timeout=2.0)
        await asyncio.wait_for(pending, 30.0)
    finally:
        await one.dispose()
        await two.dispose()


def _resolver(hub: Hub, ticket_id: int) -> Any:
    from hub.tickets.transactions import resolve

    now = hub.tickets.clock.now()
    return lambda conn: resolve(conn, ticket_id, actor_id=None, now=now)


async def _loads_match_tickets(hub: Hub, *agent_ids: int) -> dict[int, int]:
    """Each agent's booked load equals their open, awake tickets; returned."""
    loads = {}
    for agent_id in agent_ids:
        mine = await hub.api("GET", f"/api/v1/tickets?assignee={agent_id}&status=open&limit=200")
        booked = (await agent(hub, agent_id))["open_tickets"]
        assert booked == len([t for t in mine["items"] if t["snoozed_until"] is None]), (agent_id, booked, mine)
        loads[agent_id] = booked
    return loads


@pytest.mark.asyncio
async def test_two_instances_resolving_at_once_route_both_queued_tickets(hub: Hub) -> None:
    url = _postgres_url(hub)
    a = await new_agent(hub, "i-a", capacity=1)
    b = await new_agent(hub, "i-b", capacity=1)
    mine = [await handoff(hub, (await conversation(hub, f"i-{i}"))["id"]) for i in range(2)]
    by_agent = {t["assignee_id"]: t["id"] for t in mine}
    assert set(by_agent) == {a, b}
    high = await handoff(hub, (await conversation(hub, "i-q1"))["id"], priority="high")
    normal = await handoff(hub, (await conversation(hub, "i-q2"))["id"])
    assert high["assignee_id"] is None and normal["assignee_id"] is None
    await _race(url, _resolver(hub, by_agent[a]), _resolver(hub, by_agent[b]))
    # Both agents freed a slot: both queued tickets are routed, one each.
    routed = {(await ticket(hub, t["id"]))["assignee_id"] for t in (high, normal)}
    assert routed == {a, b}
    assert await _loads_match_tickets(hub, a, b) == {a: 1, b: 1}


@pytest.mark.asyncio
async def test_two_instances_freeing_one_agent_never_book_past_capacity(hub: Hub) -> None:
    url = _postgres_url(hub)
    solo = await new_agent(hub, "j-solo", capacity=2)
    mine = [await handoff(hub, (await conversation(hub, f"j-{i}"))["id"]) for i in range(2)]
    assert {t["assignee_id"] for t in mine} == {solo}
    queued = [await handoff(hub, (await conversation(hub, f"j-q{i}"))["id"]) for i in range(3)]
    assert all(t["assignee_id"] is None for t in queued)
    await _race(url, _resolver(hub, mine[0]["id"]), _resolver(hub, mine[1]["id"]))
    owners = [(await ticket(hub, t["id"]))["assignee_id"] for t in queued]
    assert owners == [solo, solo, None]  # the two oldest; the third still waits
    assert await _loads_match_tickets(hub, solo) == {solo: 2}


@pytest.mark.asyncio
async def test_a_handoff_beside_an_uncommitted_resolve_is_routed(hub: Hub) -> None:
    """The handoff cannot see the freed slot, the resolve cannot see the new
    ticket: unless the two are ordered, the ticket waits beside an idle agent."""
    from hub.tickets.transactions import open_ticket

    url = _postgres_url(hub)
    solo = await new_agent(hub, "k-solo", capacity=1)
    busy = await handoff(hub, (await conversation(hub, "k-1"))["id"])
    assert busy["assignee_id"] == solo
    fresh = await conversation(hub, "k-2")
    policy = await hub.tickets.policy()
    now = hub.tickets.clock.now()
    await _race(
        url,
        _resolver(hub, busy["id"]),
        lambda conn: open_ticket(conn, fresh["id"], policy=policy, now=now),
    )
    opened = (await hub.api("GET", "/api/v1/tickets?limit=200"))["items"]
    assert [t["assignee_id"] for t in opened if t["conversation_id"] == fresh["id"]] == [solo]
    assert await _loads_match_tickets(hub, solo) == {solo: 1}


@pytest.mark.asyncio
async def test_one_ticket_resolved_twice_at_once_frees_one_slot(hub: Hub) -> None:
    """A double click, or the Slack button beside the API: the second resolve
    must see the first's commit, or the agent's load drops below their tickets
    and the next routing books them past capacity."""
    url = _postgres_url(hub)
    solo = await new_agent(hub, "d-solo", capacity=1)
    busy = await handoff(hub, (await conversation(hub, "d-1"))["id"])
    waiting = await handoff(hub, (await conversation(hub, "d-2"))["id"])
    assert busy["assignee_id"] == solo and waiting["assignee_id"] is None
    await _race(url, _resolver(hub, busy["id"]), _resolver(hub, busy["id"]))
    assert (await ticket(hub, waiting["id"]))["assignee_id"] == solo
    assert await _loads_match_tickets(hub, solo) == {solo: 1}
    late = await handoff(hub, (await conversation(hub, "d-3"))["id"])
    assert late["assignee_id"] is None  # still full: no phantom slot


@pytest.mark.asyncio
async def test_a_queued_ticket_busy_elsewhere_is_passed_over_then_routed(hub: Hub) -> None:
    """The fill pass never waits on a row another transaction holds (here the
    queued ticket's conversation, as while its customer's message is stored):
    the resolve returns at once, and the scheduler's next pass routes it."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    url = _postgres_url(hub)
    solo = await new_agent(hub, "b-solo", capacity=1)
    busy = await handoff(hub, (await conversation(hub, "b-1"))["id"])
    waiting = await handoff(hub, (await conversation(hub, "b-2"))["id"])
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": waiting["conversation_id"]}
            )
            resolving = hub.api("POST", f"/api/v1/tickets/{busy['id']}/resolve", role="agent")
            await asyncio.wait_for(resolving, 10.0)
            assert (await ticket(hub, waiting["id"]))["assignee_id"] is None
    finally:
        await engine.dispose()
    routed = await wait_for(lambda: _if(ticket(hub, waiting["id"]), lambda t: t["assignee_id"] == solo))
    assert routed["assignee_id"] == solo
    assert await _loads_match_tickets(hub, solo) == {solo: 1}


@pytest.mark.asyncio
async def test_agents_swapping_tickets_at_once_never_deadlock(hub: Hub) -> None:
    """Moving a ticket from A to B writes A's row then B's, and one from B to A
    the other way round: without one order for routing, PostgreSQL sees a
    deadlock and one of the requests fails."""
    _postgres_url(hub)
    a = await new_agent(hub, "w-a", capacity=50)
    b = await new_agent(hub, "w-b", capacity=50)
    opened = [await handoff(hub, (await conversation(hub, f"w-{i}"))["id"]) for i in range(12)]
    owner = {t["id"]: t["assignee_id"] for t in opened}
    assert set(owner.values()) == {a, b}

    async def swap(ticket_id: int) -> None:
        other = b if owner[ticket_id] == a else a
        await hub.api("POST", f"/api/v1/tickets/{ticket_id}/assign", json={"assignee_id": other})

    for _ in range(4):
        await asyncio.gather(*(swap(t) for t in owner))
        owner = {t: (await ticket(hub, t))["assignee_id"] for t in owner}
    loads = await _loads_match_tickets(hub, a, b)
    assert sum(loads.values()) == 12
