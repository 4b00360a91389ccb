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
    other = await hub.inbound({"from": "someone-else", "text": "unrelated", "id": "f2"})

    await hub.api("DELETE", f"/api/v1/contacts/{contact_id}", role="agent", expect=403)
    result = await hub.api("DELETE", f"/api/v1/contacts/{contact_id}")
    assert result["deleted"]["messages"] >= 3 and result["deleted"]["identities"] == 2

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
