"""The shared ingest path, over every storage backend."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Hub, wait_for


@pytest.mark.asyncio
async def test_inbound_message_lands_on_timeline(hub: Hub) -> None:
    body = await hub.inbound({"from": "visitor-1", "text": "Hello, where is my order?", "id": "ext-1", "name": "Ada"})
    [received] = body["received"]
    assert received["duplicate"] is False
    message = await hub.api("GET", f"/api/v1/messages/{received['message_id']}")
    assert message["body"] == "Hello, where is my order?"
    assert message["direction"] == "inbound" and message["author_kind"] == "customer"
    contact = await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}")
    assert contact["name"] == "Ada"
    conversation = await hub.api("GET", f"/api/v1/conversations/{message['conversation_id']}")
    assert conversation["status"] == "open" and conversation["handler"] == "bot"


@pytest.mark.asyncio
async def test_retried_delivery_is_stored_once(hub: Hub) -> None:
    from hub.events import MessageReceived

    published: list[MessageReceived] = []

    async def record(event: MessageReceived) -> None:
        published.append(event)

    hub.service.bus.subscribe(MessageReceived, record)
    payload = {"from": "visitor-2", "text": "Refund please", "id": "provider-42"}
    first = (await hub.inbound(payload))["received"][0]
    # The provider retries, sequentially and concurrently.
    second = (await hub.inbound(payload))["received"][0]
    concurrent = await asyncio.gather(*(hub.inbound(payload) for _ in range(5)))
    assert second == {"message_id": first["message_id"], "duplicate": True}
    assert all(r["received"][0]["message_id"] == first["message_id"] for r in concurrent)
    message = await hub.api("GET", f"/api/v1/messages/{first['message_id']}")
    page = await hub.api("GET", f"/api/v1/conversations/{message['conversation_id']}/timeline")
    assert [m["body"] for m in page["items"]] == ["Refund please"]
    assert len(published) == 1


@pytest.mark.asyncio
async def test_same_sender_continues_conversation_new_sender_gets_own(hub: Hub) -> None:
    a1 = (await hub.inbound({"from": "a", "text": "one", "id": "a1"}))["received"][0]
    a2 = (await hub.inbound({"from": "a", "text": "two", "id": "a2"}))["received"][0]
    b1 = (await hub.inbound({"from": "b", "text": "other", "id": "b1"}))["received"][0]
    m = [await hub.api("GET", f"/api/v1/messages/{r['message_id']}") for r in (a1, a2, b1)]
    assert m[0]["conversation_id"] == m[1]["conversation_id"] != m[2]["conversation_id"]
    assert m[0]["contact_id"] == m[1]["contact_id"] != m[2]["contact_id"]


@pytest.mark.asyncio
async def test_resolved_conversation_reopens_within_window(hub: Hub) -> None:
    first = (await hub.inbound({"from": "c", "text": "hi", "id": "c1"}))["received"][0]
    msg = await hub.api("GET", f"/api/v1/messages/{first['message_id']}")
    await hub.api("PATCH", f"/api/v1/conversations/{msg['conversation_id']}", role="agent", json={"status": "resolved"})
    again = (await hub.inbound({"from": "c", "text": "one more thing", "id": "c2"}))["received"][0]
    msg2 = await hub.api("GET", f"/api/v1/messages/{again['message_id']}")
    assert msg2["conversation_id"] == msg["conversation_id"]
    conversation = await hub.api("GET", f"/api/v1/conversations/{msg['conversation_id']}")
    assert conversation["status"] == "open" and conversation["resolved_at"] is None
    page = await hub.api("GET", f"/api/v1/conversations/{msg['conversation_id']}/timeline")
    events = [m["meta"].get("event") for m in page["items"] if m["kind"] == "event"]
    assert events == ["status-changed", "reopened"]


@pytest.mark.asyncio
async def test_forged_signature_is_rejected_and_nothing_stored(hub: Hub) -> None:
    await hub.inbound({"from": "mallory", "text": "hi", "id": "m1"}, secret="wrong-secret", expect=401)
    raw = b'{"from": "mallory", "text": "unsigned"}'
    response = await hub.client.post("/channels/fake/webhook", data=raw)
    assert response.status == 401
    assert (await response.json())["error"]["message"] == "unauthorized"
    contacts = await hub.api("GET", "/api/v1/contacts", params={"q": "mallory"})
    assert contacts["items"] == []


@pytest.mark.asyncio
async def test_malformed_webhook_payload_gets_400_with_reason(hub: Hub) -> None:
    from channels.fake import sign
    from tests.conftest import FAKE_SECRET

    for raw, reason in [
        (b"{not json", "not valid JSON"),
        (b'{"text": "no sender"}', "'from' must be a non-empty string"),
        (b'{"from": "x", "text": 5}', "'text' must be a string"),
    ]:
        response = await hub.client.post("/channels/fake/webhook", data=raw, headers=sign(FAKE_SECRET, raw))
        body = await response.json()
        assert response.status == 400, body
        assert reason in body["error"]["message"]


@pytest.mark.asyncio
async def test_outbound_reply_is_delivered_through_outbox(hub: Hub) -> None:
    first = (await hub.inbound({"from": "d", "text": "hello", "id": "d1"}))["received"][0]
    msg = await hub.api("GET", f"/api/v1/messages/{first['message_id']}")
    reply = await hub.api(
        "POST",
        f"/api/v1/conversations/{msg['conversation_id']}/messages",
        role="agent",
        json={"text": "Hi! How can I help?"},
        expect=201,
    )
    assert reply["author_kind"] == "agent" and reply["delivery_status"] == "queued"
    recorder = hub.channel("fake").recorder
    await wait_for(lambda: len(recorder.sent) == 1)
    assert recorder.sent[0].to == "d" and recorder.sent[0].text == "Hi! How can I help?"
    delivered = await wait_for(lambda: _status(hub, reply["id"], "delivered"))
    assert delivered


async def _status(hub: Hub, message_id: int, wanted: str) -> bool:
    message = await hub.api("GET", f"/api/v1/messages/{message_id}")
    return message["delivery_status"] == wanted
