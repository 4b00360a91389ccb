"""Outgoing webhooks (issue #18), over every storage backend, against a real
receiver on loopback that checks every signature: each event once per
subscribed endpoint, queued with its cause; retries with the same delivery
id; Retry-After; dead letters and redelivery; erasure; the admin API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiohttp import web

from hub import keys
from hub.conversations.references import unhandled_contact_references
from hub.events import MessageReceived, utcnow
from hub.storage.schema import audit_log, webhook_deliveries
from hub.webhooks import verify_signature
from hub.webhooks.destinations import check_url
from hub.webhooks.sender import retry_after
from hub.webhooks.service import prune_log
from hub.webhooks.signing import signature, signature_header
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for
from tests.hub.test_tickets import conversation, handoff, new_agent

# --- a receiver on 127.0.0.1:0 ------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.headers["X-Servicehub-Event"]

    @property
    def delivery(self) -> str:
        return self.headers["X-Servicehub-Delivery"]


@dataclass
class Receiver:
    """Answers each path from its script (status, headers), then 200; checks
    each request's signature with the path's secret."""

    secrets: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self.secrets.get(request.path, "")
        verified = verify_signature(secret, request.headers.get("X-Servicehub-Signature"), body)
        self.received.append(Received(request.path, dict(request.headers), body, verified))
        script = self.scripts.get(request.path)
        status, headers = script.pop(0) if script else (200, {})
        return web.Response(status=status, headers=headers, text="nope" if status >= 300 else "ok")

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    settings = make_settings(
        database_url,
        tmp_path,
        webhook_allow_private=True,  # the receiver is on loopback
        webhook_base_delay=0.05,
        webhook_max_delay=7200.0,  # a Retry-After of an hour is honoured, not cut short
        webhook_poll_interval=0.05,
        webhook_max_attempts=4,
    )
    running = await start_hub(settings)
    try:
        yield running
    finally:
        await close_hub(running)


async def endpoint(hub: Hub, receiver: Receiver, path: str, events: list[str], **extra: Any) -> dict[str, Any]:
    made = await hub.api(
        "POST", "/api/v1/webhooks", json={"url": receiver.url + path, "events": events, **extra}, expect=201
    )
    receiver.secrets[path] = made["secret"]
    return made


async def deliveries(hub: Hub, endpoint_id: int | None = None) -> list[Any]:
    def read(conn: sa.Connection) -> list[Any]:
        stmt = sa.select(webhook_deliveries).order_by(webhook_deliveries.c.id)
        if endpoint_id is not None:
            stmt = stmt.where(webhook_deliveries.c.endpoint_id == endpoint_id)
        return list(conn.execute(stmt).all())

    return await hub.db.read(read)


async def settled(hub: Hub) -> list[Any]:
    """Every delivery delivered or dead (none pending or being sent)."""

    async def done() -> list[Any] | None:
        rows = await deliveries(hub)
        return rows if rows and all(r.status in ("delivered", "dead") for r in rows) else None

    return await wait_for(done)


def sender(hub: Hub) -> Any:
    return hub.app[keys.WEBHOOKS].sender


# --- signing --------------------------------------------------------------------------------


def test_a_signature_verifies_with_its_secret_within_the_window_only() -> None:
    body = b'{"id":"whd_1","event":"ping"}'
    now = int(time.time())
    header = signature_header(["whsec_right-secret-0123"], body, now)
    assert header == f"t={now},v1={signature('whsec_right-secret-0123', now, body)}"
    assert verify_signature("whsec_right-secret-0123", header, body)
    assert not verify_signature("whsec_wrong-secret-0123", header, body)
    assert not verify_signature("whsec_right-secret-0123", header, body + b" ")
    assert not verify_signature("whsec_right-secret-0123", header, body, now=now + 301)
    assert verify_signature("whsec_right-secret-0123", header, body, tolerance=600, now=now + 301)
    for broken in (None, "", "v1=abc", f"t={now}", f"t=x{now},v1=00", "garbage"):
        assert not verify_signature("whsec_right-secret-0123", broken, body)
    # During a rotation's grace both secrets sign: either one verifies.
    both = signature_header(["whsec_new-secret-000000", "whsec_old-secret-000000"], body, now)
    assert verify_signature("whsec_new-secret-000000", both, body)
    assert verify_signature("whsec_old-secret-000000", both, body)


def test_retry_after_reads_seconds_and_http_dates_and_is_capped() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert retry_after("120", cap=3600, now=now) == 120
    assert retry_after("99999", cap=3600, now=now) == 3600
    assert retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), cap=3600, now=now) == 90
    assert retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), cap=3600, now=now) == 0
    assert retry_after(None, cap=3600) is None and retry_after("soon", cap=3600) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("https:///hook", "no host"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("https://exa mple.com/", "ASCII without spaces"),
        ("http://127.0.0.1:8080/hook", "private"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "private"),
        ("http://[::1]/hook", "private"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
        ("http://localhost:9000/hook", "this machine"),
        ("https://example.com:99999/", "not a valid URL"),
    ],
)
def test_urls_that_cannot_be_endpoints_are_refused_with_the_reason(url: str, reason: str) -> None:
    from hub.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        check_url(url, allow_private=False)
    assert reason in refused.value.message
    assert check_url("https://hooks.example.com/servicehub?x=1", allow_private=False)


def test_loopback_is_allowed_only_when_private_destinations_are() -> None:
    assert check_url("http://127.0.0.1:9/hook", allow_private=True) == "http://127.0.0.1:9/hook"


def test_erasure_knows_what_to_do_with_webhook_deliveries() -> None:
    assert unhandled_contact_references() == []


# --- the cause and its deliveries --------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stored_message_commits_its_delivery_row_before_any_worker_runs(hub: Hub, receiver: Receiver) -> None:
    made = await endpoint(hub, receiver, "/all", ["message.created"])
    await sender(hub).stop()
    conv = await conversation(hub, "wh-commit", "Where is my parcel 4711?")
    [row] = await deliveries(hub)
    assert (row.endpoint_id, row.event, row.status, row.attempts) == (made["id"], "message.created", "pending", 0)
    assert row.contact_id == conv["contact_id"]
    data = row.payload["data"]
    assert data["message"]["body"] == "Where is my parcel 4711?" and data["message"]["direction"] == "inbound"
    assert data["conversation"]["id"] == conv["id"] and data["contact"]["id"] == conv["contact_id"]
    assert row.payload["id"] == row.idempotency_key and row.payload["event"] == "message.created"
    assert receiver.received == []

    sender(hub).start()
    await wait_for(lambda: receiver.at("/all"))
    [got] = receiver.at("/all")
    assert got.verified and got.payload == row.payload and got.delivery == row.idempotency_key
    assert got.event == "message.created" and got.headers["Content-Type"] == "application/json"
    [row] = await settled(hub)
    assert (row.status, row.response_status) == ("delivered", 200) and row.delivered_at is not None


@pytest.mark.asyncio
async def test_a_cause_rolled_back_leaves_no_delivery(hub: Hub, receiver: Receiver) -> None:
    await endpoint(hub, receiver, "/all", ["*"])

    def fail(conn: sa.Connection, event: MessageReceived) -> None:
        raise RuntimeError("a later hook fails")

    remove = hub.service.tx_hooks.add(MessageReceived, fail)  # after the webhooks' hook
    try:
        await hub.inbound({"from": "wh-rollback", "text": "hello", "id": "wh-rollback-1"}, expect=500)
    finally:
        remove()
    assert await deliveries(hub) == []


@pytest.mark.asyncio
async def test_each_event_goes_once_to_each_endpoint_that_takes_it(hub: Hub, receiver: Receiver) -> None:
    every = await endpoint(hub, receiver, "/every", ["*"])
    opened_only = await endpoint(hub, receiver, "/opened", ["ticket.opened"])
    await endpoint(hub, receiver, "/off", ["*"], active=False)
    agent = await new_agent(hub, "webhook-agent", team="support", on_duty=False)

    conv = await conversation(hub, "wh-flow", "My order never arrived")
    # The fake channel retries its webhook: one message, one delivery.
    await hub.inbound({"from": "wh-flow", "text": "again", "id": "wh-flow-dup"})
    await hub.inbound({"from": "wh-flow", "text": "again", "id": "wh-flow-dup"})
    ticket = await handoff(hub, conv["id"], priority="high")
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/assign", json={"assignee_id": agent})
    await hub.api("POST", f"/api/v1/conversations/{conv['id']}/messages", json={"text": "On its way!"}, expect=201)
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent")
    survey_id = await wait_for(lambda: _survey_of(hub, conv["id"]))
    await hub.app[keys.CSAT].answer(survey_id, 5, "great")

    rows = await settled(hub)
    assert all(r.status == "delivered" for r in rows)
    got = receiver.at("/every")
    assert all(r.verified for r in receiver.received)
    assert len({r.delivery for r in got}) == len(got) == len([r for r in rows if r.endpoint_id == every["id"]])
    events = [r.event for r in got]
    assert sorted(set(events)) == sorted(
        [
            "message.created",
            "conversation.updated",
            "ticket.opened",
            "ticket.assigned",
            "ticket.resolved",
            "csat.received",
        ]
    )
    assert events.count("ticket.opened") == events.count("ticket.resolved") == events.count("csat.received") == 1
    # Inbound twice (one duplicate dropped), the agent's reply and the CSAT survey.
    created = [r.payload["data"]["message"] for r in got if r.event == "message.created"]
    assert [(m["direction"], m["body"]) for m in created][:3] == [
        ("inbound", "My order never arrived"),
        ("inbound", "again"),
        ("outbound", "On its way!"),
    ]
    assert len(created) == 4 and created[3]["author_kind"] == "system"
    assigned = next(r.payload["data"] for r in got if r.event == "ticket.assigned")
    assert assigned["assignee_id"] == agent and assigned["ticket"]["id"] == ticket["id"]
    resolved = next(r.payload["data"] for r in got if r.event == "ticket.resolved")
    assert resolved["ticket"]["status"] == "resolved"
    csat = next(r.payload["data"] for r in got if r.event == "csat.received")
    assert csat["survey"]["rating"] == 5 and csat["survey"]["comment"] == "great"
    handler = [r.payload["data"] for r in got if r.event == "conversation.updated"]
    assert any(d["changes"].get("handler") == "human" for d in handler)
    # The conversation's events reached the endpoint in the order they were queued.
    assert [r.delivery for r in got] == [r.idempotency_key for r in rows if r.endpoint_id == every["id"]]

    [opened] = receiver.at("/opened")
    assert opened.event == "ticket.opened" and opened.payload["data"]["ticket"]["id"] == ticket["id"]
    assert [r.endpoint_id for r in rows if r.event == "ticket.opened"] == [every["id"], opened_only["id"]]
    assert receiver.at("/off") == []
    text = json.dumps([r.payload for r in got])
    assert "whsec_" not in text and every["secret"] not in text


async def _survey_of(hub: Hub, conversation_id: int) -> int | None:
    from hub.storage.schema import csat_surveys

    return await hub.db.read(
        lambda conn: conn.execute(
            sa.select(csat_surveys.c.id).where(csat_surveys.c.conversation_id == conversation_id)
        ).scalar()
    )


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_500_is_retried_with_the_same_delivery_id_until_it_is_taken(hub: Hub, receiver: Receiver) -> None:
    await endpoint(hub, receiver, "/flaky", ["message.created"])
    receiver.scripts["/flaky"] = [(500, {}), (502, {})]
    await conversation(hub, "wh-retry", "hello")
    [row] = await settled(hub)
    attempts = receiver.at("/flaky")
    assert len(attempts) == 3 and all(a.verified for a in attempts)
    assert {a.delivery for a in attempts} == {row.idempotency_key}
    assert len({a.body for a in attempts}) == 1  # the same payload each time (only the signature's time moves)
    assert (row.status, row.attempts, row.response_status, row.last_error) == ("delivered", 3, 200, None)


@pytest.mark.asyncio
async def test_a_429_waits_for_its_retry_after(hub: Hub, receiver: Receiver) -> None:
    await endpoint(hub, receiver, "/busy", ["message.created"])
    receiver.scripts["/busy"] = [(429, {"Retry-After": "3600"})]
    await conversation(hub, "wh-429", "hello")

    async def waiting() -> Any:
        rows = await deliveries(hub)
        return rows[0] if rows and rows[0].status == "pending" and rows[0].attempts == 1 else None

    row = await wait_for(waiting)
    assert row.response_status == 429 and row.last_error.startswith("HTTP 429")
    wait = (row.next_attempt_at - row.updated_at).total_seconds()
    assert 3599 <= wait <= 3601
    # An hour later (moved, not slept): it goes, with the same delivery id.
    await hub.db.write(
        lambda conn: conn.execute(sa.update(webhook_deliveries).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    )
    sender(hub).notify()
    [row] = await settled(hub)
    assert row.status == "delivered" and row.attempts == 2
    assert [a.delivery for a in receiver.at("/busy")] == [row.idempotency_key] * 2


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "dead"), [(404, True), (410, True), (301, True), (408, False), (409, False)])
async def test_a_4xx_is_permanent_except_the_retryable_ones(
    hub: Hub, receiver: Receiver, status: int, dead: bool
) -> None:
    await endpoint(hub, receiver, "/picky", ["message.created"])
    extra = {"Location": "https://example.com/elsewhere"} if status == 301 else {}
    receiver.scripts["/picky"] = [(status, extra)]
    await conversation(hub, f"wh-{status}", "hello")
    [row] = await settled(hub)
    if dead:
        assert (row.status, row.attempts, row.response_status) == ("dead", 1, status)
        assert row.last_error.startswith(f"HTTP {status}")
        assert len(receiver.at("/picky")) == 1
    else:
        assert (row.status, row.attempts, row.response_status) == ("delivered", 2, 200)


@pytest.mark.asyncio
async def test_an_endpoint_that_never_answers_well_goes_dead_after_the_last_attempt(
    hub: Hub, receiver: Receiver
) -> None:
    await endpoint(hub, receiver, "/down", ["message.created"])
    receiver.scripts["/down"] = [(503, {})] * 10
    await conversation(hub, "wh-down", "hello")
    [row] = await settled(hub)
    assert (row.status, row.attempts, row.response_status) == ("dead", 4, 503)  # HUB_WEBHOOK_MAX_ATTEMPTS=4
    assert len(receiver.at("/down")) == 4
    metrics = hub.app[keys.METRICS].webhook_deliveries
    assert metrics.labels("message.created", "retry")._value.get() == 3
    assert metrics.labels("message.created", "dead")._value.get() == 1


@pytest.mark.asyncio
async def test_a_refused_connection_is_retried(hub: Hub, receiver: Receiver) -> None:
    from tests.conftest import free_port

    made = await hub.api(
        "POST",
        "/api/v1/webhooks",
        json={"url": f"http://127.0.0.1:{free_port()}/nobody", "events": ["message.created"]},
        expect=201,
    )
    await conversation(hub, "wh-refused", "hello")

    async def failed_twice() -> Any:
        rows = await deliveries(hub)
        return rows and rows[0].attempts >= 2 and rows[0].last_error

    await wait_for(failed_twice)
    [row] = await deliveries(hub, made["id"])
    assert row.response_status is None and row.status in ("pending", "sending", "dead")


# --- the admin API -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_dead_delivery_is_redelivered_with_the_same_id(hub: Hub, receiver: Receiver) -> None:
    made = await endpoint(hub, receiver, "/gone", ["message.created"])
    receiver.scripts["/gone"] = [(404, {})]
    await conversation(hub, "wh-redeliver", "hello")
    [row] = await settled(hub)
    assert row.status == "dead"

    listed = await hub.api("GET", f"/api/v1/webhooks/{made['id']}/deliveries?status=dead")
    [item] = listed["items"]
    assert (item["id"], item["status"], item["attempts"], item["response_status"]) == (row.id, "dead", 1, 404)
    assert "payload" not in item
    jobs = await hub.api("GET", "/api/v1/jobs?queue=webhooks&status=dead")
    assert [job["id"] for job in jobs["items"]] == [row.id] and jobs["counts"]["dead"] == 1
    again = await hub.api("POST", f"/api/v1/webhooks/{made['id']}/deliveries/{row.id}/redeliver", expect=202)
    assert again["status"] == "pending" and again["attempts"] == 0
    [row] = await settled(hub)
    assert row.status == "delivered"
    first, second = receiver.at("/gone")
    assert first.delivery == second.delivery == row.idempotency_key and first.body == second.body
    # A delivered one can go again too; one of another endpoint is not there.
    await hub.api("POST", f"/api/v1/webhooks/{made['id']}/deliveries/{row.id}/redeliver", expect=202)
    await wait_for(lambda: len(receiver.at("/gone")) == 3)
    other = await endpoint(hub, receiver, "/other", ["ticket.opened"])
    await hub.api("POST", f"/api/v1/webhooks/{other['id']}/deliveries/{row.id}/redeliver", expect=404)

    # One still on its way is a conflict.
    await sender(hub).stop()
    await conversation(hub, "wh-redeliver-2", "hello")
    pending = next(r for r in await deliveries(hub) if r.status == "pending")
    await hub.api("POST", f"/api/v1/webhooks/{made['id']}/deliveries/{pending.id}/redeliver", expect=409)
    actions = await hub.db.read(
        lambda conn: (
            conn.execute(sa.select(audit_log.c.action).where(audit_log.c.action.like("webhook.%"))).scalars().all()
        )
    )
    assert actions.count("webhook.redeliver") == 2 and "webhook.create" in actions


@pytest.mark.asyncio
async def test_the_log_keeps_finished_deliveries_for_its_days_and_never_prunes_one_on_its_way(
    hub: Hub, receiver: Receiver
) -> None:
    made = await endpoint(hub, receiver, "/log", ["message.created"])
    receiver.scripts["/log"] = [(200, {}), (404, {})]
    for n in range(3):  # one at a time, so the script's answers go in order
        await conversation(hub, f"wh-log-{n}", "hello")
        await wait_for(lambda n=n: len(receiver.at("/log")) > n)
    rows = await settled(hub)
    assert sorted(r.status for r in rows) == ["dead", "delivered", "delivered"]
    await sender(hub).stop()
    await conversation(hub, "wh-log-pending", "hello")  # stays pending: nobody sends it now
    # Everything so far last touched 31 days ago; the log keeps 30 (the default).
    long_ago = utcnow() - timedelta(days=31)
    await hub.db.write(lambda conn: conn.execute(sa.update(webhook_deliveries).values(updated_at=long_ago)))
    days = hub.app[keys.SETTINGS].webhook_log_days
    assert days == 30
    deleted = await prune_log(hub.db, hub.app[keys.CLOCK], days=days)
    assert deleted == 3
    [left] = await deliveries(hub, made["id"])
    assert left.status == "pending"
    assert await prune_log(hub.db, hub.app[keys.CLOCK], days=30) == 0


@pytest.mark.asyncio
async def test_ping_reaches_even_a_disabled_endpoint_signed(hub: Hub, receiver: Receiver) -> None:
    made = await endpoint(hub, receiver, "/ping", ["ticket.opened"], active=False, description="CRM sync")
    queued = await hub.api("POST", f"/api/v1/webhooks/{made['id']}/ping", expect=202)
    assert queued["event"] == "ping" and queued["status"] == "pending"
    [got] = await wait_for(lambda: receiver.at("/ping"))
    assert got.verified and got.event == "ping" and got.payload["data"] == {"endpoint_id": made["id"]}
    assert got.delivery == queued["idempotency_key"] == got.payload["id"]


@pytest.mark.asyncio
async def test_a_rotated_secret_signs_beside_the_old_one_during_its_grace(hub: Hub, receiver: Receiver) -> None:
    made = await endpoint(hub, receiver, "/rotate", ["message.created"], secret="first-secret-0123456789")
    assert made["secret"] == "first-secret-0123456789"
    rotated = await hub.api("POST", f"/api/v1/webhooks/{made['id']}/rotate-secret", json={"grace_seconds": 3600})
    assert rotated["secret"].startswith("whsec_") and rotated["previous_secret_until"] is not None
    await hub.api("POST", f"/api/v1/webhooks/{made['id']}/ping", expect=202)
    [got] = await wait_for(lambda: receiver.at("/rotate"))
    header = got.headers["X-Servicehub-Signature"]
    assert header.count("v1=") == 2
    assert verify_signature(rotated["secret"], header, got.body)
    assert verify_signature("first-secret-0123456789", header, got.body)
    # Without a grace the old one stops at once.
    again = await hub.api("POST", f"/api/v1/webhooks/{made['id']}/rotate-secret")
    assert again["previous_secret_until"] is None
    await hub.api("POST", f"/api/v1/webhooks/{made['id']}/ping", expect=202)
    await wait_for(lambda: len(receiver.at("/rotate")) == 2)
    last = receiver.at("/rotate")[1]
    assert last.headers["X-Servicehub-Signature"].count("v1=") == 1
    assert verify_signature(again["secret"], last.headers["X-Servicehub-Signature"], last.body)
    assert not verify_signature(rotated["secret"], last.headers["X-Servicehub-Signature"], last.body)


@pytest.mark.asyncio
async def test_endpoints_are_managed_by_admins_and_never_show_their_secret_again(hub: Hub, receiver: Receiver) -> None:
    made = await endpoint(hub, receiver, "/crud", ["ticket.opened", "message.created", "ticket.opened"])
    assert made["events"] == ["message.created", "ticket.opened"] and made["active"] is True
    assert made["secret"].startswith("whsec_")
    listed = await hub.api("GET", "/api/v1/webhooks")
    assert [e["id"] for e in listed["items"]] == [made["id"]] and "secret" not in listed["items"][0]
    assert "message.created" in listed["event_types"]
    one = await hub.api("GET", f"/api/v1/webhooks/{made['id']}")
    assert "secret" not in one and one["url"] == receiver.url + "/crud"
    changed = await hub.api(
        "PATCH", f"/api/v1/webhooks/{made['id']}", json={"events": ["*"], "active": False, "description": "BI"}
    )
    assert (changed["events"], changed["active"], changed["description"]) == (["*"], False, "BI")
    for role in ("agent", "viewer"):
        await hub.api("GET", "/api/v1/webhooks", role=role, expect=403)
        await hub.api("POST", f"/api/v1/webhooks/{made['id']}/ping", role=role, expect=403)
    await hub.api("POST", f"/api/v1/webhooks/{made['id']}/ping", expect=202)
    await hub.api("DELETE", f"/api/v1/webhooks/{made['id']}", expect=204)
    await hub.api("GET", f"/api/v1/webhooks/{made['id']}", expect=404)
    assert await deliveries(hub) == []  # its deliveries went with it


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://user:pw@example.com/x", "events": ["*"]}, "url"),
        ({"url": "example.com/x", "events": ["*"]}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["ticket.exploded"]}, "events"),
        ({"url": "https://example.com/x"}, "events"),
        ({"url": "https://example.com/x", "events": ["*"], "secret": "short"}, "secret"),
        ({"url": "https://example.com/x", "events": ["*"], "secret": "has a space in it 123"}, "secret"),
        ({"url": "https://example.com/x", "events": ["*"], "active": "yes"}, "active"),
    ],
)
async def test_bad_endpoints_are_a_400_naming_the_field(hub: Hub, body: dict[str, Any], field_name: str) -> None:
    refused = await hub.api("POST", "/api/v1/webhooks", json=body, expect=400)
    assert refused["error"]["details"]["field"].split("[")[0] == field_name
    assert await hub.api("GET", "/api/v1/webhooks") == {"items": [], "event_types": list(_event_types())}


def _event_types() -> tuple[str, ...]:
    from hub.webhooks.store import EVENT_TYPES

    return EVENT_TYPES


@pytest.mark.asyncio
async def test_private_destinations_are_refused_unless_allowed(database_url: str, tmp_path: Path) -> None:
    running = await start_hub(make_settings(database_url, tmp_path))  # HUB_WEBHOOK_ALLOW_PRIVATE off
    try:
        for url in ("http://127.0.0.1:8080/x", "http://192.168.1.10/x", "http://localhost/x", "http://[fe80::1]/x"):
            refused = await running.api("POST", "/api/v1/webhooks", json={"url": url, "events": ["*"]}, expect=400)
            assert (
                refused["error"]["details"]["field"] == "url"
                and "HUB_WEBHOOK_ALLOW_PRIVATE" in refused["error"]["message"]
            )
        made = await running.api(
            "POST", "/api/v1/webhooks", json={"url": "https://1.1.1.1/x", "events": ["*"]}, expect=201
        )
        await running.api("PATCH", f"/api/v1/webhooks/{made['id']}", json={"url": "http://10.0.0.1/"}, expect=400)
    finally:
        await close_hub(running)


# --- erasure -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_erasure_takes_the_contacts_pending_deliveries_and_tells_integrators(
    hub: Hub, receiver: Receiver
) -> None:
    await endpoint(hub, receiver, "/crm", ["*"])
    await sender(hub).stop()
    conv = await conversation(hub, "wh-erase", "I am Quibblewort Fennimore, call me on 555-0199")
    other = await conversation(hub, "wh-keep", "Someone else entirely")
    assert {r.contact_id for r in await deliveries(hub)} == {conv["contact_id"], other["contact_id"]}

    await hub.api("DELETE", f"/api/v1/contacts/{conv['contact_id']}")
    rows = await deliveries(hub)
    assert not [r for r in rows if "Quibblewort" in json.dumps(r.payload) or r.contact_id == conv["contact_id"]]
    erased = [r for r in rows if r.event == "contact.erased"]
    assert len(erased) == 1 and erased[0].contact_id is None
    assert erased[0].payload["data"] == {"contact_id": conv["contact_id"], "conversation_ids": [conv["id"]]}
    assert [r.contact_id for r in rows if r.event == "message.created"] == [other["contact_id"]]

    sender(hub).start()
    await settled(hub)
    assert sorted(r.event for r in receiver.at("/crm")) == ["contact.erased", "message.created"]
    assert "Quibblewort" not in json.dumps([r.payload for r in receiver.received])


@pytest.mark.asyncio
async def test_an_automation_rule_calls_its_endpoint_once_per_run_signed(hub: Hub, receiver: Receiver) -> None:
    """The automation action ``webhook`` (issue #17): an ``automation.matched``
    delivery to the named endpoint, whatever events it subscribes to, signed and
    queued like every delivery; the run and step name it, so it goes once."""
    made = await endpoint(hub, receiver, "/rules", ["ticket.opened"])
    rule = await hub.api(
        "POST",
        "/api/v1/automation/rules",
        json={
            "name": "tell-the-crm",
            "when": "message_received",
            "if": {"text_contains": "cancel"},
            "then": [{"add_tag": "churn-risk"}, {"webhook": made["id"]}],
        },
        expect=201,
    )
    await hub.inbound({"from": "ada", "text": "Please cancel my plan", "id": "auto-1"})
    await hub.inbound({"from": "ada", "text": "Please cancel my plan", "id": "auto-1"})  # the provider's retry
    await hub.inbound({"from": "bob", "text": "Hello", "id": "auto-2"})  # no match
    await wait_for(lambda: receiver.at("/rules"))

    async def finished() -> list[dict] | None:
        # The delivery can reach the receiver before the run's own job is marked done.
        items = (await hub.api("GET", f"/api/v1/automation/rules/{rule['id']}/runs"))["items"]
        return items if all(r["status"] != "running" for r in items) else None

    runs = await wait_for(finished)
    assert [r["status"] for r in runs] == ["done"]
    [got] = receiver.at("/rules")
    assert got.verified and got.event == "automation.matched"
    body = got.payload
    assert body["data"]["rule"]["name"] == "tell-the-crm" and body["data"]["trigger"].startswith("message:")
    assert body["data"]["conversation"]["id"] == runs[0]["conversation_id"]
    # A webhook action naming an endpoint deleted since: the run goes dead with the reason.
    await hub.api("DELETE", f"/api/v1/webhooks/{made['id']}", expect=204)
    await hub.inbound({"from": "cy", "text": "cancel it", "id": "auto-3"})

    async def dead() -> list[dict[str, Any]]:
        found = (await hub.api("GET", f"/api/v1/automation/rules/{rule['id']}/runs?status=dead"))["items"]
        return found

    [failed] = await wait_for(dead)
    assert failed["step"] == 1 and "webhook" in failed["last_error"]
