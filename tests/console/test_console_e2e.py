"""The console end to end, in headless chromium against a real hub on a real
port with the web chat: agents sign in and work a visitor's chat while the
visitor's widget (another browser context) shows what reaches it; two agents
see each other's claim at once; a viewer can read but not write; customer
markup stays text; axe-core finds no serious or critical violation on the
inbox and conversation pages; screenshots at desktop and phone size."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub import segments
from tests.browser.conftest import artifacts, browser  # noqa: F401  (fixtures, used by name)
from tests.browser.test_widget import bubbles, open_demo, watch
from tests.channels.test_slack import AGENT_SLACK, send_signed, thread_event
from tests.channels.test_webchat_support import IDENTITY_SECRET, SECRET
from tests.conftest import wait_for
from tests.console.conftest import ConsoleHub, StartConsoleHub, email_of
from tests.console.helpers import AXE, axe_violations, playwright_cookies, sign_in_page, signed_in_cookies
from tests.console.test_conversation import card_of, customer_writes, slack_overrides
from tests.fakes.slack_api import FakeSlackApi, block_action_body

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

TIMEOUT = 10_000  # ms, for Playwright expectations
# ms: how long another console may take to show a change here. The issue asks
# for "within a second"; that is measured by bench/console.py (event to screen,
# p99 10.7 ms), while this bound only keeps a loaded CI machine from flaking.
LIVE = 5_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


async def start(start_console_hub: StartConsoleHub) -> ConsoleHub:
    return await start_console_hub(
        channels="webchat,fake",
        webchat_secrets=SECRET,
        webchat_identity_secret=IDENTITY_SECRET,
        webchat_title="Northwind support",
    )


async def console_context(browser: Any, ch: ConsoleHub, role: str, *, viewport: dict[str, int] = DESKTOP) -> Any:
    """A browser context signed in as ``role`` (a real session; the sign-in
    form itself is driven in the first test)."""
    context = await browser.new_context(viewport=viewport, bypass_csp=False)
    await context.add_cookies(playwright_cookies(await signed_in_cookies(ch.app, email_of(role)), ch.base_url))
    return context


async def ready(page: Any) -> None:
    """The conversation page's script has attached its behaviour (shortcuts, live updates)."""
    await page.locator('#conv[data-ready="true"]').wait_for(timeout=TIMEOUT)


async def open_conversation(page: Any, url: str) -> None:
    await page.goto(url)
    await ready(page)


async def visitor_writes(browser: Any, ch: ConsoleHub, text: str) -> tuple[Any, Any]:
    """A visitor on the demo shop page writes in the chat widget; returns (context, page)."""
    context = await browser.new_context(viewport={"width": 1000, "height": 800}, bypass_csp=True)
    page = await context.new_page()
    await open_demo(page, ch.hub)
    await page.get_by_role("button", name="Open chat").click()
    message = page.get_by_role("textbox", name="Message")
    await message.fill(text)
    await message.press("Enter")
    await page.wait_for_function("window.ServicehubWidget.isConnected()")
    return context, page


async def the_conversation(ch: ConsoleHub) -> int:
    async def found() -> int | None:
        items = (await ch.hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"]
        return items[0]["id"] if items else None

    return int(await wait_for(found))


async def test_an_agent_answers_a_visitor_live_and_notes_never_reach_them(
    browser: Any, start_console_hub: StartConsoleHub, artifacts: Path
) -> None:
    from playwright.async_api import expect

    ch = await start(start_console_hub)
    # The agent signs in with the real form and waits in the inbox.
    agent_context = await browser.new_context(viewport=DESKTOP)
    agent = await agent_context.new_page()
    errors = watch(agent)
    await sign_in_page(agent, ch.base_url, email_of("agent"), ch.passwords["agent"])
    # A new chat the bot has is in "All open" (an agent opens on "Mine").
    await agent.get_by_role("link", name="All open").click()
    await agent.wait_for_url("**/console?view=open*")

    visitor_context, visitor = await visitor_writes(browser, ch, "Hello, my order #1234 has not arrived")
    conversation_id = await the_conversation(ch)
    link = agent.locator(f'a[href="/console/conversations/{conversation_id}"]')
    # The conversation appears in the open inbox without a reload.
    await expect(link.first).to_be_visible(timeout=TIMEOUT)
    await link.first.click()
    await ready(agent)
    await expect(agent.locator(".entry--customer", has_text="my order #1234")).to_be_visible(timeout=TIMEOUT)

    # Claim with the keyboard: the conversation is the agent's.
    await agent.locator("body").press("c")
    await expect(agent.locator("#assignee")).to_have_text("Agent User", timeout=TIMEOUT)
    conversation = await ch.hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    me = await ch.hub.api("GET", "/api/v1/me", role="agent")
    assert conversation["assignee_id"] == me["id"] and conversation["handler"] == "human"

    # As the agent types, the visitor sees the typing indicator; the reply reaches the widget.
    await agent.locator("body").press("r")
    reply_box = agent.get_by_role("textbox", name="Reply to")
    await expect(reply_box).to_be_focused()
    await reply_box.press_sequentially("Sorry about that! ", delay=20)
    await expect(visitor.locator(".log .typing")).to_be_visible(timeout=TIMEOUT)
    await reply_box.press_sequentially("It ships today.", delay=5)
    await expect(agent.locator("#reply-limits")).to_contain_text("characters left")
    await agent.get_by_role("button", name="Send reply").click()
    await expect(bubbles(visitor, "Sorry about that! It ships today.")).to_have_count(1, timeout=TIMEOUT)
    await expect(agent.locator(".entry--team", has_text="It ships today.")).to_have_count(1, timeout=TIMEOUT)
    # Its delivery state follows without a reload: the widget has it.
    await expect(agent.locator(".entry--team", has_text="It ships today.").locator(".delivery")).to_have_text(
        "delivered", timeout=TIMEOUT
    )
    await expect(visitor.locator(".log .typing")).to_be_hidden(timeout=TIMEOUT)

    # A note stays with the agents: the widget never shows it, the timeline does.
    await agent.locator("body").click(position={"x": 5, "y": 5})
    await agent.keyboard.press("n")
    await agent.get_by_role("textbox", name="Internal note").fill("Customer is upset, offer a voucher")
    await agent.get_by_role("button", name="Add note").click()
    await expect(agent.locator(".entry--note", has_text="offer a voucher")).to_be_visible(timeout=TIMEOUT)
    # The visitor's next message and its reply prove the socket is live; the note is still not there.
    await visitor.get_by_role("textbox", name="Message").fill("Thanks!")
    await visitor.get_by_role("textbox", name="Message").press("Enter")
    await expect(agent.locator(".entry--customer", has_text="Thanks!")).to_be_visible(timeout=TIMEOUT)
    await visitor.reload()
    await visitor.wait_for_function("window.ServicehubWidget && window.ServicehubWidget._loaded")
    await visitor.evaluate("window.ServicehubWidget.open()")
    await expect(bubbles(visitor, "It ships today.")).to_have_count(1, timeout=TIMEOUT)
    assert await visitor.locator(".log", has_text="voucher").count() == 0
    assert "voucher" not in await visitor.content()

    # Screenshots of the conversation page, desktop and phone.
    await agent.wait_for_timeout(200)
    await agent.screenshot(path=str(artifacts / "console-conversation-desktop.png"), full_page=True)
    await agent.set_viewport_size(PHONE)
    await agent.wait_for_timeout(200)
    width = await agent.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at 375 px ({width} px wide)"
    await expect(agent.locator("#composer")).to_be_visible()
    await agent.screenshot(path=str(artifacts / "console-conversation-phone.png"), full_page=True)
    assert errors == []
    await visitor_context.close()
    await agent_context.close()


async def test_two_agents_see_each_others_claim_at_once(browser: Any, start_console_hub: StartConsoleHub) -> None:
    from playwright.async_api import expect

    ch = await start(start_console_hub)
    visitor_context, _ = await visitor_writes(browser, ch, "Can someone help me?")
    conversation_id = await the_conversation(ch)
    url = f"{ch.base_url}/console/conversations/{conversation_id}"
    first, second = await console_context(browser, ch, "agent"), await console_context(browser, ch, "admin")
    one, two = await first.new_page(), await second.new_page()
    await open_conversation(one, url)
    await open_conversation(two, url)
    for page in (one, two):
        await expect(page.locator("#assignee")).to_have_text("nobody", timeout=TIMEOUT)
    await one.get_by_role("button", name="Take over").click()
    await expect(one.locator("#assignee")).to_have_text("Agent User", timeout=TIMEOUT)
    # The other console follows without a reload: the claim, its timeline event.
    await expect(two.locator("#assignee")).to_have_text("Agent User", timeout=LIVE)
    # Claimed, it is no longer the other's to claim; the admin takes it over by assigning it.
    await expect(two.locator("#claim")).to_have_count(0, timeout=LIVE)
    await expect(two.locator(".entry--event", has_text="Assigned to Agent User")).to_be_visible(timeout=LIVE)
    admin = await ch.hub.api("GET", "/api/v1/me", role="admin")
    await two.get_by_label("Assign to").select_option(value=str(admin["id"]))
    await two.get_by_role("button", name="Assign", exact=True).click()
    await expect(one.locator("#assignee")).to_have_text("Admin User", timeout=TIMEOUT)
    await expect(one.locator(".entry--event", has_text="Assigned to Admin User")).to_be_visible(timeout=LIVE)
    # The admin downloads the contact's data (the JSON the API gives).
    async with two.expect_download() as download_info:
        await two.get_by_role("button", name="Export contact data (JSON)").click()
    download = await download_info.value
    exported = json.loads(Path(await download.path()).read_text())
    assert download.suggested_filename.startswith("contact-") and exported["conversations"][0]["id"] == conversation_id
    # Snooze until a local time tomorrow: the other page shows until when (in UTC).
    tomorrow = datetime.now() + timedelta(days=1)  # the browser's local time is the machine's
    await two.get_by_label("Snooze until").fill(tomorrow.strftime("%Y-%m-%dT09:30"))
    await two.get_by_role("button", name="Snooze").click()
    until = tomorrow.replace(hour=9, minute=30).astimezone(UTC).strftime("until %d %b %H:%M UTC")
    await expect(one.locator(".facts", has_text="Snoozed")).to_contain_text(until, timeout=TIMEOUT)
    # "?" lists the page's shortcuts.
    await one.locator("body").press("?")
    dialog = one.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(dialog).to_be_visible()
    for described in ("Reply to the customer", "Write an internal note", "Claim the conversation", "Resolve"):
        await expect(dialog).to_contain_text(described)
    await one.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    # "e" resolves; both pages say so.
    await one.locator("body").press("e")
    for page in (one, two):
        await expect(page.locator("#conv-meta .badge--status")).to_have_text("resolved", timeout=LIVE)
        await expect(page.locator("#reopen")).to_be_visible(timeout=LIVE)
    # Esc goes back to the inbox.
    await one.locator("body").press("Escape")
    await one.wait_for_url(f"{ch.base_url}/console")
    for context in (first, second, visitor_context):
        await context.close()


async def test_slack_and_an_open_console_page_follow_each_other(
    browser: Any, start_console_hub: StartConsoleHub
) -> None:
    """A claim or a reply in Slack shows on an open console page within a
    second, and the console's show on the Slack card and thread."""
    from playwright.async_api import expect

    api = await FakeSlackApi().start()
    try:
        ch = await start_console_hub(**slack_overrides(api))
        me = await ch.hub.api("GET", "/api/v1/me", role="agent")
        await ch.hub.api("PATCH", f"/api/v1/agents/{me['id']}", json={"slack_user_id": AGENT_SLACK})
        conversation_id = await customer_writes(ch, "slack-e2e", "The app crashes on start", name="Grace")
        opened = await ch.hub.tickets.open(conversation_id, priority="high", reason="bot gave up", source="bot")
        ticket = await card_of(ch, opened.id)
        context = await console_context(browser, ch, "admin")
        page = await context.new_page()
        await open_conversation(page, f"{ch.base_url}/console/conversations/{conversation_id}")
        await expect(page.locator("#assignee")).to_have_text("nobody (in the queue)")
        await page.wait_for_timeout(300)  # the live stream is open

        # Slack -> console: the Claim button, then a thread reply.
        body = block_action_body(
            user=AGENT_SLACK,
            channel=ticket["slack_channel"],
            message_ts=ticket["slack_ts"],
            action_id="ticket_claim",
            value=str(ticket["id"]),
        )
        assert (await send_signed(ch.hub, body, content_type="application/x-www-form-urlencoded")).status == 200
        await expect(page.locator("#assignee")).to_have_text("Agent User", timeout=LIVE)
        await thread_event(ch.hub, ticket, "Answered from Slack")
        await expect(page.locator(".entry--team", has_text="Answered from Slack")).to_be_visible(timeout=LIVE)

        # Console -> Slack: a reply lands in the card's thread within a second.
        await page.get_by_role("textbox", name="Reply to").fill("Answered from the console")
        started = time.monotonic()
        await page.get_by_role("button", name="Send reply").click()

        def in_thread() -> bool:
            return any(
                m.get("thread_ts") == ticket["slack_ts"] and "Answered from the console" in str(m.get("text"))
                for m in api.messages.values()
            )

        await wait_for(in_thread, timeout=10)
        # The "within a second" of the issue is measured by bench/console.py
        # (p99 event to screen), not asserted on a loaded test machine.
        assert time.monotonic() - started < 10.0
        await context.close()
    finally:
        await api.close()


async def test_a_viewer_reads_but_every_write_control_is_absent_and_refused(
    browser: Any, start_console_hub: StartConsoleHub
) -> None:
    from playwright.async_api import expect

    ch = await start(start_console_hub)
    visitor_context, _ = await visitor_writes(
        browser, ch, 'Hi <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    )
    conversation_id = await the_conversation(ch)
    for n in range(55):  # a history longer than a page
        await ch.hub.service.add_note(conversation_id, f"note {n}", author_id=None)
    url = f"{ch.base_url}/console/conversations/{conversation_id}"
    context = await console_context(browser, ch, "viewer")
    page = await context.new_page()
    errors = watch(page)
    await open_conversation(page, url)
    # The newest at the bottom; the beginning one click away.
    await expect(page.locator(".entry").last).to_contain_text("note 54")
    await expect(page.locator(".entry--customer")).to_have_count(0)
    await page.get_by_role("button", name="Show earlier messages").click()
    await expect(page.locator(".entry")).to_have_count(56)
    await expect(page.get_by_role("button", name="Show earlier messages")).to_be_hidden()
    entry = page.locator(".entry--customer .entry-body")
    # Stored markup is shown as text, never run.
    await expect(entry).to_have_text('Hi <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>')
    assert await page.locator(".timeline img, .timeline script").count() == 0
    assert await page.evaluate("window.__xss === undefined")
    await expect(page.get_by_role("heading", name="Contact", exact=True)).to_be_visible()
    # No write control at all.
    for control in ("form[data-action]", "textarea", "select", "#claim", "#resolve", "#composer"):
        assert await page.locator(control).count() == 0, control
    # The shortcuts do nothing for a viewer ("c" has no Claim to press).
    await page.locator("body").press("c")
    await page.wait_for_timeout(300)
    # Forged writes: without the CSRF token, and even with it, 403.
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    for action in ("reply", "note", "claim", "resolve", "erase"):
        without = await page.request.post(
            f"{url}/{action}", form={"text": "forged"}, headers={"Accept": "application/json"}
        )
        with_token = await page.request.post(
            f"{url}/{action}", form={"text": "forged", "csrf_token": token}, headers={"X-CSRF-Token": token}
        )
        assert (without.status, with_token.status) == (403, 403), action
    conversation = await ch.hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["assignee_id"] is None and conversation["status"] == "open"
    timeline = await ch.hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    assert not any("forged" in m["body"] for m in timeline["items"])
    assert errors == []
    await context.close()
    await visitor_context.close()


async def test_the_inbox_and_conversation_pages_have_no_serious_accessibility_violations(
    browser: Any, start_console_hub: StartConsoleHub, artifacts: Path
) -> None:
    ch = await start(start_console_hub)
    visitor_context, _ = await visitor_writes(browser, ch, "Where is the returns form?")
    conversation_id = await the_conversation(ch)
    await ch.hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/notes", role="agent", json={"text": "a note"}, expect=201
    )
    await ch.hub.api("POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", expect=201)
    found: dict[str, Any] = {}
    for role in ("admin", "viewer"):
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            # bypass_csp: axe is injected as an inline script, which the console's policy forbids.
            context = await browser.new_context(viewport=viewport, bypass_csp=True)
            await context.add_cookies(playwright_cookies(await signed_in_cookies(ch.app, email_of(role)), ch.base_url))
            page = await context.new_page()
            pages = ["/console", f"/console/conversations/{conversation_id}"]
            for path in pages:
                await page.goto(ch.base_url + path)
                await page.wait_for_load_state("networkidle")
                found[f"{role} {name} {path}"] = await axe_violations(page)
                if role == "admin" and path == "/console":
                    await page.screenshot(path=str(artifacts / f"console-inbox-{name}.png"), full_page=True)
            await context.close()
    assert all(not v for v in found.values()), json.dumps(found, indent=1)
    await visitor_context.close()


async def test_the_reply_box_counts_sms_segments_exactly_as_the_hub(
    browser: Any, start_console_hub: StartConsoleHub
) -> None:
    """The page's segment counter (conversation.js) against ``hub.segments``
    on awkward texts: GSM-7 with extension characters, UCS-2, emoji across
    segment boundaries."""
    ch = await start(start_console_hub)
    visitor_context, _ = await visitor_writes(browser, ch, "hi")
    conversation_id = await the_conversation(ch)
    context = await console_context(browser, ch, "agent")
    page = await context.new_page()
    await open_conversation(page, f"{ch.base_url}/console/conversations/{conversation_id}")
    sms = {
        "gsm7": "".join(sorted(segments.GSM7_BASIC)),
        "extension": "".join(sorted(segments.GSM7_EXTENSION)),
        "single": [segments.GSM7_SINGLE, segments.UCS2_SINGLE],
        "concatenated": [segments.GSM7_CONCATENATED, segments.UCS2_CONCATENATED],
    }
    rng = random.Random(16)
    pool = ["a", "é", "€", "[", "\n", "ü", "ж", "😀", "👍🏽", " ", "{", "ß", "中"]
    texts = ["", "a" * 160, "a" * 161, "€" * 80, "€" * 81, "ж" * 70, "ж" * 71, "a" * 152 + "€", "😀" * 34]
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 400))) for _ in range(200)]
    counted = await page.evaluate(
        "([texts, sms]) => texts.map((t) => window.ServicehubConsole.smsCost(t, sms).segments)", [texts, sms]
    )
    expected = [segments.segment_count(text) for text in texts]
    mismatches = [(t, c, e) for t, c, e in zip(texts, counted, expected, strict=True) if c != e]
    assert mismatches == [], mismatches[:3]
    await context.close()
    await visitor_context.close()


async def test_the_vendored_axe_core_is_the_published_4_14_1() -> None:
    import hashlib

    digest = hashlib.sha256(AXE.read_bytes()).hexdigest()
    assert digest == "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
    assert "axe v4.14.1" in AXE.read_text()[:200]
    assert (AXE.parent / "LICENSE").read_text().startswith("Mozilla Public License")


async def test_an_article_found_in_the_knowledge_base_goes_into_the_reply(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
    from tests.conftest import make_settings
    from tests.console.test_conversation_channels import running

    settings = make_settings(
        database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, public_url="http://help.example.test"
    )
    async with running(
        settings, knowledge_base=KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    ) as ch:
        conversation_id = await customer_writes(ch, "kb-e2e", "How do I return my boots?")
        context = await console_context(browser, ch, "agent")
        page = await context.new_page()
        await open_conversation(page, f"{ch.base_url}/console/conversations/{conversation_id}")
        reply = page.get_by_role("textbox", name="Reply to")
        await reply.fill("Hi! Here is how:")
        await page.get_by_text("Knowledge base").click()
        await page.get_by_role("searchbox", name="Search articles").fill("return")
        first = page.locator(".kb-insert").first
        await expect(first).to_be_visible(timeout=TIMEOUT)
        url = await first.get_attribute("data-url")
        title = await first.get_attribute("data-title")
        assert url and url.startswith("http://help.example.test/help/")
        await first.click()
        await expect(reply).to_have_value(f"Hi! Here is how: {title}: {url}")
        await expect(reply).to_be_focused()
        await page.get_by_role("button", name="Send reply").click()
        sent = ch.hub.channel("fake").recorder.sent
        await wait_for(lambda: any(url in m.text for m in sent))
        await context.close()
