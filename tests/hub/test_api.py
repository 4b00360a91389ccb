"""REST API: auth and roles, JSON errors, pagination, idempotency, OpenAPI."""

from __future__ import annotations

import pytest

from hub.api.ops import openapi_document
from tests.conftest import Hub


async def _conversation(hub: Hub, sender: str = "api-visitor") -> int:
    r = await hub.inbound({"from": sender, "text": "hello", "id": f"{sender}-1"})
    return (await hub.api("GET", f"/api/v1/messages/{r['received'][0]['message_id']}"))["conversation_id"]


@pytest.mark.asyncio
async def test_roles(sqlite_hub: Hub) -> None:
    hub = sqlite_hub
    conversation_id = await _conversation(hub)
    path = f"/api/v1/conversations/{conversation_id}/messages"
    body = await hub.api("POST", path, role="viewer", json={"text": "hi"}, expect=403)
    assert body["error"]["code"] == "forbidden" and "agent" in body["error"]["message"]
    await hub.api("GET", path.replace("/messages", ""), role="viewer")
    await hub.api("POST", path, role="agent", json={"text": "hi"}, expect=201)
    await hub.api("GET", "/api/v1/users", role="agent", expect=403)
    # No token, a garbage token, a revoked token.
    assert (await hub.client.get("/api/v1/conversations")).status == 401
    assert (await hub.client.get("/api/v1/conversations", headers={"Authorization": "Bearer nope"})).status == 401
    me = await hub.api("GET", "/api/v1/me", role="viewer")
    created = await hub.api("POST", f"/api/v1/users/{me['id']}/tokens", json={"name": "temp"}, expect=201)
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 200
    await hub.api("DELETE", f"/api/v1/tokens/{created['id']}")
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 401
    # The viewer's reply attempt stored nothing.
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    assert [m["author_kind"] for m in page["items"]] == ["customer", "agent"]


@pytest.mark.asyncio
async def test_malformed_json_gets_400_with_reason(sqlite_hub: Hub) -> None:
    hub = sqlite_hub
    conversation_id = await _conversation(hub)
    path = f"/api/v1/conversations/{conversation_id}/messages"
    cases = [
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (b'{"text": 42}', "'text' must be str"),
        (b'{"text": "   "}', "empty"),
    ]
    for raw, reason in cases:
        response = await hub.client.post(path, data=raw, headers=hub.auth("agent"))
        body = await response.json()
        assert response.status == 400, (raw, body)
        assert body["error"]["code"] == "invalid_input"
        assert reason in body["error"]["message"], (raw, body)
    bad = await hub.api(
        "PATCH", f"/api/v1/conversations/{conversation_id}", role="agent", json={"status": "closed-ish"}, expect=400
    )
    assert "'status' must be one of" in bad["error"]["message"]
    assert bad["error"]["details"] == {"field": "status", "in": "body"}
    bad = await hub.api("GET", "/api/v1/conversations", params={"limit": "lots"}, expect=400)
    assert "'limit' must be an integer" in bad["error"]["message"]
    missing = await hub.api("GET", "/api/v1/conversations/999999", expect=404)
    assert missing["error"]["code"] == "not_found"
    unknown = await hub.api("GET", "/api/v1/nothing-here", expect=404)
    assert unknown["error"]["code"] == "not_found"


@pytest.mark.asyncio
async def test_reply_idempotency_key(sqlite_hub: Hub) -> None:
    hub = sqlite_hub
    conversation_id = await _conversation(hub)
    path = f"/api/v1/conversations/{conversation_id}/messages"
    first = await hub.api(
        "POST", path, role="agent", json={"text": "once"}, headers={"Idempotency-Key": "k-1"}, expect=201
    )
    again = await hub.api(
        "POST", path, role="agent", json={"text": "once"}, headers={"Idempotency-Key": "k-1"}, expect=201
    )
    assert first["id"] == again["id"]
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    assert [m["body"] for m in page["items"]].count("once") == 1


@pytest.mark.asyncio
async def test_timeline_cursor_pagination(hub: Hub) -> None:
    ids = []
    for i in range(7):
        r = await hub.inbound({"from": "pager", "text": f"m{i}", "id": f"p{i}"})
        ids.append(r["received"][0]["message_id"])
    contact_id = (await hub.api("GET", f"/api/v1/messages/{ids[0]}"))["contact_id"]
    path = f"/api/v1/contacts/{contact_id}/timeline"
    latest = await hub.api("GET", path, params={"limit": 3})
    assert [m["body"] for m in latest["items"]] == ["m4", "m5", "m6"]
    older = await hub.api("GET", path, params={"limit": 3, "before": latest["prev_cursor"]})
    assert [m["body"] for m in older["items"]] == ["m1", "m2", "m3"]
    oldest = await hub.api("GET", path, params={"limit": 3, "before": older["prev_cursor"]})
    assert [m["body"] for m in oldest["items"]] == ["m0"] and oldest["prev_cursor"] is None
    forward = await hub.api("GET", path, params={"limit": 4, "after": oldest["next_cursor"]})
    assert [m["body"] for m in forward["items"]] == ["m1", "m2", "m3", "m4"] and forward["has_more"]
    await hub.inbound({"from": "pager", "text": "m7", "id": "p7"})
    newer = await hub.api("GET", path, params={"after": latest["next_cursor"]})
    assert [m["body"] for m in newer["items"]] == ["m7"] and not newer["has_more"]
    bad = await hub.api("GET", path, params={"after": "garbage!"}, expect=400)
    assert "query parameter 'after' must match" in bad["error"]["message"]
    bad = await hub.api("GET", path, params={"after": "Zm9v"}, expect=400)  # the document's shape, not a cursor
    assert "invalid cursor" in bad["error"]["message"]


@pytest.mark.asyncio
async def test_conversation_filters_and_status_events(hub: Hub) -> None:
    a = await _conversation(hub, "filter-a")
    b = await _conversation(hub, "filter-b")
    me = await hub.api("GET", "/api/v1/me", role="agent")
    await hub.api(
        "PATCH", f"/api/v1/conversations/{a}", role="agent", json={"priority": "urgent", "assignee_id": me["id"]}
    )
    urgent = await hub.api("GET", "/api/v1/conversations", params={"priority": "urgent"})
    assert [c["id"] for c in urgent["items"]] == [a]
    mine = await hub.api("GET", "/api/v1/conversations", role="agent", params={"assignee": "me"})
    assert [c["id"] for c in mine["items"]] == [a]
    unassigned = await hub.api("GET", "/api/v1/conversations", params={"assignee": "none"})
    assert b in [c["id"] for c in unassigned["items"]] and a not in [c["id"] for c in unassigned["items"]]
    await hub.api("POST", f"/api/v1/conversations/{a}/notes", role="agent", json={"text": "VIP, be quick"}, expect=201)
    page = await hub.api("GET", f"/api/v1/conversations/{a}/timeline")
    kinds = [(m["kind"], m["meta"].get("event")) for m in page["items"]]
    assert ("event", "priority-changed") in kinds and ("event", "assignee-changed") in kinds and ("note", None) in kinds


@pytest.mark.asyncio
async def test_openapi_document_matches_routes(sqlite_hub: Hub) -> None:
    served = await (await sqlite_hub.client.get("/api/v1/openapi.json")).json()
    assert served["openapi"].startswith("3.")
    documented = {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    routed = set()
    for route in sqlite_hub.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if path is None or route.method in ("HEAD", "*"):
            continue
        if path.startswith(("/api/", "/healthz", "/readyz", "/metrics")):
            routed.add((route.method, path))
    assert routed - documented == set(), "routes missing from openapi.yaml"
    assert documented - routed == set(), "openapi.yaml documents routes that do not exist"


@pytest.mark.asyncio
async def test_health_and_metrics(sqlite_hub: Hub) -> None:
    hub = sqlite_hub
    assert (await (await hub.client.get("/healthz")).json()) == {"status": "ok"}
    ready = await (await hub.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["checks"]["database"]["ok"]
    await _conversation(hub, "metrics-visitor")
    text = await (await hub.client.get("/metrics")).text()
    assert 'hub_messages_received_total{channel="fake"} 1.0' in text
    assert "hub_outbox_depth" in text and "hub_http_request_duration_seconds" in text
