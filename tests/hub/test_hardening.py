"""Bad input is a clear 4xx where it enters the hub, and nothing of it is stored (issue #13).

Ids, text (lone surrogates, NFC, lengths), JSON (depth, NaN, types), atomic
webhook batches, header numbers and request ids, unique conflicts, e-mail
addresses, and what logs and headers give away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import unicodedata
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from channels.fake import sign
from hub.errors import ChannelSendError
from hub.storage import schema
from tests.conftest import FAKE_SECRET, Hub, make_settings, start_hub, wait_for

MAX_ID = 2**63 - 1
HUGE = "99999999999999999999"  # beyond 64 bits: OverflowError deep in the drivers, before


async def _post_raw(hub: Hub, path: str, raw: bytes, *, role: str = "admin", method: str = "POST") -> tuple[int, Any]:
    response = await hub.client.request(
        method, path, data=raw, headers={**hub.auth(role), "Content-Type": "application/json"}
    )
    return response.status, await response.json()


async def _webhook_raw(hub: Hub, raw: bytes, **headers: str) -> tuple[int, Any]:
    signed = {**sign(FAKE_SECRET, raw), "Content-Type": "application/json", **headers}
    response = await hub.client.post("/channels/fake/webhook", data=raw, headers=signed)
    return response.status, await response.json()


async def _conversation(hub: Hub, sender: str = "hard-1") -> tuple[int, int]:
    received = await hub.inbound({"from": sender, "text": "hello", "id": f"{sender}-m1", "name": "Ada"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return message["conversation_id"], message["contact_id"]


async def _message_count(hub: Hub) -> int:
    return await hub.db.read(
        lambda conn: conn.execute(sa.select(sa.func.count()).select_from(schema.messages)).scalar()
    )


# --- ids ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ids_beyond_range_are_404_in_paths_and_400_naming_the_field_in_bodies(hub: Hub) -> None:
    conversation_id, contact_id = await _conversation(hub)
    ticket = await hub.api("POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", expect=201)
    for bad in (HUGE, str(MAX_ID + 1), "0", "-1", "١٢", "abc"):
        for method, path in [
            ("GET", f"/api/v1/contacts/{bad}"),
            ("GET", f"/api/v1/contacts/{bad}/timeline"),
            ("GET", f"/api/v1/conversations/{bad}"),
            ("GET", f"/api/v1/conversations/{bad}/timeline"),
            ("GET", f"/api/v1/messages/{bad}"),
            ("GET", f"/api/v1/tickets/{bad}"),
            ("POST", f"/api/v1/tickets/{bad}/claim"),
            ("GET", f"/api/v1/agents/{bad}"),
            ("POST", f"/api/v1/jobs/outbox/{bad}/retry"),
            ("DELETE", f"/api/v1/tokens/{bad}"),
        ]:
            body = await hub.api(method, path, expect=404)
            assert body["error"]["code"] == "not_found", (path, body)
    # The largest id there can be is simply not there.
    await hub.api("GET", f"/api/v1/contacts/{MAX_ID}", expect=404)
    # Ids in bodies: 400 naming the field.
    for value in (int(HUGE), MAX_ID + 1, 0, -5):
        raw = json.dumps({"source_id": value}).encode()
        status, body = await _post_raw(hub, f"/api/v1/contacts/{contact_id}/merge", raw, role="agent")
        assert status == 400 and "'source_id'" in body["error"]["message"], body
        raw = json.dumps({"assignee_id": value}).encode()
        status, body = await _post_raw(hub, f"/api/v1/tickets/{ticket['id']}/assign", raw, role="agent")
        assert status == 400 and "assignee_id" in body["error"]["message"], body
    raw = json.dumps({"assignee_id": int(HUGE)}).encode()
    status, body = await _post_raw(hub, f"/api/v1/conversations/{conversation_id}", raw, role="agent", method="PATCH")
    assert status == 400 and "assignee_id" in body["error"]["message"], body
    # Query ids: ASCII digits in range only.
    for bad in (HUGE, "١٢", "1_0"):
        body = await hub.api("GET", "/api/v1/conversations", params={"contact_id": bad}, expect=400)
        assert "'contact_id'" in body["error"]["message"]


# --- text ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_lone_surrogate_is_refused_naming_the_field_and_text_is_stored_nfc(hub: Hub) -> None:
    conversation_id, contact_id = await _conversation(hub)
    lone = '"\\ud800"'  # JSON's escape for a lone surrogate: valid JSON, not valid Unicode
    cases = [
        ("PATCH", f"/api/v1/contacts/{contact_id}", f'{{"name": {lone}}}', "name"),
        ("POST", f"/api/v1/conversations/{conversation_id}/messages", f'{{"text": {lone}}}', "text"),
        ("POST", f"/api/v1/conversations/{conversation_id}/notes", f'{{"text": "ok", "x": [{lone}]}}', "x[0]"),
        ("POST", f"/api/v1/conversations/{conversation_id}/handoff", f'{{"reason": {lone}}}', "reason"),
        ("POST", "/api/v1/users", f'{{"name": "N", "email": {lone}, "role": "agent"}}', "email"),
        ("PATCH", f"/api/v1/contacts/{contact_id}", f'{{"attributes": {{{lone}: 1}}}}', "attributes"),
    ]
    before = await _message_count(hub)
    for method, path, raw, name in cases:
        status, body = await _post_raw(hub, path, raw.encode(), method=method)
        assert status == 400, (path, body)
        assert f"'{name}" in body["error"]["message"] and "surrogate" in body["error"]["message"], body
    # UTF-8-encoded surrogates (bytes ED A0 80) are not UTF-8 at all.
    status, body = await _post_raw(hub, f"/api/v1/contacts/{contact_id}", b'{"name": "\xed\xa0\x80"}', method="PATCH")
    assert status == 400 and "UTF-8" in body["error"]["message"], body
    # Webhooks: the same rule, naming the item's field.
    status, body = await _webhook_raw(hub, f'{{"from": "s-1", "text": {lone}, "id": "s-1"}}'.encode())
    assert status == 400 and "'text'" in body["error"]["message"], body
    status, body = await _webhook_raw(hub, f'{{"from": {lone}, "text": "hi", "id": "s-2"}}'.encode())
    assert status == 400 and "'from'" in body["error"]["message"], body
    assert await _message_count(hub) == before
    # One text is stored one way: NFC.
    decomposed = "Cafe\u0301 Zoe\u0308"
    received = await hub.inbound({"from": "nfc-1", "text": decomposed, "id": "nfc-1", "name": decomposed})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    assert message["body"] == unicodedata.normalize("NFC", decomposed) == "Café Zoë"
    contact = await hub.api("GET", f"/api/v1/contacts/{message['contact_id']}")
    assert contact["name"] == "Café Zoë"


@pytest.mark.asyncio
async def test_stored_strings_have_limits_with_a_clear_error(hub: Hub) -> None:
    conversation_id, contact_id = await _conversation(hub)
    before = await _message_count(hub)
    body = await hub.api("PATCH", f"/api/v1/contacts/{contact_id}", json={"name": "n" * 500_000}, expect=400)
    assert body["error"]["code"] == "too_large" and "'name'" in body["error"]["message"]
    body = await hub.api(
        "PATCH", f"/api/v1/conversations/{conversation_id}", role="agent", json={"subject": "s" * 501}, expect=400
    )
    assert body["error"]["code"] == "too_large" and "'subject'" in body["error"]["message"]
    body = await hub.api("POST", "/api/v1/users", json={"name": "N", "email": "a@example.test", "role": "agent",
                                                          "slack_user_id": "U" * 65}, expect=400)  # fmt: skip
    assert "'slack_user_id'" in body["error"]["message"]
    body = await hub.inbound({"from": "long-1", "text": "hi", "id": "x" * 100_000}, expect=400)
    assert body["error"]["code"] == "too_large" and "external_id" in body["error"]["message"]
    body = await hub.inbound({"from": "f" * 321, "text": "hi", "id": "long-2"}, expect=400)
    assert "sender" in body["error"]["message"]
    body = await hub.inbound({"from": "long-3", "text": "hi", "id": "long-3", "name": "n" * 201}, expect=400)
    assert "sender_name" in body["error"]["message"]
    assert await _message_count(hub) == before
    contact = await hub.api("GET", f"/api/v1/contacts/{contact_id}")
    assert contact["name"] == "Ada"


def test_limits_fit_the_columns_they_guard() -> None:
    """Every limit is at most its column's length (so PostgreSQL never
    refuses what the hub let in), and every client-written String column is guarded."""
    from hub.inputs import FIELD_LIMITS, INBOUND_LIMITS

    guarded = {
        "name": [schema.users.c.name, schema.contacts.c.name, schema.api_tokens.c.name],
        "email": [schema.users.c.email, schema.identities.c.address],
        "role": [schema.users.c.role],
        "slack_user_id": [schema.users.c.slack_user_id],
        "status": [schema.conversations.c.status],
        "priority": [schema.conversations.c.priority, schema.tickets.c.priority, schema.routing_rules.c.priority],
        "handler": [schema.conversations.c.handler],
        "kind": [schema.routing_rules.c.kind],
        "subject": [schema.conversations.c.subject],
        "thread": [schema.conversations.c.thread_key],
        "team": [schema.agent_profiles.c.team, schema.tickets.c.team, schema.routing_rules.c.team],
        "collection": [schema.kb_votes.c.collection, schema.kb_phrasing_suggestions.c.collection],
        "article_id": [schema.kb_votes.c.article_id, schema.kb_phrasing_suggestions.c.article_id],
        "sender": [schema.identities.c.address],
        "external_id": [schema.messages.c.external_id],
        "sender_name": [schema.contacts.c.name],
        "thread_key": [schema.conversations.c.thread_key],
    }
    limits = {**FIELD_LIMITS, **INBOUND_LIMITS}
    for field_name, columns in guarded.items():
        for column in columns:
            assert isinstance(column.type, sa.String)
            assert column.type.length is not None, column
            assert limits[field_name] <= column.type.length, (field_name, column)
    assert set(FIELD_LIMITS) <= set(guarded) | {"text", "reason"}
    # No String column without a length: an unbounded VARCHAR would hide a missing limit.
    for table in schema.metadata.tables.values():
        for column in table.columns:
            if type(column.type) is sa.String:
                assert column.type.length, column


# --- JSON ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_json_depth_nan_and_wrong_types_are_400_naming_the_field(hub: Hub) -> None:
    conversation_id, contact_id = await _conversation(hub)
    before = await _message_count(hub)
    deep = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for raw in (deep, b"[" * 200_000):
        status, body = await _post_raw(hub, f"/api/v1/contacts/{contact_id}", raw, method="PATCH")
        assert status == 400 and "deeper than 32" in body["error"]["message"], body["error"]
    # 33 levels inside a string are just text.
    status, _ = await _post_raw(
        hub, f"/api/v1/contacts/{contact_id}", b'{"name": "' + b"[" * 40 + b'"}', method="PATCH"
    )
    assert status == 200
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"minutes": ' + constant + b"}"
        status, body = await _post_raw(hub, f"/api/v1/conversations/{conversation_id}/handoff", raw, role="agent")
        assert status == 400 and constant.lstrip(b"-").decode() in body["error"]["message"], body
    wrong = [
        ("PATCH", f"/api/v1/contacts/{contact_id}", {"name": {"first": "A"}}, "'name' must be str"),
        ("PATCH", f"/api/v1/conversations/{conversation_id}", {"subject": {"a": 1}}, "'subject' must be str"),
        ("PATCH", f"/api/v1/conversations/{conversation_id}", {"subject": [1]}, "'subject' must be str"),
        ("POST", f"/api/v1/conversations/{conversation_id}/handoff", {"reason": ["x"]}, "'reason' must be str"),
        ("PATCH", f"/api/v1/contacts/{contact_id}", {"attributes": {"n": 2**64}}, "'attributes.n'"),
    ]
    for method, path, payload, reason in wrong:
        body = await hub.api(method, path, role="agent", json=payload, expect=400)
        assert reason in body["error"]["message"], body
    # Webhooks: the same parser.
    status, body = await _webhook_raw(hub, b'{"from": "j-1", "text": "hi", "id": "j-1", "tier": NaN}')
    assert status == 400 and "NaN" in body["error"]["message"]
    status, body = await _webhook_raw(
        hub, b'{"from": "j-2", "text": "hi", "tier": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    )
    assert status == 400 and "deeper" in body["error"]["message"]
    assert await _message_count(hub) == before


def test_depth_scan_agrees_with_the_parser() -> None:
    from hub.inputs import json_depth_exceeds, load_json

    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 32)
    assert not json_depth_exceeds(b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', 32)
    assert not json_depth_exceeds(b"[" * 32 + b"]" * 32, 32)
    assert json_depth_exceeds(b"[" * 33 + b"]" * 33, 32)
    assert json_depth_exceeds(b"[{}," * 40 + b"[" * 33, 32)
    assert not json_depth_exceeds(b"[" + b"{}," * 1000 + b"{}]", 32)
    assert load_json(b'{"a": [1, 2.5, "e\\u0301"]}') == {"a": [1, 2.5, "\u00e9"]}


# --- webhook batches ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_webhook_batch_is_checked_whole_before_any_of_it_is_stored(hub: Hub) -> None:
    before = await _message_count(hub)
    good = {"from": "batch-1", "text": "first", "id": "batch-1"}
    bad_items: list[Any] = [
        '{"from": "batch-2", "text": "\\ud800", "id": "batch-2"}',
        '{"from": "batch-2", "text": "second", "id": "batch-2", "name": {"first": "A"}}',
        '{"from": "batch-2", "text": "second", "id": "batch-2", "subject": [1]}',
        '{"from": "batch-2", "text": "second", "id": "' + "x" * 501 + '"}',
        '{"from": "batch-2", "text": "second", "hints": {"email": "' + "e" * 400 + '"}}',
    ]
    for bad in bad_items:
        raw = ("[" + json.dumps(good) + ", " + bad + "]").encode()
        status, body = await _webhook_raw(hub, raw)
        assert status == 400 and ("item 1" in body["error"]["message"] or "'[1]." in body["error"]["message"]), body
    assert await _message_count(hub) == before
    # The provider's retry of the first item alone is its first delivery.
    first = await hub.inbound(good)
    assert first["received"][0]["duplicate"] is False


# --- headers -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_header_numbers_are_ascii_and_request_ids_safe(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    raw = json.dumps({"from": "h-1", "text": "hi", "id": "h-1"}).encode()
    for timestamp in ("²", "١٧٠٠٠٠٠٠٠٠", "1_700_000_000", " 1700000000", "9" * 5000):
        headers = sign(FAKE_SECRET, raw)
        headers["X-Fake-Timestamp"] = timestamp
        response = await hub.client.post("/channels/fake/webhook", data=raw, headers=headers)
        assert response.status == 401, (timestamp, await response.text())
    # A header the hub stores: within its column, or a 400 naming it.
    conversation_id, _ = await _conversation(hub)
    for key in ("k" * 101, "with space"):
        body = await hub.api("POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent",
                             json={"text": "hi"}, headers={"Idempotency-Key": key}, expect=400)  # fmt: skip
        assert "'Idempotency-Key'" in body["error"]["message"]
    caplog.set_level(logging.DEBUG, logger="hub.http")
    for given, kept in [("good.id-1_2", True), ("evil\u2028line", False), ("<script>", False), ("x" * 65, False)]:
        caplog.clear()
        await hub.client.get("/healthz", headers={"X-Request-Id": given.encode("utf-8").decode("latin-1")})
        ids = [record.request_id for record in caplog.records if hasattr(record, "request_id")]
        assert ids, caplog.records
        assert (ids[-1] == given) is kept, ids


# --- conflicts and e-mail addresses ---------------------------------------------------------


@pytest.mark.asyncio
async def test_unique_conflicts_are_409_naming_the_field(hub: Hub) -> None:
    first = {"name": "One", "email": "one@example.test", "role": "agent", "slack_user_id": "U0DUPE"}
    await hub.api("POST", "/api/v1/users", json=first, expect=201)
    body = await hub.api("POST", "/api/v1/users", json={**first, "email": "two@example.test"}, expect=409)
    assert body["error"]["code"] == "conflict" and "slack_user_id" in body["error"]["message"]
    assert "U0DUPE" not in json.dumps(body)  # the field, never the value
    body = await hub.api("POST", "/api/v1/users", json={**first, "slack_user_id": None}, expect=409)
    assert body["error"]["code"] == "conflict"
    for email in (" @ ", "a@b", "a..b@example.test", "a b@example.test", "a@-x.test", "@example.test", "a@"):
        body = await hub.api("POST", "/api/v1/users", json={"name": "N", "email": email, "role": "agent"}, expect=400)
        assert "'email'" in body["error"]["message"], (email, body)
    from hub.inputs import check_email

    assert check_email(" Mixed.Case+tag@Example.TEST ") == "mixed.case+tag@example.test"


# --- logs and headers ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_failed_statements_do_not_carry_their_parameters(hub: Hub) -> None:
    from hub.events import utcnow

    def insert_twice(conn: sa.Connection) -> None:
        values = {"name": "Private Person", "email": "private.person@example.test", "role": "agent", "extra": {},
                  "created_at": utcnow()}  # fmt: skip
        conn.execute(sa.insert(schema.users).values(**values))
        conn.execute(sa.insert(schema.users).values(**values))

    with pytest.raises(sa.exc.IntegrityError) as caught:
        await hub.db.write(insert_twice)
    text = str(caught.value)
    assert "private.person@example.test" not in text and "Private Person" not in text
    assert "hidden" in text


@pytest.mark.asyncio
async def test_child_command_lines_are_logged_without_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from hub.bot.supervisor import ChildProcess

    caplog.set_level(logging.INFO)
    child = ChildProcess(
        "probe",
        [sys.executable, "-c", "import time; time.sleep(30)", "--auth-token=s3cr3t-token", "--token", "other-s3cr3t"],
        cwd=tmp_path,
        grace=1.0,
    )
    await child.start()
    try:
        for _ in range(200):
            if any("started (pid" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
    finally:
        await child.stop(timeout=5)
    started = [r.getMessage() for r in caplog.records if "started (pid" in r.getMessage()]
    assert started and "--auth-token=***" in started[0]
    assert "s3cr3t" not in caplog.text


@contextlib.asynccontextmanager
async def supervised(
    code: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[Any, Callable[[], list[str]]]]:
    """A child running ``code`` under the real supervisor (hub.bot.supervisor.ChildProcess), and
    what it logged of the child's output (and of its starts and exits); stopped after."""
    from hub.bot.supervisor import ChildProcess

    caplog.set_level(logging.INFO)
    child = ChildProcess("probe", [sys.executable, "-c", code], cwd=tmp_path, grace=1.0)
    await child.start()
    try:
        yield child, lambda: [r.getMessage() for r in caplog.records if r.name == "child.probe"]
    finally:
        await child.stop(timeout=5)


# A child that prints one line far longer than a stream's 64 KiB line
# limit, then more output than the pipe and the reader's buffer hold, then
# a last line, and waits to be killed.
LOUD_CHILD = """
import sys, time
sys.stdout.write("long:" + "x" * 200_000 + "\\n")
for n in range(5000):
    sys.stdout.write(f"line {n} " + "y" * 60 + "\\n")
sys.stdout.write("all written\\n")
sys.stdout.flush()
time.sleep(60)
"""


@pytest.mark.asyncio
async def test_a_child_printing_a_very_long_line_is_logged_and_restarted_when_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.bot.supervisor import MAX_LOGGED_LINE

    async with supervised(LOUD_CHILD, tmp_path, caplog) as (child, output):

        def logged(start: str) -> list[str]:
            return [line for line in output() if line.startswith(start)]

        # Its output is read to the end (the long line did not stop the reading) ...
        await wait_for(lambda: logged("all written"), timeout=30)
        [long] = logged("long:")
        assert (
            long
            == "long:"
            + "x" * (MAX_LOGGED_LINE - 5)
            + f" [... {200_005 - MAX_LOGGED_LINE} more bytes of this line not logged]"
        )
        assert len(logged("line ")) == 5000
        # ... so its death is seen and it is started again.
        await child.kill()
        await wait_for(lambda: child.restarts == 1 and len(logged("all written")) == 2, timeout=30)


# A child that leaves a process of its own in another session, holding
# its output pipe open, and waits to be killed.
LEAVES_A_HOLDER = """
import subprocess, sys, time
holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print("holder", holder.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.asyncio
async def test_a_killed_child_is_restarted_while_a_process_outside_its_group_holds_its_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[int] = []  # the holders' pids
    try:
        async with supervised(LEAVES_A_HOLDER, tmp_path, caplog) as (child, output):

            def holders() -> list[int]:
                started[:] = [int(words[1]) for words in map(str.split, output()) if words[0] == "holder"]
                return started

            [first] = await wait_for(holders, timeout=30)
            await child.kill()
            # The holder lives on (in its own session) with the pipe: the restart does not wait for it.
            await wait_for(lambda: child.restarts == 1 and len(holders()) == 2, timeout=30)
            os.kill(first, 0)
            assert "its output pipe is still held open by a process outside its group" in caplog.text
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.asyncio
async def test_responses_carry_safe_headers_and_metrics_can_need_a_token(sqlite_url: str, tmp_path: Path) -> None:
    running = await start_hub(make_settings(sqlite_url, tmp_path, metrics_token="m-token"))
    try:
        for path, headers in [
            ("/api/v1/me", running.auth("viewer")),
            ("/api/v1/conversations/0", running.auth("viewer")),
            ("/api/v1/me", {}),
        ]:
            response = await running.client.get(path, headers=headers)
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert response.headers["Server"] == "servicehub", response.headers["Server"]
        assert (await running.client.get("/metrics")).status == 401
        assert (await running.client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
        metrics = await running.client.get("/metrics", headers={"Authorization": "Bearer m-token"})
        assert metrics.status == 200 and metrics.headers["X-Content-Type-Options"] == "nosniff"
        assert "Python" not in metrics.headers["Server"] and "aiohttp" not in metrics.headers["Server"]
    finally:
        await running.client.close()


@pytest.mark.asyncio
async def test_a_replayed_id_less_delivery_is_stored_once(hub: Hub) -> None:
    """The fake provider may omit ids: the signed delivery itself names its
    items, so a replay within the window (same timestamp, same signature) is a
    duplicate, and the same words signed again later are a new message."""
    import json as _json
    import time as _time

    from channels.fake import sign
    from tests.conftest import FAKE_SECRET

    raw = _json.dumps({"from": "replayer", "text": "no id on this one"}).encode()
    headers = {**sign(FAKE_SECRET, raw, int(_time.time())), "Content-Type": "application/json"}
    first = await (await hub.client.post("/channels/fake/webhook", data=raw, headers=headers)).json()
    again = await (await hub.client.post("/channels/fake/webhook", data=raw, headers=headers)).json()
    assert first["received"][0]["duplicate"] is False and again["received"][0]["duplicate"] is True
    assert again["received"][0]["message_id"] == first["received"][0]["message_id"]
    later = {**sign(FAKE_SECRET, raw, int(_time.time()) + 1), "Content-Type": "application/json"}
    fresh = await (await hub.client.post("/channels/fake/webhook", data=raw, headers=later)).json()
    assert fresh["received"][0]["duplicate"] is False


@pytest.mark.asyncio
async def test_a_run_with_failures_logs_no_name_address_or_text(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    """Deliveries, replies and a string of refused requests (conflicts, bad
    input, missing rows, a failing delivery): the log, tracebacks included,
    at INFO and above, holds none of the names, addresses or words used."""
    caplog.set_level(logging.INFO)
    name, email, words = "Ottoline Prendergast", "ottoline.p@example.org", "my pomegranate order is late"
    received = await hub.inbound({"from": "ottoline-chat", "name": name, "text": words, "id": "log-1"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    cid = message["conversation_id"]
    hub.channel("fake").recorder.fail_next.append(
        ChannelSendError("provider refused the message: HTTP 400", retryable=False)
    )
    await hub.api(
        "POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "pomegranate reply"}, expect=201
    )
    user = {"name": name, "email": email, "role": "agent", "slack_user_id": "UOTTO"}
    await hub.api("POST", "/api/v1/users", json=user, expect=201)
    await hub.api("POST", "/api/v1/users", json={**user, "email": "other@example.org"}, expect=409)
    await hub.api("POST", "/api/v1/users", json={**user, "email": email}, expect=409)
    await hub.api("POST", "/api/v1/users", json={**user, "email": f"{name} <{email}"}, expect=400)
    await hub.api(
        "PATCH", f"/api/v1/contacts/{message['contact_id']}", role="agent", json={"name": {"n": name}}, expect=400
    )
    await hub.api("POST", f"/api/v1/conversations/{cid}/notes", role="agent", json={"text": words * 3000}, expect=400)
    await hub.inbound([{"from": "ottoline-chat", "text": words}, {"from": "", "text": words}], expect=400)
    await hub.api(
        "POST", "/api/v1/contacts/999999/merge", role="agent", json={"source_id": message["contact_id"]}, expect=404
    )

    async def failed() -> bool:
        dead = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "dead"})
        return bool(dead["items"])

    await wait_for(failed)
    logged = "\n".join(caplog.text.splitlines())
    assert logged  # the run did log (requests, the failed delivery)
    for needle in (name, "Ottoline", email, "pomegranate", "ottoline-chat"):
        assert needle not in logged, needle


@pytest.mark.asyncio
async def test_a_client_that_leaves_is_logged_as_499_not_as_the_hubs_error(caplog: pytest.LogCaptureFixture) -> None:
    """A caller's timeout (the bot's action server gives a search 5 s) cancels the handler where the
    server cancels handlers whose client left: that is a warning with nginx's 499, not a 500 at ERROR."""
    from aiohttp import ClientSession, ClientTimeout, web
    from aiohttp.test_utils import TestServer

    from hub import keys
    from hub.api.middleware import observe_middleware
    from hub.metrics import Metrics

    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(30)
        return web.json_response({})

    async def failing(request: web.Request) -> web.Response:
        raise RuntimeError("a real fault")

    app = web.Application(middlewares=[observe_middleware])
    app[keys.METRICS] = Metrics()
    app.router.add_get("/slow", slow)
    app.router.add_get("/failing", failing)
    caplog.set_level(logging.INFO, logger="hub.http")
    async with TestServer(app, host="127.0.0.1", handler_cancellation=True) as server:
        async with ClientSession(timeout=ClientTimeout(total=0.3)) as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.get(server.make_url("/slow"))
            assert started.is_set()
            left = await wait_for(lambda: [r for r in caplog.records if "/slow" in r.getMessage()])
            assert [(r.levelno, r.status) for r in left] == [(logging.WARNING, 499)]
            async with session.get(server.make_url("/failing")) as response:
                assert response.status == 500
    failed = [r for r in caplog.records if "/failing" in r.getMessage()]
    assert [(r.levelno, r.status) for r in failed] == [(logging.ERROR, 500)]
