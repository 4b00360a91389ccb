"""SLA warnings before the breach (issue #17), over every storage backend.

At ``HUB_SLA_WARN_AT`` of a first-response or resolution window (counted
as the SLA is: business hours, pauses excluded) the hub records one warning
per ticket, target and deadline and the Slack desk tells the assignee (a
DM) or the team's channel. The clock is moved (``MovedClock``), never slept
on; every assertion about "nothing yet" follows a scheduler pass run by the
test itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub import keys
from hub.events import SlaWarning
from hub.storage.schema import sla_warnings, slack_jobs
from tests.channels.test_slack import AGENT_SLACK, make_agent, slack_api, slack_settings  # noqa: F401 - a fixture
from tests.conftest import Hub, close_hub, start_hub, wait_for
from tests.fakes.slack_api import FakeSlackApi
from tests.hub.test_sla import MovedClock, open_ticket

MINUTE = 60.0


async def warnings_of(hub: Hub, ticket_id: int) -> list[tuple[str, datetime]]:
    def read(conn: sa.Connection) -> list[tuple[str, datetime]]:
        found = conn.execute(
            sa.select(sla_warnings.c.target, sla_warnings.c.due_at)
            .where(sla_warnings.c.ticket_id == ticket_id)
            .order_by(sla_warnings.c.id)
        )
        return [(r.target, r.due_at) for r in found]

    return await hub.db.read(read)


def notices(api: FakeSlackApi, ticket_id: int) -> list[Any]:
    return [
        c
        for c in api.of("chat.postMessage")
        if ":hourglass_flowing_sand:" in c.args.get("text", "") and f"#{ticket_id} " in c.args.get("text", "")
    ]


async def start(database_url: str, tmp_path: Path, api: FakeSlackApi, clock: MovedClock, **overrides: Any) -> Hub:
    values: dict[str, Any] = {"sla_policies": "normal=10/100,low=20/200", "sla_breach_bump_priority": False}
    values.update(overrides)
    return await start_hub(slack_settings(database_url, tmp_path, api, **values), clock=clock)


@pytest.mark.asyncio
async def test_warned_at_the_share_and_not_before_to_the_team_channel(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    clock = MovedClock()
    hub = await start(database_url, tmp_path, slack_api, clock)
    try:
        ticket = await open_ticket(hub, "warn-1")  # nobody on duty: unassigned
        assert ticket["assignee_id"] is None
        clock.advance(8 * MINUTE - 1)  # 79.8 % of the 10-minute first response
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == []
        clock.advance(2)  # 80.2 %
        await hub.tickets.check_due()
        due = datetime.fromisoformat(ticket["first_response_due"])
        assert await warnings_of(hub, ticket["id"]) == [("first_response", due)]
        await wait_for(lambda: notices(slack_api, ticket["id"]))
        [notice] = notices(slack_api, ticket["id"])
        assert notice.args["channel"] == "CSUPPORT"  # the team's channel: nobody has it
        text = notice.args["text"]
        assert "Unassigned ticket" in text and "first response" in text and "80%" in text
        assert f"<!date^{int(due.timestamp())}^" in text
        card = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
        assert f"/archives/{card['slack_channel']}/p{card['slack_ts'].replace('.', '')}|Open the ticket>" in text
        for _ in range(3):  # more passes, the scheduler's own among them
            await hub.tickets.check_due()
        await asyncio.sleep(0.3)
        assert len(notices(slack_api, ticket["id"])) == 1
        # The breach still escalates as before, and the breached target is never warned again.
        clock.advance(2 * MINUTE)
        await hub.tickets.check_due()
        breached = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
        assert breached["first_response_breached_at"] is not None and breached["escalations"] == 1
        assert await warnings_of(hub, ticket["id"]) == [("first_response", due)]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_assigned_ticket_warns_its_agent_by_dm(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    clock = MovedClock()
    hub = await start(database_url, tmp_path, slack_api, clock)
    try:
        agent_id = await make_agent(hub)
        ticket = await open_ticket(hub, "warn-2")
        assert ticket["assignee_id"] == agent_id
        clock.advance(8 * MINUTE + 1)
        await hub.tickets.check_due()
        await wait_for(lambda: notices(slack_api, ticket["id"]))
        [notice] = notices(slack_api, ticket["id"])
        assert notice.args["channel"] == AGENT_SLACK  # a DM to the agent's Slack user
        assert notice.args["text"].startswith(":hourglass_flowing_sand: Your ticket")
        assert not any(c.args.get("channel") == "CSUPPORT" for c in notices(slack_api, ticket["id"]))
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_resolved_or_already_breached_tickets_get_no_warning(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    clock = MovedClock()
    hub = await start(database_url, tmp_path, slack_api, clock)
    try:
        resolved = await open_ticket(hub, "warn-3")
        await hub.api("POST", f"/api/v1/tickets/{resolved['id']}/resolve", role="agent")
        late = await open_ticket(hub, "warn-4")
        # Both moments pass between two passes (a hub that was down): a breach, no warning.
        clock.advance(11 * MINUTE)
        await hub.tickets.check_due()
        assert (await hub.api("GET", f"/api/v1/tickets/{late['id']}"))["first_response_breached_at"] is not None
        assert await warnings_of(hub, resolved["id"]) == []
        assert await warnings_of(hub, late["id"]) == []
        await asyncio.sleep(0.3)
        assert notices(slack_api, resolved["id"]) == [] and notices(slack_api, late["id"]) == []
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_paused_sla_is_not_counted(database_url: str, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    clock = MovedClock()
    hub = await start(database_url, tmp_path, slack_api, clock)
    try:
        ticket = await open_ticket(hub, "warn-5")
        clock.advance(5 * MINUTE)
        await hub.api(
            "PATCH", f"/api/v1/conversations/{ticket['conversation_id']}", role="agent", json={"status": "pending"}
        )
        clock.advance(10 * MINUTE)  # waiting on the customer: the clock stands
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == []
        await hub.inbound({"from": "warn-5", "text": "here you go", "id": "warn-5-info"})  # resumes the clock
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == []  # 5 of 10 minutes used
        clock.advance(3 * MINUTE - 1)  # 7:59 used
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == []
        clock.advance(2)  # 8:01 used
        await hub.tickets.check_due()
        moved = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
        assert await warnings_of(hub, ticket["id"]) == [
            ("first_response", datetime.fromisoformat(moved["first_response_due"]))
        ]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_business_hours_count_as_the_sla_does(database_url: str, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    clock = MovedClock()
    clock.at = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # a Friday, one hour before closing
    hub = await start(
        database_url,
        tmp_path,
        slack_api,
        clock,
        sla_policies="normal=120/2400",
        sla_business_hours="mon-fri 09:00-17:00",
        sla_timezone="UTC",
    )
    try:
        ticket = await open_ticket(hub, "warn-6")
        # 120 business minutes: 60 on Friday, 60 on Monday; 80 % (96) falls on Monday at 09:36.
        assert datetime.fromisoformat(ticket["first_response_due"]) == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
        clock.at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # Saturday: far more than 96 wall-clock minutes
        await hub.tickets.check_due()
        clock.at = datetime(2026, 12, 7, 9, 35, tzinfo=UTC)
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == []
        clock.at = datetime(2026, 12, 7, 9, 36, 30, tzinfo=UTC)
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == [("first_response", datetime(2026, 12, 7, 10, 0, tzinfo=UTC))]
        await wait_for(lambda: notices(slack_api, ticket["id"]))
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_a_deadline_moved_by_a_priority_change_is_warned_again(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    clock = MovedClock()
    hub = await start(database_url, tmp_path, slack_api, clock)
    try:
        ticket = await open_ticket(hub, "warn-7")
        clock.advance(8 * MINUTE + 1)
        await hub.tickets.check_due()
        first_due = datetime.fromisoformat(ticket["first_response_due"])
        assert await warnings_of(hub, ticket["id"]) == [("first_response", first_due)]
        # Lowered to low: 20 minutes to the first response, warned at 16.
        moved = await hub.api(
            "POST", f"/api/v1/tickets/{ticket['id']}/priority", role="agent", json={"priority": "low"}
        )
        new_due = datetime.fromisoformat(moved["first_response_due"])
        assert new_due > first_due
        await hub.tickets.check_due()
        assert len(await warnings_of(hub, ticket["id"])) == 1
        clock.advance(8 * MINUTE)  # 16:01 used
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == [("first_response", first_due), ("first_response", new_due)]
        await wait_for(lambda: len(notices(slack_api, ticket["id"])) == 2)
        assert "(low)" in notices(slack_api, ticket["id"])[-1].args["text"]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_warn_at_zero_disables_warnings_and_a_later_start_catches_up(
    database_url: str, tmp_path: Path, slack_api: FakeSlackApi
) -> None:
    clock = MovedClock()
    hub = await start(database_url, tmp_path, slack_api, clock, sla_warn_at=0)
    try:
        ticket = await open_ticket(hub, "warn-8")
        clock.advance(7 * MINUTE)
        await hub.tickets.check_due()
        assert await warnings_of(hub, ticket["id"]) == []
    finally:
        await close_hub(hub)
    # Turned on later: the next start gives open tickets their warning moments.
    again = await start(database_url, tmp_path, slack_api, clock)
    try:
        await again.tickets.check_due()
        assert await warnings_of(again, ticket["id"]) == []  # 7 of 10 minutes used
        clock.advance(MINUTE + 1)
        await again.tickets.check_due()
        assert [target for target, _ in await warnings_of(again, ticket["id"])] == ["first_response"]
    finally:
        await close_hub(again)


def test_warn_at_is_validated(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from tests.conftest import make_settings

    for wrong in (-0.1, 1.5):
        with pytest.raises(ValidationError, match="sla_warn_at"):
            make_settings("sqlite+aiosqlite:///x.db", tmp_path, sla_warn_at=wrong)


@pytest.mark.asyncio
async def test_two_schedulers_warn_once(database_url: str, tmp_path: Path, slack_api: FakeSlackApi) -> None:
    clock = MovedClock()
    first = await start(database_url, tmp_path, slack_api, clock)
    second = await start(database_url, tmp_path, slack_api, clock)
    seen: list[SlaWarning] = []

    async def count(event: SlaWarning) -> None:
        seen.append(event)

    for running in (first, second):
        running.app[keys.BUS].subscribe(SlaWarning, count)
    try:
        tickets = [await open_ticket(first, f"warn-9-{n}") for n in range(3)]
        clock.advance(8 * MINUTE + 1)
        # Both instances' passes at once, several times over, beside their own schedulers.
        for _ in range(3):
            await asyncio.gather(*(h.tickets.check_due() for h in (first, second, first, second)))
        for ticket in tickets:
            assert len(await warnings_of(first, ticket["id"])) == 1
            await wait_for(lambda t=ticket: notices(slack_api, t["id"]))
        await asyncio.sleep(0.3)
        assert sorted(e.ticket_id for e in seen) == sorted(t["id"] for t in tickets)  # one event each
        for ticket in tickets:
            assert len(notices(slack_api, ticket["id"])) == 1

        def notify_jobs(conn: sa.Connection) -> int:
            return conn.execute(
                sa.select(sa.func.count()).select_from(slack_jobs).where(slack_jobs.c.dedup_key.like("sla-warning:%"))
            ).scalar_one()

        assert await first.db.read(notify_jobs) == len(tickets)
    finally:
        await close_hub(second)
        await close_hub(first)
