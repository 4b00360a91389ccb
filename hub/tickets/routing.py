"""Urgency and assignment: which priority and team a ticket gets, and who works it.

Both halves are pure functions over plain data, so the transaction that
opens or reassigns a ticket (``hub.tickets.transactions``) and ``bench/routing.py`` run
the very same decisions.

Urgency: the priority a handoff asked for, raised (never lowered) by the
admin's rules: keywords in what the customer wrote, a VIP attribute on the
contact (``tier: vip``), or repeated contact (N conversations within H hours).

Assignment: among the on-duty agents of the ticket's team (or who list the
team among their skills) with room under their capacity, the least loaded
one; ties go to the agent served longest ago (round-robin). Urgent tickets
go to senior agents first, and to any on-duty senior when the team has
nobody free. Nobody free: the ticket waits in the queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.errors import InvalidInput
from hub.models import Priority

RULE_KINDS = ("keyword", "attribute", "repeat")
_BY_RANK = {priority.rank: priority for priority in Priority}


def priority_rank(priority: Priority | str) -> int:
    """0 for urgent ... 3 for low (``Priority.rank``)."""
    return Priority(priority).rank


def higher(a: Priority | str, b: Priority | str) -> Priority:
    """The more urgent of two priorities."""
    return _BY_RANK[min(priority_rank(a), priority_rank(b))]


def bump(priority: Priority | str) -> Priority:
    """One level more urgent (urgent stays urgent)."""
    return _BY_RANK[max(0, priority_rank(priority) - 1)]


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    kind: str
    params: dict[str, Any]
    priority: Priority
    team: str | None = None
    handoff: bool = True
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "params": self.params,
            "priority": self.priority.value,
            "team": self.team,
            "handoff": self.handoff,
            "enabled": self.enabled,
        }

    @property
    def pattern(self) -> re.Pattern[str]:
        return _keyword_pattern(tuple(self.params.get("words", ())))


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _keyword_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    pattern = _PATTERNS.get(words)
    if pattern is None:
        alternatives = "|".join(re.escape(w.strip()) for w in words if w.strip())
        pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if alternatives else re.compile("(?!)")
        _PATTERNS[words] = pattern
    return pattern


def validate_rule(kind: Any, params: Any, priority: Any) -> tuple[str, dict[str, Any], Priority]:
    """Check an admin's rule; InvalidInput names what is wrong."""
    if kind not in RULE_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(RULE_KINDS)}")
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object")
    try:
        level = Priority(priority)
    except ValueError:
        raise InvalidInput("priority must be one of urgent, high, normal, low") from None
    if kind == "keyword":
        words = params.get("words")
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise InvalidInput("a keyword rule needs params.words: a non-empty list of strings")
        params = {"words": [w.strip() for w in words]}
    elif kind == "attribute":
        key, values = params.get("key"), params.get("values")
        if not isinstance(key, str) or not key or not isinstance(values, list) or not values:
            raise InvalidInput("an attribute rule needs params.key (string) and params.values (list)")
        params = {"key": key, "values": [str(v).lower() for v in values]}
    else:
        hours, count = params.get("hours"), params.get("count")
        if not isinstance(hours, (int, float)) or hours <= 0 or not isinstance(count, int) or count < 2:
            raise InvalidInput("a repeat rule needs params.hours > 0 and params.count >= 2")
        params = {"hours": float(hours), "count": count}
    return kind, params, level


@dataclass(slots=True)
class Urgency:
    priority: Priority
    team: str | None = None
    reasons: list[str] = field(default_factory=list)
    handoff: bool = False  # a matching keyword rule asks for a human

    def raise_to(self, rule: Rule, reason: str) -> None:
        if priority_rank(rule.priority) < priority_rank(self.priority):
            self.priority = rule.priority
        if rule.team and self.team is None:
            self.team = rule.team
        self.reasons.append(reason)


def keyword_hits(rules: Iterable[Rule], text: str) -> list[Rule]:
    return [r for r in rules if r.enabled and r.kind == "keyword" and r.pattern.search(text)]


def evaluate(
    rules: Iterable[Rule],
    *,
    base: Priority | str,
    text: str = "",
    attributes: dict[str, Any] | None = None,
    recent_conversations: dict[float, int] | None = None,
) -> Urgency:
    """The priority and team the rules give a ticket.

    ``recent_conversations`` maps each repeat rule's window (hours) to the
    number of conversations the contact opened in it (counted by the caller).
    """
    urgency = Urgency(priority=Priority(base))
    attributes = attributes or {}
    for rule in rules:
        if not rule.enabled:
            continue
        if rule.kind == "keyword":
            found = rule.pattern.search(text) if text else None
            if found:
                urgency.raise_to(rule, f"keyword '{found.group(0)}'")
                urgency.handoff = urgency.handoff or rule.handoff
        elif rule.kind == "attribute":
            value = attributes.get(rule.params["key"])
            if value is not None and str(value).lower() in rule.params["values"]:
                urgency.raise_to(rule, f"{rule.params['key']}={value}")
        elif rule.kind == "repeat":
            seen = (recent_conversations or {}).get(rule.params["hours"], 0)
            if seen >= rule.params["count"]:
                urgency.raise_to(rule, f"{seen} conversations within {rule.params['hours']:g}h")
    return urgency


@dataclass(slots=True)
class AgentLoad:
    """What assignment needs to know about one agent."""

    user_id: int
    team: str
    skills: frozenset[str] = frozenset()
    capacity: int = 8
    senior: bool = False
    on_duty: bool = True
    open_tickets: int = 0
    last_assigned_seq: int = 0

    def serves(self, team: str) -> bool:
        return self.team == team or team in self.skills


def choose(
    agents: Iterable[AgentLoad],
    *,
    team: str,
    priority: Priority | str,
    exclude: Iterable[int] = (),
) -> AgentLoad | None:
    """The agent who should get a ticket now, or None (it waits in the queue)."""
    urgent = Priority(priority) == Priority.URGENT
    excluded = set(exclude)
    best: AgentLoad | None = None
    best_key: tuple[int, int, int, int, int] | None = None
    spare_senior: AgentLoad | None = None
    spare_key: tuple[int, int, int] | None = None
    for agent in agents:
        if not agent.on_duty or agent.open_tickets >= agent.capacity or agent.user_id in excluded:
            continue
        if agent.serves(team):
            key = (
                0 if urgent and agent.senior else 1,
                0 if agent.team == team else 1,
                agent.open_tickets,
                agent.last_assigned_seq,
                agent.user_id,
            )
            if best_key is None or key < best_key:
                best, best_key = agent, key
        elif urgent and agent.senior:
            skey = (agent.open_tickets, agent.last_assigned_seq, agent.user_id)
            if spare_key is None or skey < spare_key:
                spare_senior, spare_key = agent, skey
    return best if best is not None else spare_senior


class Router:
    """In-memory assignment over a snapshot of agents (the benchmark's
    subject, and a reference for ``choose``): picks, then books the load."""

    def __init__(self, agents: Iterable[AgentLoad]) -> None:
        self.agents = {a.user_id: a for a in agents}
        self._by_team: dict[str, list[AgentLoad]] = {}
        self._seniors = [a for a in self.agents.values() if a.senior]
        for agent in self.agents.values():
            for team in {agent.team, *agent.skills}:
                self._by_team.setdefault(team, []).append(agent)
        self._seq = max((a.last_assigned_seq for a in self.agents.values()), default=0)

    def assign(self, *, team: str, priority: Priority | str, exclude: Iterable[int] = ()) -> AgentLoad | None:
        candidates = self._by_team.get(team, [])
        if Priority(priority) == Priority.URGENT:
            candidates = [*candidates, *self._seniors]
        agent = choose(candidates, team=team, priority=priority, exclude=exclude)
        if agent is not None:
            self._seq += 1
            agent.open_tickets += 1
            agent.last_assigned_seq = self._seq
        return agent

    def release(self, user_id: int) -> None:
        agent = self.agents[user_id]
        agent.open_tickets = max(0, agent.open_tickets - 1)
