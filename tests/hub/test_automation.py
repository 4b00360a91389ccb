"""Automation rules (issue #17): checked rules, matched with their event in
its transaction, run once by the worker (resuming after the actions done),
the silence sweep and close-after-silence, the dry run, the YAML file, and
the admin API, on every storage backend."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub import keys
from hub.automation.rules import Facts, matches, parse
from hub.errors import InvalidInput
from hub.storage.schema import audit_log, automation_runs, messages
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for
from tests.hub.test_sla import MovedClock

# --- the rules themselves --------------------------------------------------------------


def facts(**overrides: Any) -> Facts:
    values: dict[str, Any] = {
        "conversation_id": 1,
        "channel": "sms",
        "text": "Hello, I want a Refund for order 12345!",
        "contact_tags": ("VIP",),
        "contact_attributes": {"plan": "Enterprise", "seats": 40, "trial": False},
        "priority": "normal",
        "team": None,
        "business_hours": True,
    }
    values.update(overrides)
    return Facts(**values)


def rule(**conditions: Any) -> Any:
    return parse({"name": "r", "when": "message_received", "if": conditions, "then": [{"add_tag": "x"}]})


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({}, True),
        ({"channel": ["email", "SMS"]}, True),
        ({"channel": "webchat"}, False),
        ({"text_contains": ["refund"]}, True),
        ({"text_contains": "refunds"}, False),  # whole words: "refunds" is not in the text
        ({"text_contains": ["order 12345"]}, True),
        ({"text_matches": r"order\s*#?\d{5}"}, True),
        ({"text_matches": r"^refund"}, False),
        ({"contact_tag": "vip"}, True),
        ({"contact_tag": ["churn-risk"]}, False),
        ({"contact_attribute": {"plan": ["business", "enterprise"]}}, True),
        ({"contact_attribute": {"seats": 40, "trial": False}}, True),
        ({"contact_attribute": {"plan": "enterprise", "region": "eu"}}, False),  # every key must hold
        ({"priority": ["high", "urgent"]}, False),
        ({"team": "billing"}, False),  # no ticket, no team
        ({"business_hours": True}, True),
        ({"channel": "sms", "text_contains": "refund", "contact_tag": "vip"}, True),
        ({"channel": "sms", "text_contains": "invoice"}, False),
    ],
)
def test_conditions_all_hold(conditions: dict[str, Any], expected: bool) -> None:
    assert matches(rule(**conditions), facts()) is expected


def test_unless_vetoes_and_team_matches_the_ticket() -> None:
    vetoed = parse(
        {"name": "r", "when": "ticket_opened", "unless": {"contact_tag": "vip"}, "then": [{"set_priority": "high"}]}
    )
    assert not matches(vetoed, facts())
    assert matches(vetoed, facts(contact_tags=()))
    on_team = parse({"name": "r", "when": "ticket_opened", "if": {"team": "Billing"}, "then": [{"add_tag": "b"}]})
    assert matches(on_team, facts(team="billing")) and not matches(on_team, facts(team="support"))


def test_a_catastrophic_expression_is_no_match_not_a_stall() -> None:
    slow = rule(text_matches=r"(a+)+$")
    started = time.monotonic()
    assert not matches(slow, facts(text="a" * 40 + "!"))
    assert time.monotonic() - started < 5  # bounded by the regex timeout, not minutes of backtracking


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"name": "Bad Name", "when": "message_received", "then": [{"add_tag": "x"}]}, "name must be"),
        ({"name": "r", "when": "tuesday", "then": [{"add_tag": "x"}]}, "when must be one of"),
        ({"name": "r", "when": "customer_silent", "then": [{"add_tag": "x"}]}, "needs silent_hours"),
        ({"name": "r", "when": "message_received", "silent_hours": 3, "then": [{"add_tag": "x"}]}, "customer_silent"),
        ({"name": "r", "when": "message_received", "then": []}, "non-empty list"),
        ({"name": "r", "when": "message_received", "then": [{"launch": "rockets"}]}, "unknown action 'launch'"),
        ({"name": "r", "when": "message_received", "then": [{"add_tag": "x", "add_note": "y"}]}, "one action"),
        ({"name": "r", "when": "message_received", "then": [{"set_priority": "asap"}]}, "urgent, high"),
        ({"name": "r", "when": "message_received", "then": [{"assign_agent": "nobody"}]}, "e-mail address or id"),
        (
            {"name": "r", "when": "message_received", "then": [{"close_after_silence": {"days": 0}}]},
            "days must be",
        ),
        ({"name": "r", "when": "message_received", "if": {"colour": "red"}, "then": [{"add_tag": "x"}]}, "colour"),
        (
            {"name": "r", "when": "message_received", "if": {"text_matches": "(("}, "then": [{"add_tag": "x"}]},
            "regular",
        ),
        ({"name": "r", "when": "message_received", "if": {"priority": "soon"}, "then": [{"add_tag": "x"}]}, "soon"),
        (
            {"name": "r", "when": "message_received", "if": {"business_hours": "yes"}, "then": [{"add_tag": "x"}]},
            "true",
        ),
    ],
)
def test_a_wrong_rule_is_refused_with_its_reason(body: dict[str, Any], complaint: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert complaint in caught.value.message


# --- end to end -------------------------------------------------------------------------


async def inbound(hub: Hub, sender: str, text: str, external_id: str | None = None) -> dict[str, Any]:
    received = await hub.inbound({"from": sender, "text": text, "id": external_id or f"{sender}-{time.time_ns()}"})
    return await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")


async def runs_of(hub: Hub, rule_id: int) -> list[dict[str, Any]]:
    return (await hub.api("GET", f"/api/v1/automation/rules/{rule_id}/runs"))["items"]


async def settled(hub: Hub, rule_id: int, count: int, status: str = "done") -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        found = await runs_of(hub, rule_id)
        return found if len(found) == count and all(r["status"] == status for r in found) else None

    return await wait_for(probe)


async def timeline(hub: Hub, conversation_id: int) -> list[dict[str, Any]]:
    return (await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline?limit=200"))["items"]


@pytest.mark.asyncio
async def test_a_matching_message_runs_every_action_once(hub: Hub) -> None:
    await hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "refund-policy", "title": "Refunds", "body": "Hi {{ contact.first_name }}, refunds take 5 days."},
        expect=201,
    )
    created = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={
            "name": "refunds",
            "when": "message_received",
            "if": {"text_contains": ["refund", "chargeback"]},
            "unless": {"contact_tag": "test-account"},
            "then": [
                {"set_priority": "high"},
                {"add_tag": "refund"},
                {"add_note": "Refund asked: see the policy."},
                {"send_canned": "refund-policy"},
            ],
        },
        expect=201,
    )
    assert created["source"] == "api" and created["enabled"] is True
    other = await inbound(hub, "ada", "Where is my parcel?")
    message = await inbound(hub, "grace", "I want a refund please", external_id="grace-1")
    conversation_id = message["conversation_id"]
    [run] = await settled(hub, created["id"], 1)
    assert run["conversation_id"] == conversation_id and run["step"] == 4 and run["event_key"].startswith("message:")

    conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["priority"] == "high"
    contact = await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}")
    assert contact["tags"] == ["refund"]
    entries = await timeline(hub, conversation_id)
    notes = [e for e in entries if e["kind"] == "note"]
    assert [n["body"] for n in notes] == ["Refund asked: see the policy."]
    sent = [e for e in entries if e["direction"] == "outbound" and e["kind"] == "message"]
    assert [s["body"] for s in sent] == ["Hi , refunds take 5 days."]  # a contact without a name
    assert sent[0]["author_kind"] == "system"
    assert (await hub.api("GET", f"/api/v1/conversations/{other['conversation_id']}"))["priority"] == "normal"

    # The provider retries the same message: stored once, the rule not run again.
    await hub.inbound({"from": "grace", "text": "I want a refund please", "id": "grace-1"})
    # A second refund message is a second event: one more run.
    await inbound(hub, "grace", "Still waiting for that refund")
    await settled(hub, created["id"], 2)
    fake = hub.channel("fake").recorder
    await wait_for(lambda: len([m for m in fake.sent if "refunds take 5 days" in m.text]) == 2)
    await hub.api("DELETE", f"/api/v1/automation/rules/{created['id']}", expect=204)
    await inbound(hub, "grace", "refund refund refund")
    assert await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(automation_runs)).scalar()) == 0

    def audited(conn: sa.Connection) -> list[tuple[str, str | None]]:
        rows = conn.execute(sa.select(audit_log.c.action, audit_log.c.via).order_by(audit_log.c.id))
        return [(r.action, r.via) for r in rows]

    trail = await hub.db.read(audited)
    assert ("automation_rule.create", "api") in trail and ("automation_rule.delete", "api") in trail
    assert ("conversation.reply", "automation") in trail and ("conversation.note", "automation") in trail


@pytest.mark.asyncio
async def test_one_event_queues_a_rule_once_and_a_failed_run_resumes_after_the_actions_done(hub: Hub) -> None:
    created = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={
            "name": "greet",
            "when": "message_received",
            "then": [{"add_note": "first action"}, {"send_canned": "not-written-yet"}, {"add_tag": "greeted"}],
        },
        expect=201,
    )
    message = await inbound(hub, "linus", "hello")
    conversation_id = message["conversation_id"]
    [run] = await settled(hub, created["id"], 1, status="dead")
    assert run["step"] == 1 and "not-written-yet" in run["last_error"]

    # The same event again (a second instance, a replayed hook): nothing more is queued.
    automation = hub.app[keys.AUTOMATION]
    at = datetime.now(UTC)
    again = await hub.db.write(
        lambda conn: automation._match_tx(conn, "message_received", conversation_id, run["event_key"], at=at)
    )
    assert again == 0

    await hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "not-written-yet", "title": "Hello", "body": "Hello from the team."},
        expect=201,
    )
    await hub.api("POST", f"/api/v1/jobs/automation/{run['id']}/retry")
    [done] = await settled(hub, created["id"], 1)
    assert done["step"] == 3
    entries = await timeline(hub, conversation_id)
    assert [e["body"] for e in entries if e["kind"] == "note"] == ["first action"]  # not run twice
    assert [e["body"] for e in entries if e["direction"] == "outbound" and e["kind"] == "message"] == [
        "Hello from the team."
    ]
    assert (await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}"))["tags"] == ["greeted"]


@pytest.mark.asyncio
async def test_an_opened_ticket_moves_to_a_team_and_a_resolve_runs_its_rule(hub: Hub) -> None:
    moved = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={
            "name": "invoices-to-billing",
            "when": "ticket_opened",
            "if": {"text_matches": r"\binvoice"},
            "then": [{"assign_team": "billing"}, {"set_priority": "high"}],
        },
        expect=201,
    )
    resolved = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={"name": "thank", "when": "ticket_resolved", "then": [{"add_tag": "was-helped"}]},
        expect=201,
    )
    message = await inbound(hub, "ken", "My invoice is wrong")
    ticket = await hub.api(
        "POST", f"/api/v1/conversations/{message['conversation_id']}/handoff", role="agent", json={}, expect=201
    )
    await settled(hub, moved["id"], 1)
    changed = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
    assert changed["team"] == "billing" and changed["priority"] == "high"

    plain = await inbound(hub, "dennis", "Hello there")
    await hub.api(
        "POST", f"/api/v1/conversations/{plain['conversation_id']}/handoff", role="agent", json={}, expect=201
    )
    assert len(await runs_of(hub, moved["id"])) == 1  # its conditions did not hold

    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent", json={})
    await settled(hub, resolved["id"], 1)
    assert (await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}"))["tags"] == ["was-helped"]


@pytest.mark.asyncio
async def test_a_silence_is_swept_once_and_closes_after_its_notice(database_url: str, tmp_path: Path) -> None:
    clock = MovedClock()
    hub = await start_hub(make_settings(database_url, tmp_path), clock=clock)
    try:
        rule_ = await hub.api(
            "POST",
            "/api/v1/automation/rules",
            json={
                "name": "nudge-then-close",
                "when": "customer_silent",
                "silent_hours": 24,
                "then": [
                    {"add_note": "Customer silent for a day"},
                    {
                        "close_after_silence": {
                            "days": 2,
                            "notice": "We are closing this for now; just reply to reopen.",
                        }
                    },
                ],
            },
            expect=201,
        )
        automation = hub.app[keys.AUTOMATION]
        quiet = await inbound(hub, "margaret", "Can you check my account?")
        answered = await inbound(hub, "barbara", "Question about billing")
        waiting = await inbound(hub, "frances", "Hello?")  # we never answered: not the customer's silence
        for m in (quiet, answered):
            await hub.api(
                "POST",
                f"/api/v1/conversations/{m['conversation_id']}/messages",
                role="agent",
                json={"text": "Done?"},
                expect=201,
            )
        assert await automation.sweep_silent() == 0  # not a day yet
        clock.advance(25 * 3600)
        await inbound(hub, "barbara", "Thanks, one more thing")  # barbara answered
        # Sweeps on two instances, or twice on one: one run per silence.
        assert await automation.sweep_silent() == 1
        assert await automation.sweep_silent() == 0

        async def close_row() -> dict[str, Any] | None:
            found = await runs_of(hub, rule_["id"])
            swept = [r for r in found if r["event"] == "customer_silent" and r["status"] == "done"]
            closing = [r for r in found if r["event"] == "close"]
            return closing[0] if swept and closing else None

        close = await wait_for(close_row)
        assert close["status"] == "pending"
        # Due in two days by the queue's clock (the machine's, which its worker claims by).
        assert datetime.fromisoformat(close["due_at"]) >= datetime.now(UTC) + timedelta(days=2) - timedelta(minutes=1)
        conversation_id = quiet["conversation_id"]
        assert [e["body"] for e in await timeline(hub, conversation_id) if e["kind"] == "note"] == [
            "Customer silent for a day"
        ]
        assert waiting["conversation_id"] not in [r["conversation_id"] for r in await runs_of(hub, rule_["id"])]

        # Two days pass (the queue's clock is the machine's: the row is made due).
        await hub.db.write(
            lambda conn: conn.execute(
                sa.update(automation_runs)
                .where(automation_runs.c.id == close["id"])
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        )
        automation.worker.notify()
        await wait_for(lambda: _resolved(hub, conversation_id))
        conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
        assert conversation["status"] == "resolved"
        bodies = [e["body"] for e in await timeline(hub, conversation_id) if e["direction"] == "outbound"]
        # The notice, then the satisfaction survey every resolve sends.
        assert bodies[-2] == "We are closing this for now; just reply to reopen."
        assert bodies[-1].startswith("How did we do?")
    finally:
        await close_hub(hub)


async def _resolved(hub: Hub, conversation_id: int) -> bool:
    return (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["status"] == "resolved"


@pytest.mark.asyncio
async def test_a_customer_who_writes_before_the_day_keeps_the_conversation_open(hub: Hub) -> None:
    rule_ = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={"name": "close-later", "when": "message_received", "then": [{"close_after_silence": {"days": 3}}]},
        expect=201,
    )
    message = await inbound(hub, "edsger", "Is it done?")

    async def queued_close() -> dict[str, Any] | None:
        return next((r for r in await runs_of(hub, rule_["id"]) if r["event"] == "close"), None)

    close = await wait_for(queued_close)
    await inbound(hub, "edsger", "Actually, one more question")  # the customer writes: silence over
    await hub.db.write(
        lambda conn: conn.execute(
            sa.update(automation_runs)
            .where(automation_runs.c.id == close["id"])
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    )
    hub.app[keys.AUTOMATION].worker.notify()

    async def close_done() -> bool:
        return any(r["id"] == close["id"] and r["status"] == "done" for r in await runs_of(hub, rule_["id"]))

    await wait_for(close_done)
    assert (await hub.api("GET", f"/api/v1/conversations/{message['conversation_id']}"))["status"] != "resolved"


@pytest.mark.asyncio
async def test_dry_run_lists_past_matches_without_running_anything(hub: Hub) -> None:
    for i, text in enumerate(["refund please", "where is my order", "REFUND now", "a refundable ticket?"]):
        await inbound(hub, f"dry-{i}", text)
    draft = {"name": "draft", "when": "message_received", "if": {"text_contains": "refund"}, "then": [{"add_tag": "x"}]}
    result = await hub.api("POST", "/api/v1/automation/dry-run?days=7", json=draft)
    assert result["matched"] == 2 and result["scanned"] == 4 and result["truncated"] is False
    assert sorted(m["text"] for m in result["matches"]) == ["REFUND now", "refund please"]
    saved = await hub.api("POST", "/api/v1/automation/rules", json={**draft, "enabled": False}, expect=201)
    again = await hub.api("GET", f"/api/v1/automation/rules/{saved['id']}/dry-run?days=7&limit=1")
    assert again["matched"] == 2 and len(again["matches"]) == 1
    assert await runs_of(hub, saved["id"]) == []
    # A disabled rule matches nothing live.
    await inbound(hub, "dry-9", "refund refund")
    assert await runs_of(hub, saved["id"]) == []
    count = await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(messages)).scalar())
    assert count == 5  # the dry run wrote nothing to any timeline


@pytest.mark.asyncio
async def test_the_api_checks_rules_and_names(hub: Hub) -> None:
    body = {"name": "vip", "when": "message_received", "if": {"contact_tag": "vip"}, "then": [{"set_priority": "high"}]}
    created = await hub.api("POST", "/api/v1/automation/rules", json=body, expect=201)
    duplicate = await hub.api("POST", "/api/v1/automation/rules", json=body, expect=409)
    assert "exists" in duplicate["error"]["message"]
    bad = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={"name": "silent", "when": "customer_silent", "then": [{"add_tag": "x"}]},
        expect=400,
    )
    assert "silent_hours" in bad["error"]["message"]
    regex = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={
            "name": "re",
            "when": "message_received",
            "if": {"text_matches": "(unclosed"},
            "then": [{"add_tag": "x"}],
        },
        expect=400,
    )
    assert "regular expression" in regex["error"]["message"]
    changed = await hub.api("PATCH", f"/api/v1/automation/rules/{created['id']}", json={"enabled": False})
    assert changed["enabled"] is False and changed["if"] == {"contact_tag": ["vip"]}
    await hub.api("PATCH", f"/api/v1/automation/rules/{created['id']}", json={"when": "customer_silent"}, expect=400)
    await hub.api("GET", "/api/v1/automation/rules", role="agent", expect=403)
    await hub.api("GET", "/api/v1/automation/rules/999999", expect=404)
    listed = await hub.api("GET", "/api/v1/automation/rules")
    assert [r["name"] for r in listed["items"]] == ["vip"]


@pytest.mark.asyncio
async def test_the_yaml_file_is_loaded_and_read_only_through_the_api(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "automation.yml"
    path.write_text(
        """
rules:
  - name: urgent-words
    when: message_received
    if: {text_contains: [fraud, stolen]}
    then:
      - set_priority: urgent
      - add_tag: fraud
  - name: stale
    when: customer_silent
    silent_hours: 72
    then: [{close_after_silence: {days: 7, notice: Closing.}}]
""",
        encoding="utf-8",
    )
    hub = await start_hub(make_settings(database_url, tmp_path, automation_file=path))
    try:
        rules = {r["name"]: r for r in (await hub.api("GET", "/api/v1/automation/rules"))["items"]}
        assert set(rules) == {"urgent-words", "stale"} and rules["stale"]["source"] == "file"
        refused = await hub.api(
            "PATCH", f"/api/v1/automation/rules/{rules['stale']['id']}", json={"enabled": False}, expect=409
        )
        assert "HUB_AUTOMATION_FILE" in refused["error"]["message"]
        await hub.api("DELETE", f"/api/v1/automation/rules/{rules['stale']['id']}", expect=409)
        message = await inbound(hub, "alan", "My card was stolen")
        await settled(hub, rules["urgent-words"]["id"], 1)
        assert (await hub.api("GET", f"/api/v1/conversations/{message['conversation_id']}"))["priority"] == "urgent"
    finally:
        await close_hub(hub)
    path.write_text(
        "rules:\n  - {name: urgent-words, when: message_received, if: {text_contains: fraud}, then: [{add_tag: f}]}\n",
        encoding="utf-8",
    )
    hub = await start_hub(make_settings(database_url, tmp_path, automation_file=path))
    try:
        rules = {r["name"]: r for r in (await hub.api("GET", "/api/v1/automation/rules"))["items"]}
        assert set(rules) == {"urgent-words"} and rules["urgent-words"]["then"] == [{"add_tag": "f"}]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_an_sla_warning_runs_its_rule_once_per_deadline(database_url: str, tmp_path: Path) -> None:
    clock = MovedClock()
    settings = make_settings(database_url, tmp_path, sla_policies="normal=10/100", sla_breach_bump_priority=False)
    hub = await start_hub(settings, clock=clock)
    try:
        rule_ = await hub.api(
            "POST",
            "/api/v1/automation/rules",
            json={
                "name": "near-breach",
                "when": "sla_warning",
                "if": {"priority": "normal"},
                "then": [{"set_priority": "high"}, {"add_note": "First response due soon"}],
            },
            expect=201,
        )
        message = await inbound(hub, "tony", "Nobody answers")
        ticket = await hub.api(
            "POST", f"/api/v1/conversations/{message['conversation_id']}/handoff", role="agent", json={}, expect=201
        )
        clock.advance(7 * 60)  # 70 % of the 10-minute first response: no warning yet
        await hub.tickets.check_due()
        assert await runs_of(hub, rule_["id"]) == []
        clock.advance(90)  # past 80 %
        await hub.tickets.check_due()
        await hub.tickets.check_due()
        [run] = await settled(hub, rule_["id"], 1)
        assert run["event_key"].startswith(f"sla-warning:{ticket['id']}:first_response:")
        assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["priority"] == "high"
        notes = [e["body"] for e in await timeline(hub, message["conversation_id"]) if e["kind"] == "note"]
        assert notes == ["First response due soon"]
    finally:
        await close_hub(hub)
