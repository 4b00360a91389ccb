"""CSAT by e-mail (issue #17): one-click signed rating links, the comment
form, a second answer refused politely, expired and forged links refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.csat_links import LinkSigner
from tests.channels.email_support import REPLY_SECRET, email_hub, mail, smtp_send, timeline

LINK = re.compile(r"http://127\.0\.0\.1:8080(/csat/[^/\s]+/)(\d)")


@pytest.mark.asyncio
async def test_rating_links_answer_once_with_a_comment_and_bad_links_get_clear_pages(
    database_url: str, tmp_path: Path
) -> None:
    async with email_hub(database_url, tmp_path) as running:
        hub = running.hub
        assert (await smtp_send(running.smtp_port, mail("Where is my parcel?"))).data == 250
        [question] = await timeline(hub)
        await hub.api("PATCH", f"/api/v1/conversations/{question.conversation_id}", json={"status": "resolved"})
        [sent] = await running.sink.wait_for(1)
        plain = sent.message.get_body(("plain",))
        assert plain is not None
        text = plain.get_content()
        links = LINK.findall(text)
        assert [rating for _, rating in links] == ["1", "2", "3", "4", "5"] and len({p for p, _ in links}) == 1
        prefix = links[0][0]

        page = await hub.client.get(f"{prefix}4")
        body = await page.text()
        assert page.status == 200 and "You rated us 4 out of 5." in body and "<script" not in body
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        action = re.search(r'action="(/csat/[^"]+/comment)"', body)
        assert action is not None

        posted = await hub.client.post(action.group(1), data={"comment": "Quick & kind <3"})
        assert posted.status == 200 and "Thanks for your comment!" in await posted.text()
        again = await hub.client.get(f"{prefix}1")
        assert again.status == 200 and "Thanks, we already have your rating." in await again.text()

        events = await hub.api("GET", f"/api/v1/conversations/{question.conversation_id}/timeline")
        lines = [m["body"] for m in events["items"] if m["kind"] == "event" and m["meta"]["event"].startswith("csat-")]
        assert lines == [
            "Customer rated the conversation 4/5.",
            "Customer's comment on their 4/5 rating: “Quick & kind <3”",
        ]

        # Forged, altered, of the other kind, or expired: a clear page, never a 500.
        survey_id = int(prefix.split("/")[2].split(".")[0])
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
            f"{action.group(1).rsplit('/', 1)[0]}/5",  # the comment token used as a rating link
        ):
            response = await hub.client.get(path)
            assert response.status == 400 and "not valid" in await response.text(), path
        forged_comment = await hub.client.post(f"/csat/{token}/comment", data={"comment": "hi"})
        assert forged_comment.status == 400
        expired = LinkSigner(REPLY_SECRET.encode(), "http://x").token(
            "rate", survey_id, datetime.now(UTC) - timedelta(seconds=1)
        )
        closed = await hub.client.get(f"/csat/{expired}/5")
        assert closed.status == 410 and "closed" in await closed.text()
