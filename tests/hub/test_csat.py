"""CSAT on resolve (issue #17), over every storage backend: one survey per
resolve, written with it; an answer once, on the timeline and the ticket."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from hub import csat, keys
from hub.errors import InvalidInput
from hub.events import ConversationUpdated, utcnow
from hub.slack.store import snapshot
from hub.storage.schema import csat_surveys, outbox
from tests.conftest import Hub
from tests.hub.test_tickets import conversation, handoff


async def surveys_of(hub: Hub, conversation_id: int) -> list[csat.Survey]:
    def read(conn: sa.Connection) -> list[csat.Survey]:
        found = conn.execute(
            sa.select(csat_surveys).where(csat_surveys.c.conversation_id == conversation_id).order_by(csat_surveys.c.id)
        )
        return [csat._survey(r) for r in found]

    return await hub.db.read(read)


async def survey_messages(hub: Hub, conversation_id: int) -> list[dict]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    return [m for m in page["items"] if "csat" in (m.get("meta") or {})]


async def resolved_ticket(hub: Hub, sender: str) -> tuple[int, int]:
    conv = await conversation(hub, sender, "My parcel never came")
    ticket = await handoff(hub, conv["id"], priority="normal")
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent")
    return conv["id"], ticket["id"]


@pytest.mark.asyncio
async def test_a_resolve_sends_one_survey_with_its_outbox_row(hub: Hub) -> None:
    conversation_id, ticket_id = await resolved_ticket(hub, "csat-1")
    [survey] = await surveys_of(hub, conversation_id)
    assert survey.ticket_id == ticket_id and survey.channel == "fake" and survey.rating is None
    assert survey.expires_at - survey.sent_at == timedelta(hours=72)
    [message] = await survey_messages(hub, conversation_id)
    assert message["direction"] == "outbound" and message["author_kind"] == "system"
    assert message["meta"]["csat"]["survey_id"] == survey.id
    # The survey message went through the outbox like any reply.
    rows = await hub.db.read(
        lambda conn: conn.execute(sa.select(outbox.c.idempotency_key).where(outbox.c.message_id == message["id"])).all()
    )
    assert [r.idempotency_key for r in rows] == [f"csat:{survey.id}"]

    # Resolving again (reopened, then resolved) never sends a second survey for the ticket.
    await hub.api("POST", f"/api/v1/tickets/{ticket_id}/resolve", role="agent", expect=None)
    await hub.api("PATCH", f"/api/v1/conversations/{conversation_id}", json={"status": "open"})
    await hub.api("PATCH", f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})
    assert len(await surveys_of(hub, conversation_id)) == 1
    assert len(await survey_messages(hub, conversation_id)) == 1


@pytest.mark.asyncio
async def test_a_conversation_resolved_without_a_ticket_is_surveyed_once_while_open(hub: Hub) -> None:
    conv = await conversation(hub, "csat-2", "thanks, that answers it")
    await hub.api("PATCH", f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"})
    await hub.api("PATCH", f"/api/v1/conversations/{conv['id']}", json={"status": "open"})
    await hub.api("PATCH", f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"})
    [survey] = await surveys_of(hub, conv["id"])
    assert survey.ticket_id is None


@pytest.mark.asyncio
async def test_the_answer_lands_on_the_timeline_and_the_ticket_and_a_second_is_refused(hub: Hub) -> None:
    conversation_id, ticket_id = await resolved_ticket(hub, "csat-3")
    [survey] = await surveys_of(hub, conversation_id)
    service = hub.app[keys.CSAT]

    with pytest.raises(InvalidInput):
        await service.answer(survey.id, 6)
    first = await service.answer(survey.id, 4, "quick and kind")
    assert first.outcome == csat.Outcome.RECORDED
    second = await service.answer(survey.id, 1)
    assert second.outcome == csat.Outcome.ALREADY_ANSWERED
    assert second.reply == "Thanks, we already have your rating."

    [stored] = await surveys_of(hub, conversation_id)
    assert (stored.rating, stored.comment) == (4, "quick and kind") and stored.answered_at is not None
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    lines = [m for m in page["items"] if m["kind"] == "event" and m["meta"].get("event") == "csat-rated"]
    assert len(lines) == 1 and lines[0]["meta"]["rating"] == 4 and "4/5" in lines[0]["body"]
    snap = await hub.db.read(snapshot, ticket_id)
    assert snap.csat_rating == 4

    # The comment goes with the rating once; a later one is refused politely.
    again = await service.comment(survey.id, "another thought")
    assert again.outcome == csat.Outcome.ALREADY_ANSWERED

    # The person's rating and words are theirs: the contact export has them.
    contact_id = (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["contact_id"]
    export = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
    [exported] = export["surveys"]
    assert (exported["kind"], exported["rating"], exported["comment"]) == ("csat", 4, "quick and kind")
    assert exported["ticket_id"] == ticket_id and exported["answered_at"] is not None


@pytest.mark.asyncio
async def test_a_comment_after_the_rating_and_an_expired_survey_refused(hub: Hub) -> None:
    conversation_id, _ = await resolved_ticket(hub, "csat-4")
    [survey] = await surveys_of(hub, conversation_id)
    service = hub.app[keys.CSAT]
    with pytest.raises(InvalidInput):
        await service.comment(survey.id, "before rating")
    assert (await service.answer(survey.id, 5)).outcome == csat.Outcome.RECORDED
    assert (await service.comment(survey.id, "  lovely  ")).outcome == csat.Outcome.RECORDED
    [stored] = await surveys_of(hub, conversation_id)
    assert stored.comment == "lovely"

    other_id, _ = await resolved_ticket(hub, "csat-5")
    [late] = await surveys_of(hub, other_id)
    await hub.db.write(
        lambda conn: conn.execute(
            sa.update(csat_surveys)
            .where(csat_surveys.c.id == late.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    )
    assert await service.open_survey(other_id) is None
    expired = await service.answer(late.id, 3)
    assert expired.outcome == csat.Outcome.EXPIRED and expired.survey.rating is None


@pytest.mark.asyncio
async def test_a_resolve_and_its_survey_commit_or_roll_back_together(hub: Hub) -> None:
    conv = await conversation(hub, "csat-6", "help")
    ticket = await handoff(hub, conv["id"], priority="normal")

    def fail(conn: sa.Connection, event: ConversationUpdated) -> None:
        if event.changes.get("status") == "resolved":
            raise RuntimeError("a later hook fails")

    remove = hub.service.tx_hooks.add(ConversationUpdated, fail)  # runs after the survey's hook
    try:
        await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent", expect=500)
    finally:
        remove()
    assert await surveys_of(hub, conv["id"]) == [] and await survey_messages(hub, conv["id"]) == []
    assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["status"] == "open"
    await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent")
    assert len(await surveys_of(hub, conv["id"])) == 1


@pytest.mark.asyncio
async def test_an_erasure_takes_the_survey_and_its_comment(hub: Hub) -> None:
    conversation_id, _ = await resolved_ticket(hub, "csat-7")
    [survey] = await surveys_of(hub, conversation_id)
    await hub.app[keys.CSAT].answer(survey.id, 2, "Quibblewort was rude")
    contact_id = (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["contact_id"]
    await hub.api("DELETE", f"/api/v1/contacts/{contact_id}")
    assert await surveys_of(hub, conversation_id) == []
    left = await hub.db.read(lambda conn: conn.execute(sa.select(csat_surveys)).all())
    assert not [row for row in left if "Quibblewort" in str(row)]
