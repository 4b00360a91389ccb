"""The OpenAPI document and the API's validation are one (issue #13).

What ``tests/hub/test_api_fuzz.py`` found, one test per class: statuses the
document did not declare, values it allowed that handlers refused (and the
reverse), text PostgreSQL could not store, a database that is down.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from hub.api.schema import METHODS, openapi_document, operations
from tests.conftest import Hub


async def _conversation(hub: Hub, sender: str = "schema-1") -> tuple[int, int]:
    received = await hub.inbound({"from": sender, "text": "hello", "id": f"{sender}-m1", "name": "Ada"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return message["conversation_id"], message["contact_id"]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                parameters = [*item.get("parameters", []), *item[method].get("parameters", [])]
                found.append((method.upper(), path, item[method], parameters))
    return found


@pytest.mark.asyncio
async def test_every_operation_declares_the_errors_it_can_give(sqlite_hub: Hub) -> None:
    served = await (await sqlite_hub.client.get("/api/v1/openapi.json")).json()
    assert {k: v for k, v in served.items() if k != "servers"} == openapi_document()
    error_responses = {
        name
        for name, response in served["components"]["responses"].items()
        if response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    }
    for method, path, operation, parameters in _operations(served):
        responses = operation["responses"]
        label = f"{method} {path}"
        protected = operation.get("security", served["security"]) != []
        wanted = set()
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
            wanted.add("503")
        if protected:
            wanted |= {"401", "403"}
        if parameters or "requestBody" in operation:
            wanted.add("400")
        if "{" in path:
            wanted.add("404")
        if "requestBody" in operation:
            wanted.add("413")
        assert wanted <= set(responses), (label, wanted - set(responses))
        for status, response in responses.items():
            if int(status) >= 400 and path.startswith("/api/"):
                ref = response.get("$ref", "").rpartition("/")[2]
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                assert ref in error_responses or schema == {"$ref": "#/components/schemas/Error"}, (label, status)
    # The validator reads the same document: one operation for each.
    assert set(operations()) == {(m, p) for m, p, _, _ in _operations(served)}


@pytest.mark.asyncio
async def test_undocumented_input_is_a_400_naming_the_field_and_where(sqlite_hub: Hub) -> None:
    hub = sqlite_hub
    conversation_id, contact_id = await _conversation(hub)
    cases: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
        # PATCH with nothing, or with a field the operation does not have.
        ("PATCH", f"/api/v1/contacts/{contact_id}", {}, {"in": "body"}, "nothing to change"),
        ("PATCH", f"/api/v1/contacts/{contact_id}", {"nmae": "x"}, {"in": "body"}, "unknown fields ('nmae')"),
        ("PATCH", f"/api/v1/conversations/{conversation_id}", {}, {"in": "body"}, "nothing to change"),
        ("PATCH", f"/api/v1/contacts/{contact_id}", {"tags": ["a", 1]}, {"in": "body", "field": "tags[1]"}, "'tags[1]' must be a string"),
        ("PATCH", f"/api/v1/contacts/{contact_id}", {"attributes": {"plan": {"a": 1}}}, {"in": "body", "field": "attributes.plan"}, "'attributes.plan' must be a string or a number"),
        ("POST", f"/api/v1/conversations/{conversation_id}/notes", {"text": "ok", "extra": 1}, {"in": "body"}, "unknown fields ('extra')"),
        ("POST", f"/api/v1/conversations/{conversation_id}/notes", {}, {"in": "body", "field": "text"}, "'text' is required"),
        # A rule's params follow its kind.
        ("POST", "/api/v1/routing/rules", {"kind": "keyword", "params": {"hours": 1, "count": 2}, "priority": "high"}, {"in": "body", "field": "params.words"}, "'params.words' is required"),
        ("POST", "/api/v1/routing/rules", {"kind": "repeat", "params": {"hours": 0, "count": 2}, "priority": "high"}, {"in": "body", "field": "params.hours"}, "'params.hours' must be between 0 and 8760"),
    ]  # fmt: skip
    for method, path, payload, details, reason in cases:
        body = await hub.api(method, path, json=payload, expect=400)
        assert reason in body["error"]["message"], (path, payload, body)
        assert body["error"]["details"] == details, (path, payload, body)
    # Query parameters: the document's bounds, and its types.
    for path, params, reason in [
        ("/api/v1/conversations", {"limit": "201"}, "'limit' must be between 1 and 200"),
        ("/api/v1/tickets/queue", {"limit": "501"}, "'limit' must be between 1 and 500"),
        ("/api/v1/conversations", {"assignee": "someone"}, "'assignee' must match"),
        ("/api/v1/kb/suggestions", {"after": "x"}, "'after' must be an integer"),
        ("/api/v1/jobs", {}, "query parameter 'queue' is required"),
    ]:
        body = await hub.api("GET", path, params=params, expect=400)
        assert reason in body["error"]["message"], (path, body)
        assert body["error"]["details"]["in"] == "query"
    # A header the hub keeps.
    body = await hub.api(
        "POST",
        f"/api/v1/conversations/{conversation_id}/notes",
        json={"text": "x"},
        headers={"Idempotency-Key": "with space"},
        expect=201,
    )
    reply = await hub.client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": "x"},
        headers={**hub.auth(), "Idempotency-Key": "with space"},
    )
    assert reply.status == 400 and (await reply.json())["error"]["details"] == {
        "field": "Idempotency-Key",
        "in": "header",
    }
    # A path parameter that names nothing: 404, before any handler.
    body = await hub.api("GET", "/api/v1/agents/someone", expect=404)
    assert body["error"]["details"] == {"field": "id", "in": "path"}
    # Unauthenticated callers learn nothing about the schema: 401 first.
    response = await hub.client.patch(f"/api/v1/contacts/{contact_id}", json={})
    assert response.status == 401


@pytest.mark.asyncio
async def test_what_the_document_allows_the_handlers_take(sqlite_hub: Hub) -> None:
    hub = sqlite_hub
    conversation_id, _ = await _conversation(hub)
    await hub.api("POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", expect=201)
    # Limits up to the document's maximum, per operation.
    assert (await hub.api("GET", "/api/v1/tickets/queue", role="agent", params={"limit": "500"}))["items"]
    await hub.api("GET", "/api/v1/conversations", params={"limit": "200"})
    await hub.api("GET", "/api/v1/audit", params={"limit": "1000"})
    # An empty filter is no filter; a user id beyond 10^12 is an id like any other.
    assert (await hub.api("GET", "/api/v1/tickets", params={"assignee": ""}))["items"]
    assert (await hub.api("GET", "/api/v1/tickets", params={"assignee": "999999999999999999"}))["items"] == []
    assert (await hub.api("GET", "/api/v1/conversations", params={"assignee": ""}))["items"]
    # A status another queue has matches nothing in this one.
    assert (await hub.api("GET", "/api/v1/jobs", params={"queue": "bot", "status": "delivered"}))["items"] == []
    # Every rule form the document describes is taken.
    for rule in (
        {"kind": "keyword", "params": {"words": ["refund"]}, "priority": "high"},
        {"kind": "attribute", "params": {"key": "plan", "values": ["gold", 3, True, None]}, "priority": "urgent"},
        {"kind": "repeat", "params": {"hours": 0.5, "count": 2}, "priority": "normal", "team": None, "handoff": False},
        # JSON Schema's integer takes 81.0: so does the handler.
        {"kind": "repeat", "params": {"hours": 2.0, "count": 81.0}, "priority": "low"},
    ):
        await hub.api("POST", "/api/v1/routing/rules", json=rule, expect=201)
    # A collection outside the document's names is a 400 naming it, not a surprise deeper down.
    body = await hub.api("GET", "/api/v1/kb/articles", params={"collection": ""}, expect=400)
    assert body["error"]["details"] == {"field": "collection", "in": "query"}
    body = await hub.api("GET", "/api/v1/kb/articles", params={"collection": "search"}, expect=400)
    assert "reserved" in body["error"]["message"]


@pytest.mark.asyncio
async def test_nul_characters_are_stored_as_replacement_characters(hub: Hub) -> None:
    """PostgreSQL refuses NUL in text: a name, a note or a search holding one was a 500 there."""
    conversation_id, contact_id = await _conversation(hub, "nul-1")
    contact = await hub.api(
        "PATCH", f"/api/v1/contacts/{contact_id}", json={"name": "A\x00da", "attributes": {"k\x00": "v\x00"}}
    )
    assert contact["name"] == "A\ufffdda" and contact["attributes"] == {"k\ufffd": "v\ufffd"}
    note = await hub.api("POST", f"/api/v1/conversations/{conversation_id}/notes", json={"text": "a\x00b"}, expect=201)
    assert note["body"] == "a\ufffdb"
    assert (await hub.api("GET", "/api/v1/contacts", params={"q": "A\x00da"}))["items"][0]["id"] == contact_id
    await hub.api("GET", "/api/v1/audit", params={"action": "a\x00b", "target_id": "\x00"})
    received = await hub.inbound({"from": "nul-2", "text": "hi\x00", "id": "nul-2\x00", "name": "N\x00"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    assert message["body"] == "hi\ufffd"


@pytest.mark.asyncio
async def test_a_database_that_cannot_answer_is_a_503_with_retry_after(
    sqlite_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = sqlite_hub

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(hub.db, "read", down)
    response = await hub.client.get("/api/v1/conversations", headers=hub.auth())
    body = await response.json()
    assert response.status == 503 and body["error"]["code"] == "unavailable", body
    assert int(response.headers["Retry-After"]) >= 1
