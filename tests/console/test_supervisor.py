"""The supervisor's view: agents' load, the queue by team and priority, tickets near or past SLA, reassigning."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub import keys
from hub.storage.schema import audit_log, tickets
from tests.browser.conftest import artifacts, browser  # noqa: F401  (fixtures)
from tests.console.conftest import ConsoleHub, email_of
from tests.console.helpers import playwright_cookies, signed_in_cookies

pytestmark = pytest.mark.asyncio


async def queued_ticket(hub: ConsoleHub, sender: str, text: str, **handoff: Any) -> dict[str, Any]:
    """A customer's conversation handed to people: with nobody on duty, its ticket waits in the queue."""
    received = await hub.hub.inbound({"from": sender, "text": text, "id": f"{sender}-{time.time_ns()}"})
    message = await hub.hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return await hub.hub.api(
        "POST",
        f"/api/v1/conversations/{message['conversation_id']}/handoff",
        role="agent",
        json=handoff,
        expect=201,
    )


async def new_agent(hub: ConsoleHub, name: str, *, capacity: int, on_duty: bool, team: str = "support") -> int:
    user = await hub.hub.api(
        "POST",
        "/api/v1/users",
        json={"name": name, "email": f"{name.lower()}@example.test", "role": "agent"},
        expect=201,
    )
    await hub.hub.api("PATCH", f"/api/v1/agents/{user['id']}", json={"capacity": capacity, "team": team})
    await hub.hub.api("POST", f"/api/v1/agents/{user['id']}/duty", json={"on_duty": on_duty})
    return int(user["id"])


async def overdue(hub: ConsoleHub, ticket_id: int, minutes: float) -> None:
    """Move a ticket's first-response deadline ``minutes`` into the past (or the future when negative)."""
    due = hub.app[keys.CLOCK].now() - timedelta(minutes=minutes)
    await hub.db.write(
        lambda conn: conn.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(first_response_due=due))
    )


async def signed_in_page(browser: Any, hub: ConsoleHub) -> tuple[Any, Any, list[str]]:
    """A desktop-sized page signed in as an agent, and the page's errors (script errors, console errors)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_cookies(playwright_cookies(await signed_in_cookies(hub.app, email_of("agent")), hub.base_url))
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return context, page, errors


def page_token(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def as_user(hub: ConsoleHub, role: str) -> None:
    hub.client.session.cookie_jar.clear()
    hub.client.session.cookie_jar.update_cookies(await signed_in_cookies(hub.app, email_of(role)))


async def test_the_board_shows_load_queue_and_tickets_near_or_past_sla(console_hub: ConsoleHub) -> None:
    hub = console_hub
    await new_agent(hub, "Ann", capacity=4, on_duty=False, team="billing")
    urgent = await queued_ticket(hub, "sup-1", "Someone took money from my card", priority="urgent", team="billing")
    normal = await queued_ticket(hub, "sup-2", "How do I change my plan?", priority="normal")
    calm = await queued_ticket(hub, "sup-3", "Question about invoices", priority="low")
    await overdue(hub, urgent["id"], 5)  # breached
    policy = hub.app[keys.TICKETS].slas
    # Normal: 10 % of its first-response target left -> close (amber).
    target = policy[next(p for p in policy if p.value == "normal")].first_response
    await overdue(hub, normal["id"], -(target.total_seconds() * 0.1) / 60)

    await as_user(hub, "viewer")
    response = await hub.client.get("/console/supervisor")
    assert response.status == 200
    html = await response.text()
    assert "Ann" in html and "billing · off duty" in html and "0/4" in html
    # The queue: three unassigned, the urgent one first; the team x priority matrix counts them.
    queue = html[html.index('id="queue-title"') : html.index('id="risk-title"')]
    order = [int(i) for i in re.findall(r'data-ticket-id="(\d+)"', queue)]
    assert order == [urgent["id"], normal["id"], calm["id"]]
    assert "3 unassigned · 3 open" in queue
    assert re.search(r'<th scope="row">billing</th><td class="hot">1</td>', queue)
    # Near or past SLA: the breached one first, then the amber one; the low one is fine.
    risk = html[html.index('id="risk-title"') :]
    assert [int(i) for i in re.findall(r'data-ticket-id="(\d+)"', risk)] == [urgent["id"], normal["id"]]
    assert "sla-breached" in risk and "Breached 5 min ago" in risk and "sla-close" in risk
    # A viewer reads, and has nothing to press.
    assert "assign-form" not in html and 'draggable="true"' not in html and "data-drop-target" not in html

    # The fragment the page refreshes itself with is the board alone.
    fragment = await (await hub.client.get("/console/supervisor?fragment=board")).text()
    assert "<html" not in fragment and f'data-ticket-id="{urgent["id"]}"' in fragment


async def test_reassigning_from_the_board_goes_through_the_ticket_service(console_hub: ConsoleHub) -> None:
    hub = console_hub
    ann = await new_agent(hub, "Ann", capacity=4, on_duty=False)
    ticket = await queued_ticket(hub, "sup-4", "My order never arrived", priority="high")

    await as_user(hub, "agent")
    html = await (await hub.client.get("/console/supervisor")).text()
    assert f'action="/console/supervisor/tickets/{ticket["id"]}/assign"' in html
    token = page_token(html)
    path = f"/console/supervisor/tickets/{ticket['id']}/assign"

    # Without the CSRF token: refused, nothing changes.
    refused = await hub.client.post(path, data={"assignee": str(ann)}, allow_redirects=False)
    assert refused.status == 403
    assert (await hub.hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["assignee_id"] is None

    done = await hub.client.post(path, data={"assignee": str(ann), "csrf_token": token}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/console/supervisor"
    assert (await hub.hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["assignee_id"] == ann
    agent = await hub.hub.api("GET", f"/api/v1/agents/{ann}")
    assert agent["open_tickets"] == 1
    board = await (await hub.client.get("/console/supervisor")).text()
    assert "1/4" in board and "The queue is empty." in board

    # Back to the queue, by script (JSON answer); the load moves back.
    back = await hub.client.post(
        path, data={"assignee": ""}, headers={"X-CSRF-Token": token, "Accept": "application/json"}
    )
    assert back.status == 200 and (await back.json()) == {"id": ticket["id"], "assignee_id": None}
    assert (await hub.hub.api("GET", f"/api/v1/agents/{ann}"))["open_tickets"] == 0

    # A viewer's write is refused even with a valid token of their own.
    await as_user(hub, "viewer")
    viewer_token = page_token(await (await hub.client.get("/console/supervisor")).text())
    forbidden = await hub.client.post(
        path, data={"assignee": str(ann), "csrf_token": viewer_token}, allow_redirects=False
    )
    assert forbidden.status == 403
    assert (await hub.hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["assignee_id"] is None

    # A nonsense assignee is a 400 naming it.
    await as_user(hub, "agent")
    token = page_token(await (await hub.client.get("/console/supervisor")).text())
    bad = await hub.client.post(
        path, data={"assignee": "x1", "csrf_token": token}, headers={"Accept": "application/json"}
    )
    assert bad.status == 400 and "assignee" in (await bad.json())["error"]["message"]

    entries = await hub.db.read(
        lambda conn: [
            (r.action, r.via, r.details.get("assignee_id"))
            for r in conn.execute(
                sa.select(audit_log).where(audit_log.c.action == "ticket.assign").order_by(audit_log.c.id)
            )
        ]
    )
    assert entries == [("ticket.assign", "console", ann), ("ticket.assign", "console", None)]


async def test_drag_a_ticket_onto_an_agent_and_assign_by_keyboard(
    browser: Any, console_hub: ConsoleHub, artifacts: Path
) -> None:
    hub = console_hub
    ann = await new_agent(hub, "Ann", capacity=3, on_duty=False)
    bob = await new_agent(hub, "Bob", capacity=3, on_duty=False)
    first = await queued_ticket(hub, "sup-5", "The app crashes at login", priority="high")
    second = await queued_ticket(hub, "sup-6", "Where is my refund?", priority="normal")

    context, page, errors = await signed_in_page(browser, hub)
    await page.goto(f"{hub.base_url}/console/supervisor")
    await page.screenshot(path=str(artifacts / "console-supervisor-desktop.png"), full_page=True)

    # Drag the first ticket of the queue onto Ann.
    source = page.locator(f'#queue-title ~ ul [data-ticket-id="{first["id"]}"]')
    await source.drag_to(page.locator(f'[data-agent-id="{ann}"]'), source_position={"x": 4, "y": 4})
    await page.locator(f'[data-agent-id="{ann}"] .agent-count', has_text="1/3").wait_for(timeout=15000)
    assert (await hub.hub.api("GET", f"/api/v1/tickets/{first['id']}"))["assignee_id"] == ann

    # Keyboard: j to the remaining queued ticket, a to its assign list, choose Bob, Enter. The drag's
    # own change comes back server-sent meanwhile: the board's refresh must not reset the choice.
    await page.locator("body").click(position={"x": 5, "y": 5})
    await page.keyboard.press("j")
    focused = await page.evaluate("document.activeElement.closest('[data-ticket-id]')?.dataset.ticketId")
    await page.keyboard.press("a")
    on_list = await page.evaluate("document.activeElement.matches('[data-assign-select]')")
    await page.keyboard.type("Bob")  # a focused list selects by typing
    chosen = await page.evaluate("document.activeElement.value")
    assert (focused, on_list, chosen) == (str(second["id"]), True, str(bob))
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await page.locator(f'[data-agent-id="{bob}"] .agent-count', has_text="1/3").wait_for(timeout=15000)
    assert (await hub.hub.api("GET", f"/api/v1/tickets/{second['id']}"))["assignee_id"] == bob

    # A change made elsewhere (the API, as Slack would) reaches the open board by itself.
    await hub.hub.api("POST", f"/api/v1/tickets/{second['id']}/assign", role="agent", json={"assignee_id": None})
    await page.locator(f'[data-agent-id="{bob}"] .agent-count', has_text="0/3").wait_for(timeout=15000)

    await page.set_viewport_size({"width": 375, "height": 740})
    await page.screenshot(path=str(artifacts / "console-supervisor-phone.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the board scrolls sideways on a phone ({width} px)"
    assert errors == []
    await context.close()


async def test_a_live_refresh_keeps_a_choice_not_yet_sent(browser: Any, console_hub: ConsoleHub) -> None:
    """A ticket changed elsewhere while a supervisor picks an agent in a list, before pressing
    Assign: a refresh whose fragment was already loading when the list took the focus is not
    swapped in under the choice, and the board catches up once the focus leaves the list."""
    from playwright.async_api import expect

    hub = console_hub
    await new_agent(hub, "Ann", capacity=3, on_duty=False)
    bob = await new_agent(hub, "Bob", capacity=3, on_duty=False)
    ticket = await queued_ticket(hub, "sup-7", "The app crashes at login", priority="high")
    other = await queued_ticket(hub, "sup-8", "Where is my refund?", priority="normal")

    context, page, errors = await signed_in_page(browser, hub)
    async with page.expect_response(lambda response: "/console/events" in response.url):  # the board follows
        await page.goto(f"{hub.base_url}/console/supervisor")

    # The board's fragments are held in flight until the choice is made.
    loading, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Any) -> None:
        loading.set()
        await release.wait()
        await route.continue_()

    await page.route("**/console/supervisor?fragment=board*", hold)
    # Another ticket is assigned elsewhere (as Slack would): the stream says so, the board refreshes.
    await hub.hub.api("POST", f"/api/v1/tickets/{other['id']}/assign", role="agent", json={"assignee_id": bob})
    await asyncio.wait_for(loading.wait(), 15)

    select = page.locator(f'#queue-title ~ ul [data-ticket-id="{ticket["id"]}"] [data-assign-select]')
    await select.focus()
    await page.keyboard.type("Bob")
    assert await select.input_value() == str(bob)
    release.set()
    await expect(page.locator("#board")).to_have_attribute("aria-busy", "false", timeout=15000)
    assert await select.input_value() == str(bob)  # the same list, the choice kept
    assert await page.evaluate("document.activeElement.matches('[data-assign-select]')")
    assert await page.locator(f'[data-agent-id="{bob}"] .agent-count').inner_text() == "0/3"  # not swapped in

    # Focus leaves the list without sending: the board catches up, and nothing was assigned by it.
    await page.locator("body").click(position={"x": 5, "y": 5})
    await page.locator(f'[data-agent-id="{bob}"] .agent-count', has_text="1/3").wait_for(timeout=15000)
    assert (await hub.hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["assignee_id"] is None
    assert errors == []
    await context.close()
