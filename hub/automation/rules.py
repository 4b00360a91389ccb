"""Automation rules: what they are, how they are checked, and whether one matches.

A rule is *when* an event happens, *if* its conditions hold (and none of its
``unless`` conditions do), *then* run its actions in order::

    name: refunds-to-billing
    when: message_received      # ticket_opened | sla_warning | customer_silent | ticket_resolved
    silent_hours: 48            # customer_silent only: how long the customer has not answered
    if:                         # every key must hold; omitted: always
      channel: [sms, email]     # any of
      text_contains: [refund, chargeback]   # any word or phrase, case-insensitive, whole words
      text_matches: "order\\s*#?\\d{5,}"    # a regular expression (case-insensitive, time-bounded)
      contact_tag: vip          # any of
      contact_attribute: {plan: [enterprise, business]}   # every key, any of its values
      priority: [high, urgent]
      team: billing
      business_hours: false     # outside HUB_SLA_BUSINESS_HOURS
    unless: {contact_tag: test}
    then:
      - set_priority: high
      - add_tag: refund
      - assign_team: billing
      - assign_agent: alice@example.com      # a user's e-mail or id
      - send_canned: refund-policy           # a canned reply's name, rendered for the conversation
      - add_note: "Refund asked; see the policy."
      - close_after_silence: {days: 3, notice: "We haven't heard back, so we're closing this for now."}
      - webhook: 2                          # an outgoing webhook endpoint's id (hub.webhooks)

``parse`` turns what an admin wrote (the API's JSON, the YAML file) into a
``Rule`` or a 400 naming the field; ``matches`` is the pure decision over
``Facts``, the same for the live path and the dry run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import regex

from hub.errors import InvalidInput
from hub.models import Priority

EVENTS = ("message_received", "ticket_opened", "sla_warning", "customer_silent", "ticket_resolved")
CONDITIONS = (
    "channel",
    "text_contains",
    "text_matches",
    "contact_tag",
    "contact_attribute",
    "priority",
    "team",
    "business_hours",
)
ACTIONS = (
    "set_priority",
    "add_tag",
    "assign_team",
    "assign_agent",
    "send_canned",
    "add_note",
    "close_after_silence",
    "webhook",
)
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_ACTIONS = 20
MAX_TEXT = 2000
MAX_SILENCE_DAYS = 365
# A rule's regular expression gets this long per message, then counts as no match.
REGEX_TIMEOUT = 0.05


@dataclass(frozen=True)
class Facts:
    """What conditions are checked against: the event's and its conversation's."""

    conversation_id: int
    channel: str
    text: str  # the customer's message (message_received), else their latest one
    contact_tags: tuple[str, ...]
    contact_attributes: Mapping[str, Any]
    priority: str
    team: str | None  # the open ticket's team; None without a ticket
    business_hours: bool  # True when no business hours are configured
    ticket_id: int | None = None


@dataclass(frozen=True)
class Rule:
    id: int | None
    name: str
    when: str
    conditions: Mapping[str, Any] = field(default_factory=dict)
    unless: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[Mapping[str, Any], ...] = ()
    silent_hours: float | None = None
    enabled: bool = True
    description: str = ""
    source: str = "api"  # api | file (the YAML file's rules are changed in the file)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "when": self.when,
            "if": dict(self.conditions),
            "unless": dict(self.unless),
            "then": [dict(action) for action in self.actions],
            "enabled": self.enabled,
            "source": self.source,
        }
        if self.silent_hours is not None:
            body["silent_hours"] = self.silent_hours
        return body


def parse(body: Mapping[str, Any], *, source: str = "api", rule_id: int | None = None) -> Rule:
    """A rule from its JSON/YAML form, or ``InvalidInput`` naming what is wrong."""
    if not isinstance(body, Mapping):
        raise InvalidInput("a rule must be an object")
    unknown = set(body) - {
        "id",
        "name",
        "description",
        "when",
        "silent_hours",
        "if",
        "unless",
        "then",
        "enabled",
        "source",
    }
    if unknown:
        raise InvalidInput(f"unknown rule field {sorted(unknown)[0]!r}", details={"field": sorted(unknown)[0]})
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput("name must be 1-64 lowercase letters, digits, '-', '_' or '.'", details={"field": "name"})
    where = f"rule {name!r}"
    when = body.get("when")
    if when not in EVENTS:
        raise InvalidInput(f"{where}: when must be one of {', '.join(EVENTS)}", details={"field": "when"})
    silent_hours = body.get("silent_hours")
    if when == "customer_silent":
        if not _number(silent_hours) or not 0 < silent_hours <= 24 * MAX_SILENCE_DAYS:
            raise InvalidInput(
                f"{where}: customer_silent needs silent_hours, 0 < hours <= 8760", details={"field": "silent_hours"}
            )
        silent_hours = float(silent_hours)
    elif silent_hours is not None:
        raise InvalidInput(
            f"{where}: silent_hours is for customer_silent rules only", details={"field": "silent_hours"}
        )
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        raise InvalidInput(
            f"{where}: description must be text of at most {MAX_TEXT} characters", details={"field": "description"}
        )
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput(f"{where}: enabled must be true or false", details={"field": "enabled"})
    conditions = _conditions(body.get("if"), f"{where}: if")
    unless = _conditions(body.get("unless"), f"{where}: unless")
    actions = body.get("then")
    if not isinstance(actions, Sequence) or isinstance(actions, str) or not actions:
        raise InvalidInput(f"{where}: then must be a non-empty list of actions", details={"field": "then"})
    if len(actions) > MAX_ACTIONS:
        raise InvalidInput(f"{where}: at most {MAX_ACTIONS} actions", details={"field": "then"})
    return Rule(
        id=rule_id,
        name=name,
        when=when,
        conditions=conditions,
        unless=unless,
        actions=tuple(_action(action, f"{where}: then[{i}]") for i, action in enumerate(actions)),
        silent_hours=silent_hours,
        enabled=enabled,
        description=description,
        source=source,
    )


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _words(value: Any, where: str, *, lower: bool = True) -> list[str]:
    """One string or a list of them (non-blank, short)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{where} must be a string or a non-empty list of strings")
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise InvalidInput(f"{where}: each value must be non-blank text of at most 200 characters")
        out.append(item.strip().lower() if lower else item.strip())
    return out


def _conditions(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be an object of conditions")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        here = f"{where}.{key}"
        if key not in CONDITIONS:
            raise InvalidInput(f"{where}: unknown condition {key!r}; known: {', '.join(CONDITIONS)}")
        if key in ("channel", "contact_tag", "team", "text_contains"):
            out[key] = _words(raw, here)
        elif key == "priority":
            levels = _words(raw, here)
            bad = [level for level in levels if level not in Priority.__members__.values()]
            if bad:
                raise InvalidInput(f"{here}: {bad[0]!r} is not one of urgent, high, normal, low")
            out[key] = levels
        elif key == "text_matches":
            if not isinstance(raw, str) or not raw or len(raw) > 500:
                raise InvalidInput(f"{here} must be a regular expression of at most 500 characters")
            try:
                regex.compile(raw, regex.IGNORECASE)
            except regex.error as err:
                raise InvalidInput(f"{here}: not a regular expression: {err}") from None
            out[key] = raw
        elif key == "contact_attribute":
            if not isinstance(raw, Mapping) or not raw:
                raise InvalidInput(f"{here} must be an object of attribute: value(s)")
            attrs = {}
            for name, wanted in raw.items():
                values = wanted if isinstance(wanted, list) else [wanted]
                if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                    raise InvalidInput(f"{here}.{name}: values must be strings, numbers or booleans")
                attrs[str(name)] = [_attr(v) for v in values]
            out[key] = attrs
        else:  # business_hours
            if not isinstance(raw, bool):
                raise InvalidInput(f"{here} must be true or false")
            out[key] = raw
    return out


def _attr(value: Any) -> str:
    """Attribute values compare as text (``true``, ``42``, ``gold``), case-insensitively."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _action(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise InvalidInput(f"{where} must be an object with one action: {', '.join(ACTIONS)}")
    ((kind, arg),) = value.items()
    if kind not in ACTIONS:
        raise InvalidInput(f"{where}: unknown action {kind!r}; known: {', '.join(ACTIONS)}")
    here = f"{where}.{kind}"
    if kind == "set_priority":
        if arg not in Priority.__members__.values():
            raise InvalidInput(f"{here} must be one of urgent, high, normal, low")
    elif kind in ("add_tag", "assign_team", "send_canned"):
        if not isinstance(arg, str) or not arg.strip() or len(arg) > 64:
            raise InvalidInput(f"{here} must be a name of at most 64 characters")
        arg = arg.strip()
    elif kind == "assign_agent":
        if not (isinstance(arg, int) and not isinstance(arg, bool) and arg > 0) and not (
            isinstance(arg, str) and "@" in arg and len(arg) <= 254
        ):
            raise InvalidInput(f"{here} must be a user's e-mail address or id")
    elif kind == "webhook":
        if not (isinstance(arg, int) and not isinstance(arg, bool) and arg > 0):
            raise InvalidInput(f"{here} must be an outgoing webhook endpoint's id")
    elif kind == "add_note":
        if not isinstance(arg, str) or not arg.strip() or len(arg) > MAX_TEXT:
            raise InvalidInput(f"{here} must be text of at most {MAX_TEXT} characters")
    else:  # close_after_silence
        if not isinstance(arg, Mapping) or set(arg) - {"days", "notice", "canned"}:
            raise InvalidInput(f"{here} must be {{days: N, notice: text}} or {{days: N, canned: name}}")
        days = arg.get("days")
        if not _number(days) or not 0 < days <= MAX_SILENCE_DAYS:
            raise InvalidInput(f"{here}.days must be a number of days, 0 < days <= {MAX_SILENCE_DAYS}")
        notice, canned = arg.get("notice"), arg.get("canned")
        if notice is not None and (not isinstance(notice, str) or not notice.strip() or len(notice) > MAX_TEXT):
            raise InvalidInput(f"{here}.notice must be text of at most {MAX_TEXT} characters")
        if canned is not None and (not isinstance(canned, str) or not canned.strip()):
            raise InvalidInput(f"{here}.canned must be a canned reply's name")
        if notice is not None and canned is not None:
            raise InvalidInput(f"{here}: a notice or a canned reply, not both")
        arg = {"days": float(days), **({"notice": notice} if notice else {}), **({"canned": canned} if canned else {})}
    return {kind: arg}


def matches(rule: Rule, facts: Facts) -> bool:
    """Every ``if`` condition holds and no ``unless`` condition does."""
    return all(_holds(key, value, facts) for key, value in rule.conditions.items()) and not any(
        _holds(key, value, facts) for key, value in rule.unless.items()
    )


def _holds(key: str, wanted: Any, facts: Facts) -> bool:
    if key == "channel":
        return facts.channel.lower() in wanted
    if key == "priority":
        return facts.priority in wanted
    if key == "team":
        return facts.team is not None and facts.team.lower() in wanted
    if key == "business_hours":
        return facts.business_hours is wanted
    if key == "contact_tag":
        tags = {tag.lower() for tag in facts.contact_tags}
        return any(tag in tags for tag in wanted)
    if key == "contact_attribute":
        attributes = {str(name): value for name, value in facts.contact_attributes.items()}
        return all(
            name in attributes and attributes[name] is not None and _attr(attributes[name]) in values
            for name, values in wanted.items()
        )
    if key == "text_contains":
        return _contains(facts.text, tuple(wanted))
    if key == "text_matches":
        return _search(wanted, facts.text)
    raise AssertionError(f"unchecked condition {key}")


def _contains(text: str, phrases: tuple[str, ...]) -> bool:
    """Any phrase as whole words, case-insensitively ("refund" matches "Refund!" not "refunded")."""
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", lowered) for phrase in phrases)


def _search(pattern: str, text: str) -> bool:
    """The admin's expression, bounded in time (an unlucky pattern cannot stall a worker)."""
    try:
        return regex.search(pattern, text, regex.IGNORECASE, timeout=REGEX_TIMEOUT) is not None
    except TimeoutError:
        return False
