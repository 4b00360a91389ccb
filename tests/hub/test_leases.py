"""Timers on several instances (hub/leases.py, the SLA scheduler): one
instance acts on each due item, and another takes over when the lease
holder stops or dies. Two hubs on one database, as two ``hub serve``; the
time is a clock the tests move (shared by both, as NTP would keep them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hub import keys
from hub.events import SlaBreached, TicketChanged
from hub.leases import Lease, every, holder_of
from hub.storage import open_database
from tests.channels.test_slack import slack_api, slack_settings  # noqa: F401 - slack_api is a fixture
from tests.conftest import Hub, close_hub, start_hub, wait_for
from tests.fakes.slack_api import FakeSlackApi
from tests.hub.test_sla import MovedClock, open_ticket, ticket_when

# --- the lease itself ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_holder_at_a_time_and_a_takeover_once_it_expires(database_url: str) -> None:
    db = open_database(database_url)
    clock = MovedClock()
    try:
        first, second = (Lease(db, "loop", holder=name, seconds=30, now=clock.now) for name in ("a", "b"))
        assert await first.hold() and not await second.hold()
        clock.advance(20)
        assert await first.hold() and not await second.hold()  # renewed: 30 s from now again
        clock.advance(25)
        assert not await second.hold()
        # The holder dies (stops renewing): once its lease has passed, the other takes over.
        clock.advance(10)
        assert await second.hold() and not await first.hold()
        assert await db.read(holder_of, "loop", now=clock.now()) == "b"
        # A stop releases: the other takes it at once.
        await second.release()
        assert await db.read(holder_of, "loop", now=clock.now()) is None
        assert await first.hold()
        # Many racing for a free lease: one wins.
        clock.advance(60)
        racers = [Lease(db, "race", holder=f"r{i}", seconds=30, now=clock.now) for i in range(8)]
        assert sum(await asyncio.gather(*(racer.hold() for racer in racers))) == 1
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_a_periodic_sweep_runs_on_the_holder_only_and_moves_on_when_it_stops(database_url: str) -> None:
    db = open_database(database_url)
    clock = MovedClock()  # not moved: the lease expires only when released
    runs = {"a": 0, "b": 0}

    def sweep(name: str) -> Any:
        async def work() -> None:
            runs[name] += 1

        return work

    leases = {name: Lease(db, "sweep", holder=name, seconds=0.3, now=clock.now) for name in runs}
    loops: dict[str, asyncio.Task[None]] = {}
    try:
        loops["a"] = asyncio.create_task(every(0.02, sweep("a"), lease=leases["a"], what="a"))
        await wait_for(lambda: runs["a"] >= 1)
        loops["b"] = asyncio.create_task(every(0.02, sweep("b"), lease=leases["b"], what="b"))
        await wait_for(lambda: runs["a"] >= 5)  # b has looked meanwhile, and left it to a
        assert runs["b"] == 0 and leases["a"].held and not leases["b"].held
        loops["a"].cancel()  # a stops: it releases, b takes over at its next look
        await asyncio.gather(loops["a"], return_exceptions=True)
        await wait_for(lambda: runs["b"] >= 2)
        assert await db.read(holder_of, "sweep", now=clock.now()) == "b"
    finally:
        for loop in loops.values():
            loop.cancel()
        await asyncio.gather(*loops.values(), return_exceptions=True)
        await db.close()


# --- two instances ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def two_hubs(
    database_url: str,
    tmp_path: Path,
    slack_api: FakeSlackApi,
) -> AsyncIterator[tuple[Hub, Hub, MovedClock, dict[str, list[Any]]]]:
    clock = MovedClock()
    events: dict[str, list[Any]] = {"a": [], "b": []}
    hubs = []
    try:
        for name in ("a", "b"):
            settings = slack_settings(
                database_url, tmp_path / name, slack_api, sla_policies="normal=0.01/60", lease_seconds=5
            )
            running = await start_hub(settings, clock=clock)
            for kind in (TicketChanged, SlaBreached):
                running.app[keys.BUS].subscribe(kind, lambda event, seen=events[name]: _append(seen, event))
            hubs.append(running)
        yield hubs[0], hubs[1], clock, events
    finally:
        for running in hubs:
            await close_hub(running)


async def _append(seen: list[Any], event: Any) -> None:
    seen.append(event)


def woken(events: list[Any], ticket_id: int) -> list[Any]:
    return [
        e
        for e in events
        if isinstance(e, TicketChanged) and e.ticket_id == ticket_id and e.changes.get("snoozed_until", 0) is None
    ]


@pytest.mark.asyncio
async def test_a_due_snooze_wakes_once_on_two_instances(
    two_hubs: tuple[Hub, Hub, MovedClock, dict[str, list[Any]]],
) -> None:
    a, b, clock, events = two_hubs
    ticket = await open_ticket(a, "snooze-1")
    await a.api("POST", f"/api/v1/tickets/{ticket['id']}/snooze", role="agent", json={"minutes": 10})
    await ticket_when(b, ticket["id"], lambda t: t["snoozed_until"] is not None)
    clock.advance(11 * 60)
    # Both instances' passes at once, besides their schedulers: one wakes it.
    done = await asyncio.gather(a.tickets.check_due(), b.tickets.check_due())
    await ticket_when(a, ticket["id"], lambda t: t["snoozed_until"] is None)
    await asyncio.sleep(0.3)  # more scheduler passes on both
    assert len(woken(events["a"], ticket["id"]) + woken(events["b"], ticket["id"])) == 1, events
    assert sum(done) <= 2  # the wake, and the breach that fell due in the same ten minutes
    timeline = await a.api("GET", f"/api/v1/conversations/{ticket['conversation_id']}/timeline")
    assert sum(m["meta"].get("event") == "sla-breached" for m in timeline["items"]) == 1


@pytest.mark.asyncio
async def test_an_sla_breach_escalates_once_on_two_instances(
    two_hubs: tuple[Hub, Hub, MovedClock, dict[str, list[Any]]],
    slack_api: FakeSlackApi,
) -> None:
    a, b, clock, events = two_hubs
    ticket = await open_ticket(b, "breach-1")
    clock.advance(1.0)  # past the 0.6 s first response target
    await asyncio.gather(a.tickets.check_due(), b.tickets.check_due())
    breached = await ticket_when(a, ticket["id"], lambda t: t["first_response_breached_at"] is not None)
    await asyncio.sleep(0.3)
    assert (await a.api("GET", f"/api/v1/tickets/{ticket['id']}"))["escalations"] == 1
    assert breached["priority"] == "high"
    breaches = [e for e in events["a"] + events["b"] if isinstance(e, SlaBreached) and e.ticket_id == ticket["id"]]
    assert len(breaches) == 1
    notice = f"SLA breached on ticket #{ticket['id']}"
    await wait_for(lambda: any(notice in c.args.get("text", "") for c in slack_api.of("chat.postMessage")))
    await asyncio.sleep(0.3)
    assert sum(notice in c.args.get("text", "") for c in slack_api.of("chat.postMessage")) == 1


@pytest.mark.asyncio
async def test_one_scheduler_runs_and_the_other_takes_over_when_it_stops(
    two_hubs: tuple[Hub, Hub, MovedClock, dict[str, list[Any]]],
) -> None:
    a, b, clock, _ = two_hubs
    holders = {a.tickets.scheduler.lease.holder: a, b.tickets.scheduler.lease.holder: b}
    holder = await wait_for(lambda: a.db.read(holder_of, "sla-scheduler", now=clock.now()))
    leader = holders[holder]
    other = b if leader is a else a
    assert leader.tickets.scheduler.lease.held and not other.tickets.scheduler.lease.held
    # The leader dies without a word: its scheduler stops, its lease stays until it expires.
    leader.tickets.scheduler.lease = None  # so stopping it cannot release
    await leader.tickets.scheduler.stop()
    ticket = await open_ticket(other, "takeover-1")
    clock.advance(1.0)  # the breach is due, but the lease (5 s) is still the dead leader's
    await asyncio.sleep(0.5)
    assert (await other.api("GET", f"/api/v1/tickets/{ticket['id']}"))["first_response_breached_at"] is None
    clock.advance(5.0)  # the lease has passed
    await ticket_when(other, ticket["id"], lambda t: t["first_response_breached_at"] is not None)
    assert other.tickets.scheduler.lease.held
    assert await other.db.read(holder_of, "sla-scheduler", now=clock.now()) == other.tickets.scheduler.lease.holder


@pytest.mark.asyncio
async def test_each_periodic_sweep_has_one_instance(
    two_hubs: tuple[Hub, Hub, MovedClock, dict[str, list[Any]]],
) -> None:
    """The attachment sweep, the Slack event-id clean-up, the automation
    silence sweep and the search log's retention: each on one of the two."""
    a, b, clock, _ = two_hubs
    holders = {hub.service.leases.holder for hub in (a, b) if hub.service.leases is not None}
    assert len(holders) == 2
    names = ("attachment-sweep", "slack-event-ids", "automation-silence-sweep", "kb-search-log-retention")
    for name in names:
        holder = await wait_for(lambda name=name: a.db.read(holder_of, name, now=clock.now()))
        assert holder in holders, name
