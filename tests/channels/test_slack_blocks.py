"""Block Kit rendering and Slack text handling, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.slack.cards import TicketCard, escape, mirrored_text, plain_text, ticket_blocks


def card(**overrides: object) -> TicketCard:
    values: dict = {
        "ticket_id": 7,
        "conversation_id": 3,
        "customer": "Ada <ada@example.test>",
        "channel": "sms",
        "priority": "urgent",
        "status": "open",
        "conversation_status": "open",
        "team": "support",
        "summary": "Card declined & order stuck",
        "assignee": None,
        "sla_due": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        "last_messages": [("Ada", "hello <script>"), ("Bot", "Let me get a human")],
        "kb_hits": [{"title": "Payments FAQ", "url": "https://kb.test/payments"}, {"title": "No link"}],
    }
    values.update(overrides)
    return TicketCard(**values)


def test_ticket_card_blocks() -> None:
    blocks = ticket_blocks(card())
    text = str(blocks)
    assert blocks[0]["type"] == "header" and "URGENT" in blocks[0]["text"]["text"]
    assert "Ada &lt;ada@example.test&gt;" in text and "*Channel*\\nsms" in text
    assert "hello &lt;script&gt;" in text and "Card declined &amp; order stuck" in text
    assert "<https://kb.test/payments|Payments FAQ>" in text and "• No link" in text
    assert "<!date^1767323040^" in text and "_unassigned_" in text
    actions = next(b for b in blocks if b["type"] == "actions")
    assert {e["action_id"] for e in actions["elements"]} == {
        "ticket_claim",
        "ticket_resolve",
        "ticket_priority",
        "ticket_snooze",
    }
    select = next(e for e in actions["elements"] if e["type"] == "static_select")
    assert [o["value"] for o in select["options"]] == ["7:urgent", "7:high", "7:normal", "7:low"]


def test_resolved_card_has_no_buttons_and_breach_shows() -> None:
    resolved = ticket_blocks(card(status="resolved"))
    assert not any(b["type"] == "actions" for b in resolved) and "Resolved" in resolved[0]["text"]["text"]
    assert "breached" in str(ticket_blocks(card(sla_breached=True)))
    assert "Snoozed" in ticket_blocks(card(snoozed_until=datetime.now(UTC)))[0]["text"]["text"]


def test_slack_text_round_trip() -> None:
    assert escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert (
        plain_text("See <https://kb.test/a|the guide> &amp; <https://x.test>, <@U1>")
        == "See the guide (https://kb.test/a) & https://x.test, @U1"
    )
    assert mirrored_text("Ada", "<b>hi</b>") == "*Ada*: &lt;b&gt;hi&lt;/b&gt;"
    assert mirrored_text("Bob", "check", note=True).startswith(":memo:")
