"""New article phrasings offered to an admin: from agents' links after a
handoff and from customers' helpful votes on the bot's answers; accepted
into the article's front matter, or rejected. Through the real HTTP API, on
every storage URL, with the deterministic HashingEmbedder."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from bot.client import BotTurn, RasaClient
from hub import keys
from hub.bot.bridge import BotBridge
from hub.kb.suggestions import article_links, bot_feedback
from hub.keys import KNOWLEDGE_BASE
from hub.storage.schema import kb_phrasing_suggestions, messages, metadata, outbox
from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.conftest import Hub, make_settings, start_hub, wait_for
from tests.fakes.rasa import FakeRasa

PUBLIC_URL = "https://help.example.test"
QUESTION = "When will I see my money again?"
_delivery_ids = itertools.count()


@pytest_asyncio.fixture
async def kb_hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    settings = make_settings(database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, public_url=PUBLIC_URL)
    hub = await start_hub(settings, knowledge_base=KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder()))
    try:
        yield hub
    finally:
        await hub.client.close()


async def _say(hub: Hub, sender: str, text: str) -> dict[str, Any]:
    received = await hub.inbound({"from": sender, "text": text, "id": f"delivery-{next(_delivery_ids)}"})
    return await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")


async def _handed_off(hub: Hub, sender: str, *texts: str) -> int:
    """A conversation whose customer wrote ``texts``, then handed to humans."""
    conversation_id = 0
    for text in texts:
        conversation_id = (await _say(hub, sender, text))["conversation_id"]
    await hub.api("POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", expect=201)
    return conversation_id


async def _reply(hub: Hub, conversation_id: int, text: str, *, expect: int = 201) -> Any:
    return await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent", json={"text": text}, expect=expect
    )


async def _suggestions(hub: Hub, role: str = "viewer", **params: str) -> list[dict[str, Any]]:
    return (await hub.api("GET", "/api/v1/kb/suggestions", role=role, params=params))["items"]


async def _user_id(hub: Hub, role: str) -> int:
    return (await hub.api("GET", "/api/v1/me", role=role))["id"]


# --- agents' links after a handoff ------------------------------------------------


@pytest.mark.asyncio
async def test_an_agents_link_after_a_handoff_offers_the_customers_question(kb_hub: Hub) -> None:
    cid = await _handed_off(kb_hub, "vote-1", "hello", QUESTION, "yes please")
    await _say(kb_hub, "vote-1", "hello? anyone there?")  # after the handoff: not the question
    await _reply(kb_hub, cid, "Hi, Sam here, let me look into it.")
    assert await _suggestions(kb_hub) == []

    await _reply(kb_hub, cid, f"Refunds take a few days, see [Refunds]({PUBLIC_URL}/help/articles/refunds).")
    [suggestion] = await _suggestions(kb_hub)
    assert suggestion["text"] == QUESTION and suggestion["status"] == "pending"
    assert (suggestion["collection"], suggestion["article_id"], suggestion["source"]) == (
        "default",
        "refunds",
        "agent-link",
    )
    assert suggestion["conversation_id"] == cid and suggestion["suggested_by"] == await _user_id(kb_hub, "agent")
    assert suggestion["votes"] == 1 and suggestion["decided_at"] is None

    # The same link again in this conversation is no new vote; another conversation's is.
    await _reply(kb_hub, cid, "Here it is once more: /help/articles/refunds")
    other = await _handed_off(kb_hub, "vote-2", "when will I see my  money again?")
    await _reply(kb_hub, other, f"See {PUBLIC_URL}/help/articles/refunds and /help/shop/articles/returns-and-exchanges")
    by_article = {(s["collection"], s["article_id"]): s for s in await _suggestions(kb_hub)}
    assert set(by_article) == {("default", "refunds"), ("shop", "returns-and-exchanges")}
    assert by_article[("default", "refunds")]["votes"] == 2
    assert by_article[("default", "refunds")]["text"] == QUESTION  # the first wording stays
    assert by_article[("shop", "returns-and-exchanges")]["text"] == "when will I see my money again?"


@pytest.mark.asyncio
async def test_no_suggestion_without_a_handoff_or_a_help_centre_link(kb_hub: Hub) -> None:
    bot_only = (await _say(kb_hub, "no-handoff", QUESTION))["conversation_id"]
    await _reply(kb_hub, bot_only, f"See {PUBLIC_URL}/help/articles/refunds")
    handed = await _handed_off(kb_hub, "elsewhere", QUESTION)
    await _reply(kb_hub, handed, "See https://other.example/help/articles/refunds or example.com/help/articles/refunds")
    await kb_hub.api(
        "POST",
        f"/api/v1/conversations/{handed}/notes",
        role="agent",
        json={"text": "/help/articles/refunds"},
        expect=201,
    )
    assert await _suggestions(kb_hub, status="all") == []


@pytest.mark.asyncio
async def test_the_reply_and_its_suggestion_commit_together(kb_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.kb.suggestions

    cid = await _handed_off(kb_hub, "atomic", QUESTION)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(hub.kb.suggestions, "record", broken)
    await _reply(kb_hub, cid, "See /help/articles/refunds", expect=500)

    def stored(conn: sa.Connection) -> tuple[int, int]:
        replies = conn.execute(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(messages.c.conversation_id == cid, messages.c.author_kind == "agent")
        ).scalar_one()
        deliveries = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.conversation_id == cid)
        ).scalar_one()
        return replies, deliveries

    assert await kb_hub.db.read(stored) == (0, 0)
    monkeypatch.undo()
    await _reply(kb_hub, cid, "See /help/articles/refunds")
    assert await kb_hub.db.read(stored) == (1, 1) and len(await _suggestions(kb_hub)) == 1


# --- customers' votes on the bot's answers -------------------------------------------


def _vote(query: str, *, helpful: bool = True, article_id: str = "refunds") -> BotTurn:
    feedback = {"helpful": helpful, "query": query, "article_id": article_id, "collection": "default"}
    return BotTurn(texts=["Glad I could help!"], custom=[{"kb_feedback": feedback}])


@pytest.mark.asyncio
async def test_a_helpful_vote_on_the_bots_answer_offers_the_question(kb_hub: Hub) -> None:
    bridge = BotBridge(kb_hub.service, kb_hub.db, RasaClient("http://127.0.0.1:9"), kb_hub.app[keys.METRICS])

    async def vote(sender: str, turn: BotTurn) -> int:
        message = await kb_hub.service.get_message((await _say(kb_hub, sender, "yes"))["id"])
        await bridge._apply(turn, await kb_hub.service.get_conversation(message.conversation_id), message)
        return message.conversation_id

    cid = await vote("voter-1", _vote(QUESTION))
    [suggestion] = await _suggestions(kb_hub)
    assert (suggestion["text"], suggestion["source"], suggestion["votes"]) == (QUESTION, "bot-vote", 1)
    assert suggestion["conversation_id"] == cid and suggestion["suggested_by"] is None
    bot_replies = [
        m
        for m in (await kb_hub.api("GET", f"/api/v1/conversations/{cid}/timeline"))["items"]
        if m["author_kind"] == "bot"
    ]
    assert [m["body"] for m in bot_replies] == ["Glad I could help!"]

    await vote("voter-1", _vote(QUESTION))  # the same conversation again
    await vote("voter-2", _vote("  when will i SEE my money again? "))
    [suggestion] = await _suggestions(kb_hub)
    assert suggestion["votes"] == 2 and suggestion["text"] == QUESTION

    # Not helpful, the article's own title, an article that does not exist: nothing.
    await vote("voter-3", _vote("Is my refund lost?", helpful=False))
    await vote("voter-3", _vote(" refunds "))
    await vote("voter-3", _vote("Where is my refund?", article_id="no-such-article"))
    await vote("voter-3", BotTurn(texts=["Answer"], custom=[{"kb_hits": [], "confidence": 0.9}]))
    assert [s["text"] for s in await _suggestions(kb_hub, status="all")] == [QUESTION]


class VotingRasa(FakeRasa):
    """Answers from the refunds article, and takes a "yes" as a helpful vote on it."""

    asked: str = ""

    def answer(self, text: str) -> list[dict[str, Any]]:
        if text != "yes":
            self.asked = text
            return super().answer(text)
        feedback = {"helpful": True, "query": self.asked, "article_id": "refunds", "collection": "default"}
        return [{"text": "Glad I could help!"}, {"custom": {"kb_feedback": feedback}}]


@pytest.mark.asyncio
async def test_a_vote_through_the_bot_bridge_and_rasa(sqlite_url: str, tmp_path: Path) -> None:
    rasa = VotingRasa()
    await rasa.start()
    settings = make_settings(
        sqlite_url,
        tmp_path,
        bot="rasa",
        rasa_url=rasa.url,
        rasa_timeout=2.0,
        rasa_ready_wait=1.0,
        kb_enabled=True,
        kb_seed_dir=SAMPLE_DIR,
    )
    hub = await start_hub(settings, knowledge_base=KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder()))
    try:
        await _say(hub, "rasa-voter", QUESTION)
        await _say(hub, "rasa-voter", "yes")
        [suggestion] = await wait_for(lambda: _suggestions(hub))
        assert (suggestion["text"], suggestion["article_id"], suggestion["source"]) == (QUESTION, "refunds", "bot-vote")
    finally:
        await hub.client.close()
        await rasa.stop()


# --- the admin's decision ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_accepting_writes_the_question_into_the_article_and_search_finds_it(kb_hub: Hub) -> None:
    kb: KnowledgeBase = kb_hub.app[KNOWLEDGE_BASE]
    before = await kb.search(QUESTION, k=3)
    assert before.hits[0].article_id != "refunds"
    cid = await _handed_off(kb_hub, "accept-me", QUESTION)
    await _reply(kb_hub, cid, "See /help/articles/refunds")
    [suggestion] = await _suggestions(kb_hub)

    for role in ("viewer", "agent"):
        await kb_hub.api("POST", f"/api/v1/kb/suggestions/{suggestion['id']}/accept", role=role, expect=403)
    accepted = await kb_hub.api("POST", f"/api/v1/kb/suggestions/{suggestion['id']}/accept")
    assert accepted["status"] == "accepted" and accepted["decided_by"] == await _user_id(kb_hub, "admin")
    assert accepted["decided_at"] is not None

    front_matter = kb.articles.path("default", "refunds").read_text(encoding="utf-8").split("---")[1]
    assert f"questions:\n- {QUESTION}" in front_matter and "title: Refunds" in front_matter
    article = await kb_hub.api("GET", "/api/v1/kb/articles/refunds", role="viewer")
    assert article["questions"] == [QUESTION] and article["category"] == "Returns & Refunds"
    after = await kb.search(QUESTION, k=3)
    assert after.hits[0].article_id == "refunds" and after.confidence > before.confidence

    again = await kb_hub.api("POST", f"/api/v1/kb/suggestions/{suggestion['id']}/accept", expect=409)
    assert again["error"]["code"] == "conflict"
    await kb_hub.api("POST", f"/api/v1/kb/suggestions/{suggestion['id']}/reject", expect=409)
    assert await _suggestions(kb_hub) == []
    assert [s["id"] for s in await _suggestions(kb_hub, status="accepted")] == [suggestion["id"]]

    # A phrasing the article now has is not offered again by a vote.
    bridge = BotBridge(kb_hub.service, kb_hub.db, RasaClient("http://127.0.0.1:9"), kb_hub.app[keys.METRICS])
    message = await kb_hub.service.get_message((await _say(kb_hub, "late-voter", "yes"))["id"])
    await bridge._apply(
        _vote(QUESTION.upper()), await kb_hub.service.get_conversation(message.conversation_id), message
    )
    [unchanged] = await _suggestions(kb_hub, status="all")
    assert unchanged["votes"] == 1

    audit = await kb_hub.api("GET", "/api/v1/audit")
    [entry] = [e for e in audit["items"] if e["action"] == "kb.suggestion.accept"]
    assert entry["target_id"] == str(suggestion["id"]) and QUESTION not in str(entry)


@pytest.mark.asyncio
async def test_reject_not_found_and_a_deleted_article(kb_hub: Hub) -> None:
    cid = await _handed_off(kb_hub, "reject-me", "Can I get money back for a gift card?")
    await _reply(kb_hub, cid, "See /help/articles/refunds and /help/articles/gift-cards-and-promo-codes")
    by_article = {s["article_id"]: s for s in await _suggestions(kb_hub)}

    await kb_hub.api("POST", f"/api/v1/kb/suggestions/{by_article['refunds']['id']}/reject", role="agent", expect=403)
    rejected = await kb_hub.api("POST", f"/api/v1/kb/suggestions/{by_article['refunds']['id']}/reject")
    assert rejected["status"] == "rejected"
    article = await kb_hub.api("GET", "/api/v1/kb/articles/refunds", role="viewer")
    assert article["questions"] == []
    await kb_hub.api("POST", f"/api/v1/kb/suggestions/{by_article['refunds']['id']}/accept", expect=409)

    await kb_hub.api("POST", "/api/v1/kb/suggestions/999999/accept", expect=404)
    await kb_hub.api("POST", "/api/v1/kb/suggestions/999999/reject", expect=404)
    await kb_hub.api("DELETE", "/api/v1/kb/articles/gift-cards-and-promo-codes")
    gone = await kb_hub.api(
        "POST", f"/api/v1/kb/suggestions/{by_article['gift-cards-and-promo-codes']['id']}/accept", expect=404
    )
    assert "does not exist" in gone["error"]["message"]

    assert [s["article_id"] for s in await _suggestions(kb_hub, role="agent")] == ["gift-cards-and-promo-codes"]
    assert [s["article_id"] for s in await _suggestions(kb_hub, status="rejected", article_id="refunds")] == ["refunds"]
    assert await _suggestions(kb_hub, status="all", collection="shop") == []
    await kb_hub.api("GET", "/api/v1/kb/suggestions", params={"status": "maybe"}, expect=400)
    actions = {e["action"] for e in (await kb_hub.api("GET", "/api/v1/audit"))["items"]}
    assert "kb.suggestion.reject" in actions


@pytest.mark.asyncio
async def test_erasure_takes_the_customers_lone_undecided_question(kb_hub: Hub) -> None:
    """Only the question text is kept of a customer; erasing them removes a
    suggestion only they gave, and unlinks one an admin accepted."""
    secret = "Why is my refund for order 4711 to Frank Forget late?"
    kept = await _handed_off(kb_hub, "keep-me", QUESTION)
    await _reply(kb_hub, kept, "See /help/articles/refunds")
    [accepted] = await _suggestions(kb_hub)
    await kb_hub.api("POST", f"/api/v1/kb/suggestions/{accepted['id']}/accept")
    await _reply(kb_hub, kept, "And /help/articles/returns-and-exchanges")  # a pending one of the same contact
    forget = await _handed_off(kb_hub, "forget-me", secret)
    await _reply(kb_hub, forget, "See /help/articles/refunds")
    assert len(await _suggestions(kb_hub, status="all")) == 3

    for cid in (kept, forget):
        contact_id = (await kb_hub.api("GET", f"/api/v1/conversations/{cid}"))["contact_id"]
        erased = await kb_hub.api("DELETE", f"/api/v1/contacts/{contact_id}")
        assert erased["deleted"]["kb_phrasing_suggestions"] == 1

    [left] = await _suggestions(kb_hub, status="all")
    assert left["id"] == accepted["id"] and left["conversation_id"] is None

    def scan(conn: sa.Connection) -> list[str]:
        return [
            table.name
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
            if "Frank Forget" in " ".join(str(v) for v in row)
        ]

    assert await kb_hub.db.read(scan) == []
    assert await kb_hub.db.read(lambda c: c.execute(sa.select(kb_phrasing_suggestions.c.text)).scalars().all()) == [
        QUESTION
    ]


# --- pure parts -------------------------------------------------------------------------


def test_article_links_are_the_help_centres_own() -> None:
    base = "https://help.example.test/"
    assert article_links(
        "See [Refunds](https://help.example.test/help/articles/refunds#how-long), "
        "Returns (/help/shop/articles/returns-and-exchanges) and help.example.test/help/articles/refunds.",
        base,
    ) == [("default", "refunds"), ("shop", "returns-and-exchanges")]
    assert article_links("https://evil.example/help/articles/refunds x/help/articles/refunds", base) == []
    assert article_links("/help/search/articles/refunds /help/articles/Refunds /help/articles/", base) == []


def test_bot_feedback_reads_only_a_helpful_vote() -> None:
    vote = {"helpful": True, "query": " where   is it ", "article_id": "track-your-order"}
    assert bot_feedback([{"decision": {}}, {"kb_feedback": vote}]) == ("default", "track-your-order", "where is it")
    assert bot_feedback([{"kb_feedback": {**vote, "helpful": "yes"}}]) is None
    assert bot_feedback([{"kb_feedback": {**vote, "query": ""}}]) is None
    assert bot_feedback([{"kb_feedback": {**vote, "article_id": None}}]) is None


# --- the command line ---------------------------------------------------------------


def test_the_cli_lists_accepts_and_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hub kb suggestions``: the knowledge base opened with the real model, as ``hub kb ingest`` does."""
    import asyncio
    import json
    from datetime import UTC, datetime

    from click.testing import CliRunner

    from hub.__main__ import main
    from hub.kb.suggestions import record
    from hub.storage import open_database
    from hub.storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "refunds.md").write_text("---\ntitle: Refunds\n---\n\nRefunds go back to the card you paid with.\n")
    runner = CliRunner()
    assert runner.invoke(main, ["kb", "ingest", str(articles)]).exit_code == 0

    async def seed() -> list[int | None]:
        db = open_database(url)
        try:
            now = datetime.now(UTC)
            return [
                await db.write(
                    lambda conn, text=text: record(
                        conn,
                        collection="default",
                        article_id="refunds",
                        text=text,
                        source="bot-vote",
                        conversation_id=None,
                        suggested_by=None,
                        now=now,
                    )
                )
                for text in (QUESTION, "Do you refund in cash?")
            ]
        finally:
            await db.close()

    accept_id, reject_id = asyncio.run(seed())
    listed = runner.invoke(main, ["kb", "suggestions", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["text"] for line in listed.output.splitlines()] == ["Do you refund in cash?", QUESTION]
    accepted = runner.invoke(main, ["kb", "suggestions", "--accept", str(accept_id)])
    assert accepted.exit_code == 0, accepted.output
    assert "accepted" in accepted.output
    assert f"- {QUESTION}" in (tmp_path / "data" / "kb" / "articles" / "default" / "refunds.md").read_text()
    assert runner.invoke(main, ["kb", "suggestions", "--reject", str(reject_id)]).exit_code == 0
    again = runner.invoke(main, ["kb", "suggestions", "--reject", str(reject_id)])
    assert again.exit_code == 1 and "already rejected" in again.output
    assert runner.invoke(main, ["kb", "suggestions"]).output == ""
    assert runner.invoke(main, ["kb", "suggestions", "--accept", "1", "--reject", "2"]).exit_code == 2
