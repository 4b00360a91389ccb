"""Content gaps: the search log (portal and bot) and the report that clusters unanswered questions.

The must-show (issue #17) runs the real all-MiniLM-L6-v2 model over the
sample knowledge base: 30 phrasings of a question it cannot answer (gear
rental) and 30 of one it can (resetting a password), searched on the
portal. The storage tests (bot logging, erasure, retention, no personal
data) run on every database in ``HUB_TEST_DATABASE_URLS``. The clustering
threshold was calibrated on other phrasings (``tests/hub/gap_paraphrases.py``).
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from hub import keys
from hub.events import utcnow
from hub.models import AuthorKind
from hub.storage.schema import kb_search_log
from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for
from tests.fakes.rasa import FakeRasa

UNANSWERABLE = [
    "can I rent a tent from you",
    "do you rent out camping gear",
    "is there a gear rental service",
    "I want to hire a kayak for the weekend",
    "can I borrow equipment instead of buying it",
    "do you have rental skis",
    "rent a sleeping bag for a trip",
    "how much does it cost to rent a backpack",
    "gear hire prices",
    "can I hire hiking equipment",
    "do you offer equipment rentals",
    "rental of climbing gear",
    "I only need a tent for one week, can I rent one",
    "where can I rent snowshoes",
    "do your stores rent out bikes",
    "is it possible to rent camping equipment",
    "rent stove and cookware for a camping trip",
    "tent rental",
    "can I lease outdoor gear",
    "do you do equipment hire",
    "rent a paddle board",
    "renting ski equipment for a holiday",
    "how does your rental programme work",
    "could I rent a tent rather than buy one",
    "camping gear for rent?",
    "book rental equipment",
    "hire a tent and sleeping mats",
    "do you rent gear to groups",
    "short term rental of hiking gear",
    "can I rent trekking poles",
]
ANSWERABLE = [
    "how do I reset my password",
    "I forgot my password",
    "reset password",
    "can't remember my password",
    "forgotten password, how do I get back in",
    "how to change my password if I forgot it",
    "password reset link",
    "I need a new password",
    "lost my password",
    "how can I recover my password",
    "my password doesn't work, how do I reset it",
    "reset my account password",
    "forgot password help",
    "how do I set a new password",
    "password reset email",
    "I can't log in because I forgot my password",
    "help me reset my password",
    "where do I reset my password",
    "recover password",
    "forgotten my password",
    "change forgotten password",
    "how to reset the password on my account",
    "I don't know my password anymore",
    "steps to reset password",
    "password forgotten what do I do",
    "get a password reset",
    "can you reset my password",
    "how do I reset a forgotten password",
    "new password please, I forgot the old one",
    "password recovery",
]


async def _rows(hub: Hub) -> list[dict[str, Any]]:
    def read(conn: Any) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in conn.execute(sa.select(kb_search_log).order_by(kb_search_log.c.id))]

    return await hub.db.read(read)


async def _gaps(hub: Hub) -> dict[str, Any]:
    since = (utcnow() - timedelta(days=1)).date().isoformat()
    until = (utcnow() + timedelta(days=2)).date().isoformat()
    return await hub.api("GET", "/api/v1/reports/gaps", role="viewer", params={"from": since, "to": until})


@pytest.fixture(scope="module")
def real_embedder() -> Any:
    from knowledge_base import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.load()
    return embedder


@pytest_asyncio.fixture
async def real_kb_hub(sqlite_url: str, tmp_path: Path, real_embedder: Any) -> AsyncIterator[Hub]:
    settings = make_settings(
        sqlite_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, kb_search_rate_limit="1000/minute"
    )
    hub = await start_hub(settings, knowledge_base=KnowledgeBase(data_dir=tmp_path / "kb", embedder=real_embedder))
    try:
        yield hub
    finally:
        await close_hub(hub)


@pytest_asyncio.fixture
async def kb_hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    settings = make_settings(
        database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, kb_search_rate_limit="1000/minute"
    )
    hub = await start_hub(settings, knowledge_base=KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder()))
    try:
        yield hub
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_thirty_phrasings_of_a_missing_article_are_one_row_and_an_answered_question_is_not_listed(
    real_kb_hub: Hub,
) -> None:
    hub = real_kb_hub
    for query in UNANSWERABLE:
        response = await hub.client.get("/help/search", params={"q": query})
        assert response.status == 200
    for query in ANSWERABLE:  # the customer found it: they open the first result
        page = await (await hub.client.get("/help/search", params={"q": query})).text()
        first = re.search(r'href="(/help/articles/[^"]+\?s=[^"]+)"', page)
        assert first is not None
        assert (await hub.client.get(html.unescape(first.group(1)))).status == 200
    await hub.app[keys.SEARCH_LOG].flush()
    rows = await _rows(hub)
    assert len(rows) == 60 and {r["source"] for r in rows} == {"portal"}

    report = await _gaps(hub)
    clusters = report["groups"]["clusters"]
    rental = [c for c in clusters if set(c["examples"]) & set(UNANSWERABLE)]
    # One cluster, all thirty: no tolerance was needed with 0.45 (a phrasing
    # that split off would show as a second row of the rental questions).
    assert len(rental) == 1, rental
    assert rental[0]["count"] == 30 and rental[0]["phrasings"] == 30
    assert len(rental[0]["examples"]) == 5
    listed = {example for c in clusters for example in c["examples"]}
    assert not listed & set(ANSWERABLE), clusters
    assert report["totals"][0]["asked"] == 60


@pytest.mark.asyncio
async def test_a_click_on_a_result_is_logged_and_a_search_keeps_no_personal_data(kb_hub: Hub) -> None:
    hub = kb_hub
    page = await hub.client.get(
        "/help/search",
        params={"q": "  where   is my\norder "},
        headers={"X-Forwarded-For": "203.0.113.9", "Cookie": "sh_voter=voter-cookie-value"},
    )
    text = await page.text()
    link = re.search(r'href="(/help/articles/[^"]+\?s=[^"]+)"', text)
    assert link is not None, text
    await hub.client.get(html.unescape(link.group(1)))
    await hub.app[keys.SEARCH_LOG].flush()
    (row,) = await _rows(hub)
    assert row["query"] == "where is my order" and row["source"] == "portal"
    assert row["clicked_article_id"] == link.group(1).split("/articles/")[1].split("?")[0]
    assert row["conversation_id"] is None and row["message_id"] is None
    values = " ".join(str(v) for v in row.values())
    assert "203.0.113" not in values and "voter-cookie-value" not in values and "127.0.0.1" not in values


async def _bot_turn(hub: Hub, sender: str, text: str, decision: dict[str, Any]) -> tuple[int, int]:
    """A customer's message and the bot's reply with its decision, as the bridge stores it."""
    received = await hub.inbound({"from": sender, "text": text})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    conversation_id, message_id = message["conversation_id"], message["id"]
    meta = {"in_reply_to": message_id, "decision": decision}
    for index in range(2):  # a turn of two replies logs once
        await hub.service.reply(
            conversation_id,
            f"reply {index}",
            author_kind=AuthorKind.BOT,
            idempotency_key=f"bot:{message_id}:{index}",
            meta=meta,
        )
    return conversation_id, message_id


@pytest.mark.asyncio
async def test_bot_lookups_are_logged_with_their_outcome_and_erased_with_the_contact(kb_hub: Hub) -> None:
    hub = kb_hub
    conversation_id, message_id = await _bot_turn(
        hub, "+15550001", "do you rent tents", {"action": "topics", "confidence": 0.1, "article_ids": []}
    )
    await _bot_turn(
        hub, "+15550002", "where is my parcel",
        {"action": "answer", "article_id": "track-your-order", "collection": "default", "confidence": 0.91},
    )  # fmt: skip
    await _bot_turn(hub, "+15550003", "I want a person now", {"action": "handoff", "reason": "human", "signals": []})
    rows = await _rows(hub)
    assert [(r["query"], r["outcome"], r["article_id"]) for r in rows] == [
        ("do you rent tents", "no_results", None),
        ("where is my parcel", "answered", "track-your-order"),
    ]  # a handoff without a lookup is not logged
    assert rows[0]["conversation_id"] == conversation_id and rows[0]["message_id"] == message_id

    report = await _gaps(hub)
    assert [c["question"] for c in report["groups"]["clusters"]] == ["do you rent tents"]

    conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    await hub.api("DELETE", f"/api/v1/contacts/{conversation['contact_id']}")
    assert [r["query"] for r in await _rows(hub)] == ["where is my parcel"]


@pytest.mark.asyncio
async def test_rows_past_the_retention_are_swept(kb_hub: Hub) -> None:
    hub = kb_hub
    searches = hub.app[keys.SEARCH_LOG]
    assert searches.days == 90
    await hub.client.get("/help/search", params={"q": "refund"})
    await wait_for(lambda: _rows(hub))  # the writer's own batch, within a second
    now = utcnow()
    assert await searches.sweep(now + timedelta(days=89)) == 0
    assert await searches.sweep(now + timedelta(days=91)) == 1
    assert await _rows(hub) == []


@pytest.mark.asyncio
async def test_the_articles_most_voted_unhelpful_are_listed(kb_hub: Hub) -> None:
    from hub.storage.schema import kb_votes

    votes = [("refunds", False, "a"), ("refunds", False, "b"), ("refunds", True, "c"), ("returns", False, "a")]
    votes += [("track-your-order", True, "a")]

    def insert(conn: Any) -> None:
        conn.execute(
            sa.insert(kb_votes),
            [
                {"collection": "default", "article_id": a, "helpful": h, "voter_key": v, "created_at": utcnow()}
                for a, h, v in votes
            ],
        )

    await kb_hub.db.write(insert)
    report = await _gaps(kb_hub)
    assert [(r["article_id"], r["unhelpful"], r["helpful"]) for r in report["groups"]["unhelpful"]] == [
        ("refunds", 2, 1),
        ("returns", 1, 0),
    ]


@pytest.mark.asyncio
async def test_the_bot_bridge_logs_its_lookup_when_it_stores_the_reply(
    database_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    settings = make_settings(
        database_url, tmp_path, bot="rasa", rasa_url=rasa.url, rasa_timeout=0.5, rasa_ready_wait=1.0
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        received = await hub.inbound({"from": "bridge-visitor", "text": "How  do refunds\twork?"})
        message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")

        async def logged() -> list[dict[str, Any]]:
            return await _rows(hub)

        rows = await wait_for(logged)
        assert [(r["source"], r["query"], r["outcome"], r["article_id"], r["confidence"]) for r in rows] == [
            ("bot", "How do refunds work?", "answered", "refunds", 0.8)
        ]
        assert rows[0]["conversation_id"] == message["conversation_id"] and rows[0]["message_id"] == message["id"]
        # A request for a person: handed off without asking the knowledge base, so no gap is logged.
        await hub.inbound({"from": "bridge-visitor", "text": "I want to talk to a person"})

        async def handed_off() -> bool:
            conversation = await hub.api("GET", f"/api/v1/conversations/{message['conversation_id']}")
            return bool(conversation["handler"] == "human")

        await wait_for(handed_off)
        assert len(await _rows(hub)) == 1
    finally:
        await close_hub(hub)


def test_each_bot_decision_maps_to_an_outcome() -> None:
    from hub.kb.searchlog import bot_row

    def outcome(meta: dict[str, Any]) -> tuple[Any, ...] | None:
        row = bot_row(meta, "  a \n question ")
        return None if row is None else (row["outcome"], row["article_id"], row["confidence"], row["query"])

    clarify = {"decision": {"action": "clarify", "confidence": 0.5, "article_ids": ["refunds", "returns"]}}
    assert outcome(clarify) == ("clarified", "refunds", 0.5, "a question")
    assert outcome({"decision": {"action": "topics", "confidence": 0.1, "article_ids": []}})[:2] == ("no_results", None)  # type: ignore[index]  # not None here
    assert outcome({"decision": {"action": "offer_human", "confidence": 0.2}})[0] == "no_results"  # type: ignore[index]  # not None here
    complaint = {"decision": {"action": "handoff", "reason": "complaint", "confidence": 0.3, "signals": []}}
    assert outcome(complaint)[0] == "handed_off"  # type: ignore[index]  # not None here
    assert outcome({"decision": {"action": "handoff", "reason": "urgent_issue", "signals": ["nlu"]}}) is None
    fallback = {"fallback": True, "confidence": 0.8, "kb_hits": [{"article_id": "refunds", "collection": "default"}]}
    assert outcome(fallback) == ("answered", "refunds", 0.8, "a question")
    assert outcome({"handoff": True}) is None
