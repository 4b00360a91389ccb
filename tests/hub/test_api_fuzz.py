"""Schemathesis against a live hub: the API does what its document says (issue #13).

A throwaway hub (SQLite in the test's tmp dir, the fake channel, the
knowledge base on the deterministic HashingEmbedder with the sample articles)
is seeded with a little of everything (contacts with conversations, a note, a
ticket, a routing rule), then ``schemathesis run`` fetches the served
``/api/v1/openapi.json`` and tests every operation with an admin token: every
check (``--checks all``), every phase (examples, coverage, fuzzing, stateful
along the document's ``links``), positive and negative data, all methods
including DELETE. It must end with no failure at all: no 5xx, no status,
header, content type or body the document does not declare, no valid input
refused and no invalid input accepted.

Nothing is excluded: Rasa and Slack are not configured in this hub (the bot
model answers ``adapting: false``, the Slack queue is empty) and an article
PUT re-indexes one article with the test embedder, which is quick. The
fuzzer's own token gets an id no generator will draw, or a generated
``DELETE /api/v1/tokens/{id}`` would revoke it halfway through the run.

What the document cannot say, the run's configuration says, narrowly: a body
that names another record (``source_id``, ``assignee_id``) or an opaque
timeline cursor may be well-formed and still refused with a 400 (no such
user, a contact merged into itself, a cursor the hub never gave out), so
those few operations also accept 400 for valid-looking data.

Bounds: ``FUZZ_MAX_EXAMPLES`` cases per operation and phase and a
``FUZZ_MAX_TIME`` budget for the whole run (about three minutes on two cores);
``HUB_FUZZ_MAX_TIME`` overrides the budget for a longer run by hand. The seed
is fixed, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.storage.schema import api_tokens
from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.conftest import Hub, make_settings, start_hub

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZ_SEED = 13
FUZZ_MAX_EXAMPLES = 30
FUZZ_MAX_TIME = int(os.environ.get("HUB_FUZZ_MAX_TIME", "150"))
FUZZER_TOKEN_ID = 7_340_519_862_213  # far from the small ids generators try first

# Operations whose valid-looking input can name something that is not there.
CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/(contacts|conversations)/\\\\{id\\\\}/timeline$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-path-regex = "^/api/v1/contacts/\\\\{id\\\\}/merge$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-path-regex = "^/api/v1/(conversations/\\\\{id\\\\}|tickets/\\\\{id\\\\}/assign)$"
include-method = "PATCH"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# Reports: rules a schema cannot say (a real calendar date, `to` after `from`,
# a known time zone, at most 2,000 buckets, a filter the report takes) are a 400.
[[operations]]
include-path-regex = "^/api/v1/reports/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# A canned reply's body is a template: a well-formed string may not parse or
# may name an unknown variable (400 naming it); its preview may render
# longer than the limit.
[[operations]]
include-path-regex = "^/api/v1/(canned-replies(/\\\\{name\\\\})?|conversations/\\\\{id\\\\}/canned-replies/\\\\{name\\\\}/preview)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# An automation rule: `text_matches` is a string that may not compile as a
# regular expression, and a PATCH is checked merged with the stored rule
# (silent_hours only on a customer_silent rule): a 400 naming it.
[[operations]]
include-path-regex = "^/api/v1/automation/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# Webhook endpoints: a well-formed URL may still be refused (a private or
# loopback destination while HUB_WEBHOOK_ALLOW_PRIVATE is off, credentials,
# a fragment, no host), and a rotation to the current secret is a 400.
[[operations]]
include-path-regex = "^/api/v1/webhooks"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]
"""


async def _seed(hub: Hub) -> None:
    """A little of everything the API reads, so that ids and links lead
    somewhere: contacts, conversations with notes, tickets, phrasing
    suggestions (an agent's link to an article after a handoff), a rule, a
    webhook endpoint with a delivery."""
    for n in range(4):
        received = await hub.inbound(
            {"from": f"fuzz-{n}", "text": "How long does a refund take?", "id": f"fuzz-{n}-1", "name": f"Visitor {n}"}
        )
        message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
        conversation = message["conversation_id"]
        await hub.api("POST", f"/api/v1/conversations/{conversation}/notes", json={"text": "seeded"}, expect=201)
        if n < 3:
            await hub.api("POST", f"/api/v1/conversations/{conversation}/handoff", json={}, expect=201)
            text = "See /help/articles/refunds" if n < 2 else "See /help/articles/returns-and-exchanges"
            await hub.api("POST", f"/api/v1/conversations/{conversation}/messages", json={"text": text}, expect=201)
    assert len((await hub.api("GET", "/api/v1/kb/suggestions"))["items"]) >= 2
    await hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "greeting", "title": "Greeting", "body": "Hi {{ contact.first_name }}, {{ agent.name }} here."},
        expect=201,
    )
    webhook = await hub.api(
        "POST",
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/servicehub", "events": ["*"], "description": "fuzz"},
        expect=201,
    )
    await hub.api("POST", f"/api/v1/webhooks/{webhook['id']}/ping", expect=202)
    await hub.api(
        "POST",
        "/api/v1/routing/rules",
        json={"kind": "keyword", "params": {"words": ["refund"]}, "priority": "high"},
        expect=201,
    )


async def _fuzzer_token(hub: Hub) -> str:
    """The admin token the fuzzer uses, moved to an id nothing will draw."""
    token = hub.tokens["admin"]
    await hub.db.write(
        lambda conn: conn.execute(
            sa.update(api_tokens).where(api_tokens.c.prefix == token[:12]).values(id=FUZZER_TOKEN_ID)
        )
    )
    return token


async def _run_schemathesis(base_url: str, token: str, workdir: Path) -> tuple[int, str]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{base_url}/api/v1/openapi.json",
        "--url",
        base_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--mode",
        "all",
        "--max-examples",
        str(FUZZ_MAX_EXAMPLES),
        "--max-time",
        str(FUZZ_MAX_TIME),
        "--seed",
        str(FUZZ_SEED),
        "--generation-database",
        "none",
        # One worker: CPython 3.11's ast module is not safe across threads, and
        # schemathesis compiles patterns in each ("AST constructor recursion
        # depth mismatch", a SystemError in a clean-clone run with two).
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--report",
        "ndjson",
        "--report-dir",
        str(workdir / "report"),
        "--no-color",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), FUZZ_MAX_TIME + 120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(errors="replace")


@pytest.mark.asyncio
async def test_schemathesis_finds_nothing(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, kb_search_rate_limit="100000/minute"
    )
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    hub = await start_hub(settings, knowledge_base=kb)
    try:
        await _seed(hub)
        token = await _fuzzer_token(hub)
        base_url = str(hub.client.make_url("")).rstrip("/")
        status, output = await _run_schemathesis(base_url, token, tmp_path)
    finally:
        await hub.client.close()
    summary = _summary(output)
    (tmp_path / "schemathesis.log").write_text(output)
    print(summary)  # shown with -s: operations, phases, cases generated
    assert status == 0, f"schemathesis found problems (exit {status}):\n{output[-20_000:]}"
    assert "No issues found" in output or "failures" not in summary.lower(), summary


def _summary(output: str) -> str:
    marker = output.rfind("SUMMARY")
    return output[marker:] if marker >= 0 else output[-3000:]
