"""CSAT by e-mail (issue #17): signed rating links that open a confirmation
page (a mail scanner's GET or HEAD records nothing), the rating and comment
recorded by its POST, a second answer refused politely, expired and forged
links refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub import keys
from hub.csat_links import LinkSigner
from hub.storage.schema import csat_surveys
from tests.channels.email_support import REPLY_SECRET, email_hub, mail, smtp_send, timeline
from tests.conftest import Hub

LINK = re.compile(r"http://127\.0\.0\.1:8080(/csat/[^/\s]+/)(\d+)")


async def surveyed(running: Any) -> tuple[int, str, list[tuple[str, str]]]:
    """A customer's mail, resolved: (its conversation, the survey mail's text, its links)."""
    hub = running.hub
    assert (await smtp_send(running.smtp_port, mail("Where is my parcel?"))).data == 250
    [question] = await timeline(hub)
    await hub.api("PATCH", f"/api/v1/conversations/{question.conversation_id}", json={"status": "resolved"})
    [sent] = await running.sink.wait_for(1)
    text = sent.text()
    return question.conversation_id, text, LINK.findall(text)


async def csat_lines(hub: Hub, conversation_id: int) -> list[str]:
    events = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    return [m["body"] for m in events["items"] if m["kind"] == "event" and m["meta"]["event"].startswith("csat-")]


@pytest.mark.asyncio
async def test_rating_links_answer_once_with_a_comment_and_bad_links_get_clear_pages(
    database_url: str, tmp_path: Path
) -> None:
    async with email_hub(database_url, tmp_path) as running:
        hub = running.hub
        conversation_id, text, links = await surveyed(running)
        assert [rating for _, rating in links] == ["1", "2", "3", "4", "5"] and len({p for p, _ in links}) == 1
        prefix = links[0][0]

        # A mail scanner fetches every link (and HEADs some): nothing is recorded, each only shows a page.
        for rating in "12345":
            assert (await hub.client.head(f"{prefix}{rating}")).status == 200
            scanned = await hub.client.get(f"{prefix}{rating}")
            assert scanned.status == 200 and "Please confirm your rating" in await scanned.text()
        survey_id = int(prefix.split("/")[2].split(".")[0])
        assert (await hub.app[keys.CSAT].survey(survey_id)).answered_at is None
        assert await csat_lines(hub, conversation_id) == []

        page = await hub.client.get(f"{prefix}4")
        body = await page.text()
        assert page.status == 200 and "<script" not in body
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"
        # The link's rating is selected; the others can still be chosen; a comment is optional.
        assert re.findall(r'value="(\d)"( checked)?', body) == [
            ("1", ""),
            ("2", ""),
            ("3", ""),
            ("4", " checked"),
            ("5", ""),
        ]
        assert '<textarea id="comment" name="comment"' in body
        action = re.search(r'<form method="post" action="(/csat/[^"]+)">', body)
        assert action is not None and action.group(1) == prefix.rstrip("/")

        posted = await hub.client.post(action.group(1), data={"rating": "4", "comment": "Quick & kind <3"})
        text = await posted.text()
        assert posted.status == 200 and "You rated us 4 out of 5. Thanks for your comment!" in text
        # A second answer, by the form or a link, is refused politely and changes nothing.
        again = await hub.client.post(action.group(1), data={"rating": "1"})
        assert again.status == 200 and "Thanks, we already have your rating." in await again.text()
        opened = await hub.client.get(f"{prefix}1")
        assert opened.status == 200 and "Thanks, we already have your rating." in await opened.text()
        assert "<form" not in await opened.text()

        assert await csat_lines(hub, conversation_id) == ["Customer rated the conversation 4/5: “Quick & kind <3”"]
        survey = await hub.app[keys.CSAT].survey(survey_id)
        assert (survey.rating, survey.comment) == (4, "Quick & kind <3")

        # Forged, altered, of the other kind, or expired: a clear page, never a 500.
        token = prefix.split("/")[2]
        forged = LinkSigner(b"not-the-secret", "http://x").token(
            "rate", survey_id, datetime.now(UTC) + timedelta(days=1)
        )
        for path in (
            f"/csat/{forged}/5",
            f"/csat/{token[:-2]}xx/5",
            f"/csat/{token}/9",
            f"/csat/{token}/0",
            "/csat/12.34/5",
        ):
            response = await hub.client.get(path)
            assert response.status == 400 and "not valid" in await response.text(), path
        forged_post = await hub.client.post(f"/csat/{forged}", data={"rating": "5"})
        assert forged_post.status == 400 and "not valid" in await forged_post.text()
        expired = LinkSigner(REPLY_SECRET.encode(), "http://x").token(
            "rate", survey_id, datetime.now(UTC) - timedelta(seconds=1)
        )
        closed = await hub.client.get(f"/csat/{expired}/5")
        assert closed.status == 410 and "closed" in await closed.text()
        closed_post = await hub.client.post(f"/csat/{expired}", data={"rating": "5"})
        assert closed_post.status == 410 and "closed" in await closed_post.text()


@pytest.mark.asyncio
async def test_a_confirmation_page_left_open_past_the_expiry_records_nothing(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path) as running:
        hub = running.hub
        conversation_id, _, links = await surveyed(running)
        prefix = links[0][0]
        survey_id = int(prefix.split("/")[2].split(".")[0])
        # A rating outside the scale, or none, is refused and records nothing.
        for form in ({"rating": "7"}, {"rating": "x"}, {"comment": "no rating"}):
            refused = await hub.client.post(prefix.rstrip("/"), data=form)
            assert refused.status == 400, form

        # The survey closes (its row's expiry: the hub's clock is what decides).
        def expire(conn: Any) -> None:
            conn.execute(
                sa.update(csat_surveys)
                .where(csat_surveys.c.id == survey_id)
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )

        await hub.db.write(expire)
        late = await hub.client.post(prefix.rstrip("/"), data={"rating": "5"})
        assert late.status == 410 and "closed" in await late.text()
        assert (await hub.client.get(f"{prefix}5")).status == 410
        assert (await hub.app[keys.CSAT].survey(survey_id)).answered_at is None
        assert await csat_lines(hub, conversation_id) == []
