"""Identity resolution, merge, export and erasure, over every storage backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub.conversations.contacts import normalise_address
from hub.errors import InvalidInput
from hub.storage.schema import metadata
from tests.conftest import Hub


def test_addresses_are_normalised() -> None:
    assert normalise_address("email", "  Ada@Example.COM ") == "ada@example.com"
    assert normalise_address("phone", "+1 (415) 555-0100") == "+14155550100"
    assert normalise_address("phone", "020 7946 0958", default_region="GB") == "+442079460958"
    with pytest.raises(InvalidInput):
        normalise_address("email", "not-an-address")
    with pytest.raises(InvalidInput):
        normalise_address("phone", "12")


async def _contact_of(hub: Hub, message_id: int) -> int:
    return (await hub.api("GET", f"/api/v1/messages/{message_id}"))["contact_id"]


@pytest.mark.asyncio
async def test_merge_keeps_every_message_in_order(hub: Hub) -> None:
    # Two people-records that are the same person, their messages interleaved in time.
    sent = []
    for index, sender in enumerate(["chat-visitor", "ada-sms", "chat-visitor", "ada-sms", "chat-visitor"]):
        body = await hub.inbound({"from": sender, "text": f"message {index}", "id": f"m{index}"})
        sent.append(body["received"][0]["message_id"])
    visitor = await _contact_of(hub, sent[0])
    sms = await _contact_of(hub, sent[1])
    assert visitor != sms

    merged = await hub.api("POST", f"/api/v1/contacts/{sms}/merge", role="agent", json={"source_id": visitor})
    assert merged["id"] == sms
    await hub.api("GET", f"/api/v1/contacts/{visitor}", expect=404)

    page = await hub.api("GET", f"/api/v1/contacts/{sms}/timeline", params={"limit": 50})
    customer = [m for m in page["items"] if m["kind"] == "message"]
    assert [m["body"] for m in customer] == [f"message {i}" for i in range(5)]
    assert [m["id"] for m in customer] == sent
    events = [m for m in page["items"] if m["kind"] == "event"]
    assert events and events[-1]["meta"]["event"] == "contacts-merged"
    # Both conversations now belong to the merged contact.
    conversations = await hub.api("GET", "/api/v1/conversations", params={"contact_id": sms})
    assert len(conversations["items"]) == 2
    audit = await hub.api("GET", "/api/v1/audit")
    assert any(e["action"] == "contact.merge" for e in audit["items"])


@pytest.mark.asyncio
async def test_verified_email_links_chat_to_existing_contact(hub: Hub) -> None:
    first = await hub.inbound(
        {"from": "sms-person", "text": "hi", "id": "e1", "hints": {"email": "Ada@Example.com"}, "hints_verified": True}
    )
    ada = await _contact_of(hub, first["received"][0]["message_id"])
    # Same person shows up on another address, vouching for the same e-mail.
    second = await hub.inbound(
        {
            "from": "visitor-77",
            "text": "it's me again",
            "id": "e2",
            "hints": {"email": "ada@example.com"},
            "hints_verified": True,
        }
    )
    assert await _contact_of(hub, second["received"][0]["message_id"]) == ada
    contact = await hub.api("GET", f"/api/v1/contacts/{ada}")
    assert contact["email"] == "ada@example.com"
    # An unverified claim never merges: it is kept as an attribute only.
    third = await hub.inbound(
        {"from": "visitor-99", "text": "I am Ada, honest", "id": "e3", "hints": {"email": "ada@example.com"}}
    )
    other = await _contact_of(hub, third["received"][0]["message_id"])
    assert other != ada
    assert (await hub.api("GET", f"/api/v1/contacts/{other}"))["attributes"]["email_unverified"] == "ada@example.com"


@pytest.mark.asyncio
async def test_export_contains_everything(hub: Hub) -> None:
    r = await hub.inbound({"from": "exporter", "text": "my data please", "id": "x1", "name": "Eve"})
    contact_id = await _contact_of(hub, r["received"][0]["message_id"])
    await hub.api("GET", f"/api/v1/contacts/{contact_id}/export", role="agent", expect=403)
    data = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
    assert data["contact"]["name"] == "Eve"
    assert [i["address"] for i in data["identities"]] == ["exporter"]
    assert [m["body"] for m in data["messages"]] == ["my data please"]
    assert len(data["conversations"]) == 1
    # Tickets, their history (timeline events) and the audit entries about them.
    conversation_id = data["conversations"][0]["id"]
    ticket = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json={"priority": "high"}, expect=201
    )
    await hub.api("PATCH", f"/api/v1/contacts/{contact_id}", role="agent", json={"tags": ["vip"]})
    data = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
    assert [t["id"] for t in data["tickets"]] == [ticket["id"]] and data["tickets"][0]["priority"] == "high"
    assert any(m["meta"].get("event") == "ticket-opened" for m in data["messages"])
    actions = {(a["action"], a["target_type"]) for a in data["audit"]}
    assert ("ticket.handoff", "conversation") in actions and ("contact.update", "contact") in actions


@pytest.mark.asyncio
async def test_erased_contact_is_gone_from_every_table(hub: Hub) -> None:
    r = await hub.inbound(
        {
            "from": "forget-me",
            "text": "secret words",
            "id": "f1",
            "name": "Frank Forget",
            "hints": {"email": "frank@example.com"},
            "hints_verified": True,
        }
    )
    message_id = r["received"][0]["message_id"]
    contact_id = await _contact_of(hub, message_id)
    conversation_id = (await hub.api("GET", f"/api/v1/messages/{message_id}"))["conversation_id"]
    await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/messages",
        role="agent",
        json={"text": "noted, Frank"},
        expect=201,
    )
    await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/notes",
        role="agent",
        json={"text": "Frank is upset"},
        expect=201,
    )
    await hub.api("PATCH", f"/api/v1/contacts/{contact_id}", role="agent", json={"tags": ["vip"]})
    ticket = await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/handoff",
        role="agent",
        json={"reason": "Frank asked"},
        expect=201,
    )
    me = await hub.api("GET", "/api/v1/me")
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/assign", json={"assignee_id": me["id"]})
    assert (await hub.api("GET", f"/api/v1/agents/{me['id']}"))["open_tickets"] == 1
    # A Slack job of the kind queued before jobs named their message: it
    # carried the customer's text.
    from hub.slack import jobs as slack_jobs

    await hub.db.write(
        slack_jobs.enqueue, "thread", {"text": "*Frank Forget*: secret words"}, ticket_id=ticket["id"], dedup_key="t:f1"
    )
    other = await hub.inbound({"from": "someone-else", "text": "unrelated", "id": "f2"})

    await hub.api("DELETE", f"/api/v1/contacts/{contact_id}", role="agent", expect=403)
    result = await hub.api("DELETE", f"/api/v1/contacts/{contact_id}")
    assert result["deleted"]["messages"] >= 3 and result["deleted"]["identities"] == 2
    assert result["deleted"]["tickets"] == 1 and result["deleted"]["slack_jobs"] == 1
    admin = await hub.api("GET", "/api/v1/me")
    assert (await hub.api("GET", f"/api/v1/agents/{admin['id']}"))["open_tickets"] == 0  # the erased ticket freed

    needles = ("forget-me", "Frank", "frank@example.com", "secret words")

    def scan(conn: sa.Connection) -> list[str]:
        hits = []
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                text = " ".join(str(v) for v in row)
                hits += [f"{table.name}: {n}" for n in needles if n in text]
        return hits

    assert await hub.db.read(scan) == []
    await hub.api("GET", f"/api/v1/contacts/{contact_id}", expect=404)
    # The other contact is untouched.
    assert (await hub.api("GET", f"/api/v1/messages/{other['received'][0]['message_id']}"))["body"] == "unrelated"


async def _handoff(hub: Hub, message_id: int) -> dict:
    conversation_id = (await hub.api("GET", f"/api/v1/messages/{message_id}"))["conversation_id"]
    return await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json={"reason": "help"}, expect=201
    )


@pytest.mark.asyncio
async def test_merge_moves_the_merged_contacts_tickets(hub: Hub) -> None:
    kept = await hub.inbound({"from": "keeper", "text": "hello", "id": "k1"})
    gone = await hub.inbound({"from": "merged-away", "text": "my parcel is lost", "id": "k2"})
    target = await _contact_of(hub, kept["received"][0]["message_id"])
    source = await _contact_of(hub, gone["received"][0]["message_id"])
    ticket = await _handoff(hub, gone["received"][0]["message_id"])
    await hub.api("POST", f"/api/v1/contacts/{target}/merge", role="agent", json={"source_id": source})
    moved = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
    assert moved["contact_id"] == target and moved["status"] == "open"
    conversation = await hub.api("GET", f"/api/v1/conversations/{moved['conversation_id']}")
    assert conversation["contact_id"] == target and conversation["handler"] == "human"


@pytest.mark.asyncio
async def test_auto_merge_through_a_verified_hint_keeps_tickets(hub: Hub) -> None:
    older = await hub.inbound(
        {"from": "ada-sms", "text": "hi", "id": "a1", "hints": {"email": "ada@example.com"}, "hints_verified": True}
    )
    ada = await _contact_of(hub, older["received"][0]["message_id"])
    chat = await hub.inbound({"from": "ada-chat", "text": "my card was stolen", "id": "a2"})
    ticket = await _handoff(hub, chat["received"][0]["message_id"])
    # The chat visitor signs in: the same verified address merges the newer contact into Ada.
    again = await hub.inbound(
        {
            "from": "ada-chat",
            "text": "it's me",
            "id": "a3",
            "hints": {"email": "ada@example.com"},
            "hints_verified": True,
        }
    )
    assert await _contact_of(hub, again["received"][0]["message_id"]) == ada
    kept = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
    assert kept["contact_id"] == ada and kept["status"] == "open"


def test_every_foreign_key_to_contacts_is_handled_by_merge_and_erasure() -> None:
    from hub.conversations.contacts import contact_references, unhandled_contact_references

    assert unhandled_contact_references() == []
    found = {f"{c.table.name}.{c.name}" for c in contact_references()}
    assert {"identities.contact_id", "conversations.contact_id", "messages.contact_id", "tickets.contact_id"} <= found
    # The next table that points at contacts is reported until it is handled.
    schema = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(schema)
    sa.Table(
        "contact_notes",
        schema,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id")),
    )
    assert unhandled_contact_references(schema) == ["contact_notes.contact_id"]
