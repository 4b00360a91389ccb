"""Urgency rules and assignment decisions, as pure functions."""

from __future__ import annotations

import pytest

from hub.errors import InvalidInput
from hub.models import Priority
from hub.tickets.routing import AgentLoad, Router, Rule, bump, choose, evaluate, higher, validate_rule


def rule(kind: str, params: dict, priority: str, **extra: object) -> Rule:
    kind, params, level = validate_rule(kind, params, priority)
    return Rule(id=1, kind=kind, params=params, priority=level, **extra)  # type: ignore[arg-type]


def test_priority_helpers() -> None:
    assert higher("low", "high") == Priority.HIGH
    assert bump("normal") == Priority.HIGH and bump("urgent") == Priority.URGENT


def test_rules_only_raise_priority() -> None:
    rules = [
        rule("keyword", {"words": ["refund", "charge back"]}, "high", team="billing"),
        rule("attribute", {"key": "tier", "values": ["VIP"]}, "urgent"),
        rule("repeat", {"hours": 24, "count": 3}, "high"),
    ]
    assert evaluate(rules, base="normal", text="hello").priority == Priority.NORMAL
    assert evaluate(rules, base="urgent", text="refund please").priority == Priority.URGENT
    hit = evaluate(rules, base="low", text="I want a Refund!")
    assert hit.priority == Priority.HIGH and hit.team == "billing" and hit.handoff and "keyword 'Refund'" in hit.reasons
    assert evaluate(rules, base="normal", text="refunded").priority == Priority.NORMAL  # whole words only
    assert evaluate(rules, base="normal", text="a charge back").priority == Priority.HIGH
    assert evaluate(rules, base="low", attributes={"tier": "vip"}).priority == Priority.URGENT
    assert evaluate(rules, base="low", recent_conversations={24.0: 3}).priority == Priority.HIGH
    assert evaluate(rules, base="low", recent_conversations={24.0: 2}).priority == Priority.LOW
    disabled = [Rule(id=2, kind="keyword", params={"words": ["refund"]}, priority=Priority.URGENT, enabled=False)]
    assert evaluate(disabled, base="low", text="refund").priority == Priority.LOW


@pytest.mark.parametrize(
    ("kind", "params", "priority"),
    [
        ("keyword", {"words": []}, "high"),
        ("attribute", {"key": "tier"}, "high"),
        ("repeat", {"hours": 1, "count": 1}, "high"),
        ("sentiment", {}, "high"),
        ("keyword", {"words": ["x"]}, "asap"),
    ],
)
def test_invalid_rules(kind: str, params: dict, priority: str) -> None:
    with pytest.raises(InvalidInput):
        validate_rule(kind, params, priority)


def test_choose_prefers_senior_for_urgent_and_least_load_otherwise() -> None:
    agents = [
        AgentLoad(1, "support", open_tickets=0),
        AgentLoad(2, "support", senior=True, open_tickets=3),
        AgentLoad(3, "support", open_tickets=1),
        AgentLoad(4, "billing", senior=True, open_tickets=0),
        AgentLoad(5, "support", on_duty=False),
    ]
    assert choose(agents, team="support", priority="normal").user_id == 1
    assert choose(agents, team="support", priority="urgent").user_id == 2
    assert choose(agents, team="support", priority="urgent", exclude=[2]).user_id == 1
    # Nobody free in the team: an urgent ticket goes to any on-duty senior.
    full = [AgentLoad(1, "support", capacity=1, open_tickets=1), AgentLoad(4, "billing", senior=True)]
    assert choose(full, team="support", priority="urgent").user_id == 4
    assert choose(full, team="support", priority="normal") is None
    # Skills: a support agent who knows billing takes billing tickets after billing's own.
    skilled = [AgentLoad(1, "support", skills=frozenset({"billing"})), AgentLoad(2, "billing", open_tickets=2)]
    assert choose(skilled, team="billing", priority="normal").user_id == 2
    assert choose(skilled, team="billing", priority="normal", exclude=[2]).user_id == 1


def test_router_round_robin_with_equal_load() -> None:
    router = Router([AgentLoad(i, "support", capacity=2) for i in (1, 2, 3)])
    picks = [router.assign(team="support", priority="normal").user_id for _ in range(6)]  # type: ignore[union-attr]
    assert picks == [1, 2, 3, 1, 2, 3]
    assert router.assign(team="support", priority="normal") is None  # everyone at capacity
    router.release(2)
    assert router.assign(team="support", priority="low").user_id == 2  # type: ignore[union-attr]
