"""Canned reply bodies: Jinja templates over a few variables, checked when
saved and rendered in a sandbox.

A body may use ``{{ contact.first_name }}``, ``{{ contact.name }}``,
``{{ ticket.id }}``, ``{{ ticket.priority }}``, ``{{ agent.name }}``,
``{{ agent.first_name }}`` and ``{{ conversation.id }}``, a handful of text
filters (``upper``, ``default``, ``truncate``...) and ``{% if %}``. What it
may not use is refused when the reply is saved (``check``, a 400 that names
it), not discovered when an agent sends it:

- an unknown variable or field (``{{ contact.email }}``, ``{{ order }}``);
- attribute or method access beyond those fields (``{{ ''.__class__ }}``),
  calls, loops, macros, imports and includes, assignments, and the ``*`` and
  ``**`` operators: nothing can walk Python's object graph or make a
  rendering grow beyond the body's own size;
- a syntax error (with its line).

Rendering (``render``) runs in Jinja's ``SandboxedEnvironment`` with no
globals (no ``range``, ``lipsum``, ``namespace``...) and only the allowed
filters, checks the body again (a row written before a rule tightened), and
refuses an output longer than ``MAX_OUTPUT``. A variable with no value (a
contact without a name, a conversation without a ticket) renders empty.
Autoescape is off: replies are plain text, sent as the customer's channel
sends text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from hub.errors import InvalidInput

# The variables and their fields: nothing else may be named.
VARIABLES: dict[str, tuple[str, ...]] = {
    "contact": ("first_name", "name"),
    "ticket": ("id", "priority"),
    "agent": ("name", "first_name"),
    "conversation": ("id",),
}
# Filters that only reshape a short value (none repeats or pads it).
FILTERS = ("capitalize", "d", "default", "lower", "replace", "string", "title", "trim", "truncate", "upper")
MAX_BODY = 10_000
MAX_OUTPUT = 20_000

# Nodes a body may hold; Name, Getattr and Getitem are checked on their own.
_ALLOWED = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Filter,
    nodes.Test,
    nodes.If,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Concat,
    nodes.Add,
    nodes.Sub,
    nodes.Neg,
    nodes.Pos,
    nodes.Keyword,
)

_ENVIRONMENT = SandboxedEnvironment(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=True)
_ENVIRONMENT.globals.clear()
_ENVIRONMENT.filters = {name: _ENVIRONMENT.filters[name] for name in FILTERS}


def allowed_names() -> list[str]:
    return [f"{variable}.{name}" for variable, names in VARIABLES.items() for name in names]


def check(body: str) -> None:
    """Refuse (``InvalidInput``, ``details.field == "body"``) a body that does
    not parse or uses anything but the allowed variables, filters and tags."""
    if len(body) > MAX_BODY:
        raise InvalidInput(f"'body' is longer than {MAX_BODY} characters", details={"field": "body"})
    try:
        tree = _ENVIRONMENT.parse(body)
    except TemplateSyntaxError as err:
        raise InvalidInput(
            f"template syntax error on line {err.lineno}: {err.message}", details={"field": "body"}
        ) from err
    unknown: set[str] = set()
    refused: set[str] = set()
    for problem, what in _problems(tree):
        (unknown if problem == "unknown" else refused).add(what)
    if refused:  # first: a loop's own variable is no use to name as unknown
        raise InvalidInput(
            f"the template uses what canned replies do not allow: {', '.join(sorted(refused))}",
            details={"field": "body", "refused": sorted(refused)},
        )
    if unknown:
        names = ", ".join(sorted(unknown))
        raise InvalidInput(
            f"unknown variables in the template: {names}; a canned reply may use {', '.join(allowed_names())}",
            details={"field": "body", "unknown": sorted(unknown)},
        )


def _problems(node: nodes.Node) -> Iterator[tuple[str, str]]:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        yield from _field(node)
        return
    if isinstance(node, nodes.Name):
        if node.name in VARIABLES:
            yield "unknown", f"{node.name} (name one of its fields)"
        else:
            yield "unknown", node.name
        return
    if not isinstance(node, _ALLOWED):
        yield "refused", _describe(node)  # and what is inside it, named too
    elif isinstance(node, nodes.Filter) and node.name not in FILTERS:
        yield "refused", f"the filter '{node.name}'"
    for child in node.iter_child_nodes():
        yield from _problems(child)


def _field(node: nodes.Getattr | nodes.Getitem) -> Iterator[tuple[str, str]]:
    """``variable.field`` (or ``variable['field']``) of a known variable, nothing deeper."""
    if isinstance(node, nodes.Getattr):
        field: Any = node.attr
    else:
        field = node.arg.value if isinstance(node.arg, nodes.Const) else None
    base = node.node
    if isinstance(field, str) and field.startswith("_"):
        yield "refused", f"the attribute '{field}'"
        return
    if not isinstance(base, nodes.Name) or not isinstance(field, str):
        yield "refused", "attribute or item access other than variable.field"
        return
    if base.name not in VARIABLES:
        yield "unknown", base.name
    elif field not in VARIABLES[base.name]:
        yield "unknown", f"{base.name}.{field}"


def _describe(node: nodes.Node) -> str:
    names = {
        nodes.For: "loops ({% for %})",
        nodes.Macro: "macros",
        nodes.CallBlock: "call blocks",
        nodes.Call: "calls",
        nodes.Include: "includes",
        nodes.Import: "imports",
        nodes.FromImport: "imports",
        nodes.Extends: "extends",
        nodes.Block: "blocks",
        nodes.Assign: "assignments ({% set %})",
        nodes.AssignBlock: "assignments ({% set %})",
        nodes.Mul: "the * operator",
        nodes.Pow: "the ** operator",
    }
    return names.get(type(node), f"{type(node).__name__} nodes")


def render(body: str, variables: Mapping[str, Mapping[str, Any]]) -> str:
    """``body`` rendered with ``variables`` (``{"contact": {...}, ...}``); a
    missing value renders empty. ``InvalidInput`` for a body ``check``
    refuses, a rendering error, or an output longer than ``MAX_OUTPUT``."""
    check(body)
    values = {name: {field: variables.get(name, {}).get(field) for field in VARIABLES[name]} for name in VARIABLES}
    cleaned = {name: {k: ("" if v is None else v) for k, v in fields.items()} for name, fields in values.items()}
    try:
        text = _ENVIRONMENT.from_string(body).render(cleaned)
    except TemplateError as err:  # SecurityError included
        raise InvalidInput(f"the reply could not be rendered: {err}", details={"field": "body"}) from err
    if len(text) > MAX_OUTPUT:
        raise InvalidInput(f"the rendered reply is longer than {MAX_OUTPUT} characters", details={"field": "body"})
    return text


def first_name(name: str | None) -> str:
    """The first word of a name ("Ada Lovelace" -> "Ada"); empty for none."""
    return (name or "").strip().split(maxsplit=1)[0] if (name or "").strip() else ""
