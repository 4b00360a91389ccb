"""SLA timers over every storage backend: breach escalation, pause while pending,
first response, and timers that survive a restart.

The hub reads the time from a clock the tests move (``MovedClock``): a
deadline passes when a test says so, not after a real sleep. The SLA
scheduler still runs on its own loop, so tests wait for its passes."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub import keys
from hub.events import Clock, utcnow
from tests.channels.test_slack import slack_api, slack_settings  # noqa: F401 - slack_api is a fixture
from tests.conftest import Hub, make_settings, start_hub, wait_for
from tests.fakes.slack_api import FakeSlackApi


class MovedClock(Clock):
    """Stands still until ``advance`` moves it."""

    def __init__(self) -> None:
        self.at = utcnow()

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


async def open_ticket(hub: Hub, sender: str, priority: str = "normal") -> dict:
    received = await hub.inbound({"from": sender, "text": "help!", "id": f"{sender}-{time.time_ns()}"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return await hub.api(
        "POST",
        f"/api/v1/conversations/{message['conversation_id']}/handoff",
        role="agent",
        json={"priority": priority},
        expect=201,
    )


async def ticket_when(hub: Hub, ticket_id: int, check: Any, timeout: float = 5.0) -> dict:
    async def probe() -> dict | None:
        ticket = await hub.api("GET", f"/api/v1/tickets/{ticket_id}")
        return ticket if check(ticket) else None

    return await wait_for(probe, timeout=timeout)


@pytest.mark.asyncio
async def test_breach_escalates_notifies_team_and_bumps_priority(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    # normal: first response within 0.6 s, resolution within 60 s.
    settings = slack_settings(database_url, tmp_path, slack_api, sla_policies="normal=0.01/1,high=0.01/1")
    clock = MovedClock()
    hub = await start_hub(settings, clock=clock)
    try:
        ticket = await open_ticket(hub, "sla-1")
        clock.advance(1.0)  # past the first response target
        breached = await ticket_when(hub, ticket["id"], lambda t: t["first_response_breached_at"] is not None)
        assert breached["priority"] == "high" and breached["escalations"] == 1
        conversation = await hub.api("GET", f"/api/v1/conversations/{ticket['conversation_id']}")
        assert conversation["priority"] == "high"
        page = await hub.api("GET", f"/api/v1/conversations/{ticket['conversation_id']}/timeline")
        assert any(m["meta"].get("event") == "sla-breached" for m in page["items"])
        await wait_for(
            lambda: any(
                f"SLA breached on ticket #{ticket['id']}" in c.args.get("text", "") and c.args["channel"] == "CSUPPORT"
                for c in slack_api.of("chat.postMessage")
            )
        )
        await wait_for(lambda: any("breached" in str(c.args.get("blocks")) for c in slack_api.of("chat.update")))
        await asyncio.sleep(0.3)  # several more scheduler passes
        assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["escalations"] == 1  # escalated once
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_breach_can_reassign(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        sla_policies="normal=0.01/60",
        sla_check_interval=0.05,
        sla_breach_reassign=True,
        sla_breach_bump_priority=False,
    )
    clock = MovedClock()
    hub = await start_hub(settings, clock=clock)
    try:
        agent = await hub.api("GET", "/api/v1/me", role="agent")
        admin = await hub.api("GET", "/api/v1/me")
        await hub.api("POST", f"/api/v1/agents/{agent['id']}/duty", json={"on_duty": True})
        ticket = await open_ticket(hub, "sla-r")
        assert ticket["assignee_id"] == agent["id"]
        await hub.api("POST", f"/api/v1/agents/{admin['id']}/duty", json={"on_duty": True})
        clock.advance(1.0)  # past the first response target
        moved = await ticket_when(hub, ticket["id"], lambda t: t["first_response_breached_at"] is not None)
        assert moved["assignee_id"] == admin["id"] and moved["priority"] == "normal"
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_first_agent_reply_stops_the_first_response_clock(database_url: str, tmp_path: Path) -> None:
    clock = MovedClock()
    hub = await start_hub(
        make_settings(database_url, tmp_path, sla_policies="normal=0.02/60", sla_check_interval=0.05), clock=clock
    )
    try:
        ticket = await open_ticket(hub, "sla-2")
        await hub.api(
            "POST",
            f"/api/v1/conversations/{ticket['conversation_id']}/messages",
            role="agent",
            json={"text": "On it!"},
            expect=201,
        )
        answered = await ticket_when(hub, ticket["id"], lambda t: t["first_response_at"] is not None)
        clock.advance(1.6)  # past the 1.2 s target
        await hub.app[keys.TICKETS].check_due()  # a scheduler pass after the deadline
        assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["first_response_breached_at"] is None
        assert answered["first_response_at"] >= ticket["created_at"]
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_clock_pauses_while_waiting_on_the_customer(database_url: str, tmp_path: Path) -> None:
    clock = MovedClock()
    hub = await start_hub(
        make_settings(database_url, tmp_path, sla_policies="normal=0.02/60", sla_check_interval=0.05), clock=clock
    )
    try:
        ticket = await open_ticket(hub, "sla-3")
        await hub.api(
            "PATCH", f"/api/v1/conversations/{ticket['conversation_id']}", role="agent", json={"status": "pending"}
        )
        await ticket_when(hub, ticket["id"], lambda t: t["sla_paused_at"] is not None)
        clock.advance(1.5)  # past the 1.2 s target, but paused
        await hub.app[keys.TICKETS].check_due()  # a scheduler pass after the deadline
        assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["first_response_breached_at"] is None
        await hub.inbound({"from": "sla-3", "text": "here is the info", "id": "sla-3-info"})
        resumed = await ticket_when(hub, ticket["id"], lambda t: t["sla_paused_at"] is None)
        assert resumed["first_response_due"] > ticket["first_response_due"]
        clock.advance(2.0)  # past the moved target
        await ticket_when(hub, ticket["id"], lambda t: t["first_response_breached_at"] is not None)
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_sla_timers_survive_a_restart(database_url: str, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    settings = slack_settings(database_url, tmp_path, slack_api, sla_policies="normal=0.02/60")
    clock = MovedClock()
    first = await start_hub(settings, clock=clock)
    try:
        ticket = await open_ticket(first, "sla-4")
        assert ticket["first_response_breached_at"] is None
    finally:
        await first.client.close()  # the hub stops before the 1.2 s deadline
    clock.advance(1.5)  # the deadline passes while nothing runs
    assert not any("SLA breached" in c.args.get("text", "") for c in slack_api.of("chat.postMessage"))

    second = await start_hub(settings, clock=clock)  # same database, a new process in effect
    try:
        breached = await ticket_when(second, ticket["id"], lambda t: t["first_response_breached_at"] is not None)
        assert breached["escalations"] == 1 and breached["priority"] == "high"
        await wait_for(
            lambda: any(
                f"SLA breached on ticket #{ticket['id']}" in c.args.get("text", "")
                for c in slack_api.of("chat.postMessage")
            )
        )
    finally:
        await second.client.close()
