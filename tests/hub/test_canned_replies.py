"""Canned replies (issue #17): the sandboxed templates, the API (roles,
validation, audit, preview) and ``/hub reply`` from Slack end to end, on
every storage backend."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from hub.canned import templates
from hub.errors import InvalidInput
from hub.storage.schema import audit_log
from tests.channels.test_slack import (  # noqa: F401 - slack_api and slack_hub are fixtures
    AGENT_SLACK,
    OTHER_SLACK,
    bot_handoff,
    customer_conversation,
    make_agent,
    posted_card,
    send_signed,
    slack_api,
    slack_hub,
)
from tests.conftest import Hub, wait_for
from tests.fakes.slack_api import FakeSlackApi, command_body, message_shortcut_body, view_submission_body

GREETING = (
    "Hi {{ contact.first_name|default('there', true) }}, this is {{ agent.first_name }} ({{ agent.name }}) "
    "about ticket #{{ ticket.id }} [{{ ticket.priority|upper }}] in conversation {{ conversation.id }}."
)
VALUES: dict[str, dict[str, Any]] = {
    "contact": {"first_name": "Ada", "name": "Ada Lovelace"},
    "ticket": {"id": 42, "priority": "high"},
    "agent": {"name": "Grace Hopper", "first_name": "Grace"},
    "conversation": {"id": 7},
}


# --- templates ------------------------------------------------------------------------


def test_variables_are_filled() -> None:
    assert templates.render(GREETING, VALUES) == (
        "Hi Ada, this is Grace (Grace Hopper) about ticket #42 [HIGH] in conversation 7."
    )
    assert templates.render("{% if contact.name %}Dear {{ contact['name'] }}{% else %}Hello{% endif %}", VALUES) == (
        "Dear Ada Lovelace"
    )


def test_missing_values_render_empty() -> None:
    assert templates.render(GREETING, {"agent": {"name": "Grace Hopper"}}) == (
        "Hi there, this is  (Grace Hopper) about ticket # [] in conversation ."
    )


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        ("{{ ''.__class__ }}", "__class__"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "__"),
        ("{{ contact.name.__class__ }}", "__class__"),
        ("{{ contact.name.upper() }}", "calls"),
        ("{{ cycler.__init__.__globals__ }}", "__"),
        ("{% for i in range(100000000) %}x{% endfor %}", "loops"),
        ("{{ 'a' * 1000000000 }}", "the * operator"),
        ("{{ 9 ** 99999999 }}", "the ** operator"),
        ("{{ contact.name|center(1000000000) }}", "the filter 'center'"),
        ("{% set x = 1 %}", "assignments"),
        ("{% include 'x' %}", "includes"),
        ("{% macro m() %}{% endmacro %}", "macros"),
    ],
)
def test_sandbox_escapes_and_unbounded_work_are_refused(body: str, refused: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        templates.check(body)
    assert refused in caught.value.message and caught.value.details["field"] == "body"
    with pytest.raises(InvalidInput):
        templates.render(body, VALUES)  # rendering checks again


def test_unknown_variables_are_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        templates.check("Hi {{ contact.email }} {{ order.number }} {{ ticket.id }} {{ range }}")
    assert caught.value.details["unknown"] == ["contact.email", "order", "range"]
    assert "contact.email" in caught.value.message and "contact.first_name" in caught.value.message


def test_syntax_errors_say_where() -> None:
    with pytest.raises(InvalidInput, match="syntax error on line 2"):
        templates.check("Hello\n{{ contact.name ")


def test_output_is_bounded() -> None:
    body = "{{ contact.name|replace('a', '" + "b" * 5000 + "') }}"
    with pytest.raises(InvalidInput, match="longer than"):
        templates.render(body, {"contact": {"name": "a" * 10}})


# --- the API ------------------------------------------------------------------------------


async def _audits(hub: Hub, action: str) -> list[tuple[str, str]]:
    def read(conn: sa.Connection) -> list[tuple[str, str]]:
        found = conn.execute(sa.select(audit_log.c.action, audit_log.c.target_id).where(audit_log.c.action == action))
        return [(r.action, r.target_id) for r in found]

    return await hub.db.read(read)


@pytest.mark.asyncio
async def test_api_roles_validation_and_audit(hub: Hub) -> None:
    reply = {"name": "greeting", "title": "Greeting", "body": GREETING}
    await hub.api("POST", "/api/v1/canned-replies", role="agent", json=reply, expect=403)
    await hub.api("GET", "/api/v1/canned-replies", role="viewer", expect=403)
    created = await hub.api("POST", "/api/v1/canned-replies", json=reply, expect=201)
    assert created["name"] == "greeting" and created["team"] is None and created["body"] == GREETING
    await hub.api("POST", "/api/v1/canned-replies", json=reply, expect=409)
    wrong = await hub.api(
        "POST", "/api/v1/canned-replies", json={**reply, "name": "x", "body": "Hi {{ contact.email }}"}, expect=400
    )
    assert "contact.email" in wrong["error"]["message"] and wrong["error"]["details"]["unknown"] == ["contact.email"]
    broken = await hub.api("POST", "/api/v1/canned-replies", json={**reply, "name": "y", "body": "{{ x"}, expect=400)
    assert "syntax error" in broken["error"]["message"]
    escape = await hub.api(
        "POST", "/api/v1/canned-replies", json={**reply, "name": "z", "body": "{{ ''.__class__ }}"}, expect=400
    )
    assert "__class__" in escape["error"]["message"]
    await hub.api("POST", "/api/v1/canned-replies", json={**reply, "name": "Not A Slug"}, expect=400)
    await hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "billing-hello", "title": "Billing", "body": "Hello from billing", "team": "billing"},
        expect=201,
    )

    listed = await hub.api("GET", "/api/v1/canned-replies", role="agent")
    assert [r["name"] for r in listed["items"]] == ["billing-hello", "greeting"]
    support = await hub.api("GET", "/api/v1/canned-replies", role="agent", params={"team": "support"})
    assert [r["name"] for r in support["items"]] == ["greeting"]
    assert (await hub.api("GET", "/api/v1/canned-replies/greeting", role="agent"))["title"] == "Greeting"
    await hub.api("GET", "/api/v1/canned-replies/nope", role="agent", expect=404)

    await hub.api("PATCH", "/api/v1/canned-replies/greeting", role="agent", json={"title": "Hi"}, expect=403)
    await hub.api("PATCH", "/api/v1/canned-replies/greeting", json={"body": "{{ order }}"}, expect=400)
    changed = await hub.api("PATCH", "/api/v1/canned-replies/greeting", json={"title": "Hello", "team": "support"})
    assert changed["title"] == "Hello" and changed["team"] == "support" and changed["body"] == GREETING
    admin = await hub.api("GET", "/api/v1/me")
    assert changed["updated_by"] == admin["id"]

    await hub.api("DELETE", "/api/v1/canned-replies/billing-hello", role="agent", expect=403)
    await hub.api("DELETE", "/api/v1/canned-replies/billing-hello", expect=204)
    await hub.api("DELETE", "/api/v1/canned-replies/billing-hello", expect=404)
    assert await _audits(hub, "canned_reply.create") == [
        ("canned_reply.create", "greeting"),
        ("canned_reply.create", "billing-hello"),
    ]
    assert await _audits(hub, "canned_reply.update") == [("canned_reply.update", "greeting")]
    assert await _audits(hub, "canned_reply.delete") == [("canned_reply.delete", "billing-hello")]


@pytest.mark.asyncio
async def test_preview_renders_for_the_conversation_and_the_calling_agent(hub: Hub) -> None:
    await hub.api(
        "POST", "/api/v1/canned-replies", json={"name": "greeting", "title": "G", "body": GREETING}, expect=201
    )
    received = await hub.inbound({"from": "ada-1", "text": "help", "id": "ada-1-1", "name": "Ada Lovelace"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    conversation_id = message["conversation_id"]
    ticket = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json={"priority": "high"}, expect=201
    )
    preview = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/canned-replies/greeting/preview", role="agent"
    )
    assert preview == {
        "name": "greeting",
        "conversation_id": conversation_id,
        "text": f"Hi Ada, this is Agent (Agent User) about ticket #{ticket['id']} [HIGH] in conversation {conversation_id}.",
    }
    await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/canned-replies/greeting/preview", role="viewer", expect=403
    )
    await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/canned-replies/nope/preview", role="agent", expect=404
    )
    await hub.api("POST", "/api/v1/conversations/999999/canned-replies/greeting/preview", role="agent", expect=404)
    # A preview sends nothing.
    assert hub.channel("fake").recorder.sent == []


# --- Slack ----------------------------------------------------------------------------


async def _command(hub: Hub, api: FakeSlackApi, text: str, user: str = AGENT_SLACK, **extra: str) -> str:
    before = len(api.of("chat.postEphemeral"))
    body = command_body(user=user, channel="CSUPPORT", text=text)
    if extra:
        from urllib.parse import urlencode

        body += b"&" + urlencode(extra).encode()
    response = await send_signed(hub, body, content_type="application/x-www-form-urlencoded")
    assert response.status == 200
    await wait_for(lambda: len(api.of("chat.postEphemeral")) > before)
    return api.of("chat.postEphemeral")[-1].args["text"]


@pytest.mark.asyncio
async def test_hub_reply_sends_the_rendered_reply_as_the_agent(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    agent_id = await make_agent(slack_hub)
    await slack_hub.api(
        "POST", "/api/v1/canned-replies", json={"name": "greeting", "title": "Greeting", "body": GREETING}, expect=201
    )
    await slack_hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "refund", "title": "Refund policy", "body": "Refunds take 5 days."},
        expect=201,
    )
    conversation_id = await customer_conversation(slack_hub, sender="cust-canned")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])

    listing = await _command(slack_hub, slack_api, "replies")
    assert "`greeting` Greeting" in listing and "`refund` Refund policy" in listing
    unknown = await _command(slack_hub, slack_api, f"reply nosuch #{ticket['id']}")
    assert "No canned reply is named “nosuch”" in unknown and "/hub replies" in unknown
    which = await _command(slack_hub, slack_api, "reply greeting")
    assert "Which ticket?" in which
    assert "Only Servicehub agents" in await _command(
        slack_hub, slack_api, f"reply greeting #{ticket['id']}", user=OTHER_SLACK
    )
    assert slack_hub.channel("fake").recorder.sent == []

    done = await _command(slack_hub, slack_api, f"reply greeting #{ticket['id']}")
    assert done == f"Sent “Greeting” to the customer of ticket #{ticket['id']}."
    expected = (
        f"Hi Ada, this is Agent (Agent User) about ticket #{ticket['id']} [HIGH] in conversation {conversation_id}."
    )
    recorder = slack_hub.channel("fake").recorder
    await wait_for(lambda: [m.text for m in recorder.sent] == [expected])
    assert recorder.sent[0].to == "cust-canned"  # the customer, on their own channel
    page = await slack_hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    [sent] = [m for m in page["items"] if m["author_kind"] == "agent" and m["kind"] == "message"]
    assert sent["body"] == expected and sent["author_id"] == agent_id and sent["meta"]["canned_reply"] == "greeting"
    # Typed outside the thread, so it is mirrored into the ticket's thread like a reply from the console.
    await wait_for(
        lambda: any(
            c.args.get("thread_ts") == ticket["slack_ts"] and expected in c.args.get("text", "")
            for c in slack_api.of("chat.postMessage")
        )
    )
    assert (await slack_hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["first_response_at"] is not None

    # Slack sends the thread (when it does): the ticket comes from it.
    await _command(slack_hub, slack_api, "reply refund", thread_ts=ticket["slack_ts"])
    await wait_for(lambda: [m.text for m in recorder.sent][-1:] == ["Refunds take 5 days."])

    def replies_audited(conn: sa.Connection) -> list[dict]:
        found = conn.execute(
            sa.select(audit_log.c.details, audit_log.c.via).where(audit_log.c.action == "conversation.reply")
        )
        return [{"canned_reply": r.details.get("canned_reply"), "via": r.via} for r in found]

    assert await slack_hub.db.read(replies_audited) == [
        {"canned_reply": "greeting", "via": "slack"},
        {"canned_reply": "refund", "via": "slack"},
    ]


@pytest.mark.asyncio
async def test_message_shortcut_opens_a_modal_and_sends_the_chosen_reply(
    slack_hub: Hub, slack_api: FakeSlackApi
) -> None:
    agent_id = await make_agent(slack_hub)
    await slack_hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "greeting", "title": "Greeting", "body": "Hello {{ contact.first_name }}!"},
        expect=201,
    )
    await slack_hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "billing-only", "title": "Billing", "body": "Billing here.", "team": "billing"},
        expect=201,
    )
    conversation_id = await customer_conversation(slack_hub, sender="cust-shortcut")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])
    thread_message = slack_api.add_user_message(ticket["slack_channel"], "looking", thread_ts=ticket["slack_ts"])

    # On a message of the ticket's thread: a modal listing the team's replies (and every team's).
    shortcut = message_shortcut_body(
        user=AGENT_SLACK,
        channel=ticket["slack_channel"],
        message_ts=thread_message,
        thread_ts=ticket["slack_ts"],
        callback_id="canned_reply",
    )
    assert (await send_signed(slack_hub, shortcut, content_type="application/x-www-form-urlencoded")).status == 200
    await wait_for(lambda: slack_api.of("views.open"))
    view = slack_api.of("views.open")[0].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "canned_reply" and view["private_metadata"] == str(ticket["id"])
    options = view["blocks"][0]["element"]["options"]
    assert [o["value"] for o in options] == ["greeting"]  # the billing team's reply is not offered to support

    submitted = view_submission_body(
        user=AGENT_SLACK,
        callback_id="canned_reply",
        private_metadata=view["private_metadata"],
        values={"reply": {"name": {"type": "static_select", "selected_option": {"value": "greeting"}}}},
    )
    assert (await send_signed(slack_hub, submitted, content_type="application/x-www-form-urlencoded")).status == 200
    recorder = slack_hub.channel("fake").recorder
    await wait_for(lambda: [m.text for m in recorder.sent] == ["Hello Ada!"])
    page = await slack_hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    [sent] = [m for m in page["items"] if m["author_kind"] == "agent" and m["kind"] == "message"]
    assert sent["body"] == "Hello Ada!" and sent["author_id"] == agent_id
    await wait_for(
        lambda: any(
            c.args.get("user") == AGENT_SLACK and "Sent “Greeting”" in c.args.get("text", "")
            for c in slack_api.of("chat.postEphemeral")
        )
    )

    # Anywhere but a ticket: said so, no modal.
    elsewhere = message_shortcut_body(
        user=AGENT_SLACK, channel="CSUPPORT", message_ts="1.000001", thread_ts=None, callback_id="canned_reply"
    )
    await send_signed(slack_hub, elsewhere, content_type="application/x-www-form-urlencoded")
    await wait_for(
        lambda: any("on a ticket's card" in c.args.get("text", "") for c in slack_api.of("chat.postEphemeral"))
    )
    assert len(slack_api.of("views.open")) == 1
