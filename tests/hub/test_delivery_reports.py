"""The hub's side of provider delivery reports, opt-outs and reply windows.

A channel that reports delivery later (SMS) returns the provider's ids; its
reports then move the message forward only; a failure leaves the reason on
the message and a line on the timeline. An address that opted out (STOP, or
the provider's "unsubscribed") is never sent to: the outbox dead-letters the
message with the reason. Driven through the fake channel, made to behave like
such a channel; the SMS channel's own tests drive the same paths over Twilio.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from channels.fake import FakeChannel, FakeRecorder
from hub.errors import ChannelSendError
from hub.events import utcnow
from hub.messages import DeliveryReport, InboundMessage, OutboundMessage, SendResult
from hub.storage.schema import messages
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for


class ReportingChannel(FakeChannel):
    """The fake channel with a provider that reports delivery later, splits
    long texts in two parts, honours opt-outs and has a one-hour reply window
    when asked."""

    honours_opt_out: ClassVar[bool] = True

    async def send(self, message: OutboundMessage) -> SendResult:
        await super().send(message)
        parts = (f"P-{message.message_id}-1", f"P-{message.message_id}-2")
        return SendResult(provider_id=parts[0], provider_ids=parts)


class WindowedChannel(ReportingChannel):
    reply_window = timedelta(hours=1)


async def _start(database_url: str, tmp_path: Path, cls: type[FakeChannel] = ReportingChannel) -> tuple[Hub, Any]:
    settings = make_settings(database_url, tmp_path)
    recorder = FakeRecorder()
    hub = await start_hub(settings, channels={"fake": cls(settings, recorder)})
    return hub, recorder


async def _ingest(hub: Hub, text: str, *, sender: str = "+15550001111", **fields: Any) -> Any:
    inbound = InboundMessage(channel="fake", sender=sender, text=text, external_id=f"in-{text}-{utcnow()}", **fields)
    return await hub.service.ingest(inbound)


async def _reply(hub: Hub, conversation_id: int, text: str) -> int:
    body = await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent", json={"text": text}, expect=201
    )
    return int(body["id"])


async def _message(hub: Hub, message_id: int) -> dict[str, Any]:
    return await hub.api("GET", f"/api/v1/messages/{message_id}")


async def _status_is(hub: Hub, message_id: int, wanted: str) -> bool:
    return (await _message(hub, message_id))["delivery_status"] == wanted


async def _timeline_events(hub: Hub, conversation_id: int) -> list[dict[str, Any]]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline", params={"limit": 200})
    return [item for item in page["items"] if item["kind"] == "event"]


@pytest.mark.asyncio
async def test_reports_move_a_message_forward_only(database_url: str, tmp_path: Path) -> None:
    hub, recorder = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "hello")
        reply = await _reply(hub, stored.conversation.id, "a reply in two parts")
        await wait_for(lambda: _status_is(hub, reply, "sent"))
        report = hub.service.delivery_report
        # One part delivered: the message is as far as its slowest part.
        assert await report(DeliveryReport(channel="fake", provider_id=f"P-{reply}-1", status="delivered"))
        assert (await _message(hub, reply))["delivery_status"] == "sent"
        assert await report(DeliveryReport(channel="fake", provider_id=f"P-{reply}-2", status="delivered"))
        assert (await _message(hub, reply))["delivery_status"] == "delivered"
        # A late "sent" (callbacks arrive out of order) does not move it back.
        assert await report(DeliveryReport(channel="fake", provider_id=f"P-{reply}-1", status="sent"))
        assert (await _message(hub, reply))["delivery_status"] == "delivered"
        # Unknown ids, other channels' ids and unknown statuses match nothing.
        assert not await report(DeliveryReport(channel="fake", provider_id="P-nope", status="delivered"))
        assert not await report(DeliveryReport(channel="webchat", provider_id=f"P-{reply}-1", status="failed"))
        assert not await report(DeliveryReport(channel="fake", provider_id=f"P-{reply}-1", status="exploded"))
        assert len(recorder.sent) == 1
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_undelivered_report_tells_the_agent_why(database_url: str, tmp_path: Path) -> None:
    hub, _ = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "hello")
        reply = await _reply(hub, stored.conversation.id, "will it arrive")
        await wait_for(lambda: _status_is(hub, reply, "sent"))
        undelivered = DeliveryReport(
            channel="fake",
            provider_id=f"P-{reply}-2",
            status="undelivered",
            error_code="30003",
            error_message="the handset is unreachable",
        )
        assert await hub.service.delivery_report(undelivered)
        assert await hub.service.delivery_report(undelivered)  # a repeat changes nothing
        message = await _message(hub, reply)
        assert message["delivery_status"] == "undelivered"
        assert message["delivery_error"] == "30003: the handset is unreachable"
        events = await _timeline_events(hub, stored.conversation.id)
        failures = [e for e in events if e["meta"].get("event") == "delivery_failed"]
        assert len(failures) == 1 and "30003: the handset is unreachable" in failures[0]["body"]
        assert failures[0]["meta"]["message_id"] == reply
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_a_report_that_overtakes_the_recorded_send_still_matches(database_url: str, tmp_path: Path) -> None:
    hub, recorder = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "hello")
        recorder.delay = 0.5  # the provider has it; the hub has not recorded it yet
        reply = await _reply(hub, stored.conversation.id, "fast callback")
        await wait_for(lambda: len(recorder.sent) == 1)
        early = DeliveryReport(channel="fake", provider_id=f"P-{reply}-1", status="delivered", message_id=reply)
        assert await hub.service.delivery_report(early)
        late_part = DeliveryReport(channel="fake", provider_id=f"P-{reply}-2", status="delivered", message_id=reply)
        assert await hub.service.delivery_report(late_part)
        # The send's own result ("sent") lands afterwards and does not undo the report.
        await wait_for(lambda: _outbox_done(hub, reply))
        assert (await _message(hub, reply))["delivery_status"] == "delivered"
        # A message id that is not an outbound message of that channel matches nothing.
        assert not await hub.service.delivery_report(
            DeliveryReport(channel="fake", provider_id="P-x", status="delivered", message_id=stored.message.id)
        )
    finally:
        await close_hub(hub)


async def _outbox_done(hub: Hub, message_id: int) -> bool:
    entries = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "delivered"})
    return any(entry["message_id"] == message_id for entry in entries["items"])


@pytest.mark.asyncio
async def test_stop_blocks_sends_until_start(database_url: str, tmp_path: Path) -> None:
    hub, recorder = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "STOP", consent="opt_out")
        conversation_id, contact_id = stored.conversation.id, stored.message.contact_id
        contact = await hub.api("GET", f"/api/v1/contacts/{contact_id}")
        [opt_out] = contact["opt_outs"]
        assert opt_out["channel"] == "fake" and opt_out["address"] == "+15550001111" and opt_out["reason"] == "STOP"
        reply = await _reply(hub, conversation_id, "are you still there?")
        await wait_for(lambda: _status_is(hub, reply, "failed"))
        message = await _message(hub, reply)
        assert "opted out" in message["delivery_error"] and "START" in message["delivery_error"]
        assert recorder.sent == []
        dead = await hub.api("GET", "/api/v1/jobs", params={"queue": "outbox", "status": "dead"})
        assert "opted out" in next(e for e in dead["items"] if e["message_id"] == reply)["last_error"]
        kinds = [e["meta"].get("event") for e in await _timeline_events(hub, conversation_id)]
        assert "opted_out" in kinds and "delivery_failed" in kinds

        await _ingest(hub, "START", consent="opt_in")
        assert (await hub.api("GET", f"/api/v1/contacts/{contact_id}"))["opt_outs"] == []
        again = await _reply(hub, conversation_id, "welcome back")
        await wait_for(lambda: _status_is(hub, again, "sent"))
        assert [m.text for m in recorder.sent] == ["welcome back"]
        kinds = [e["meta"].get("event") for e in await _timeline_events(hub, conversation_id)]
        assert "opted_in" in kinds
        # Keywords are the hub's, not questions for the bot: no bot job was queued.
        from hub.storage.schema import bot_jobs

        assert await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(bot_jobs)).scalar()) == 0
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_help_gets_the_channels_reply_at_once(database_url: str, tmp_path: Path) -> None:
    hub, recorder = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "HELP", auto_reply="Acme support: reply with your question. STOP to opt out.")
        await wait_for(lambda: len(recorder.sent) == 1)
        [sent] = recorder.sent
        assert sent.text.startswith("Acme support") and sent.to == "+15550001111"
        assert sent.conversation_id == stored.conversation.id
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_provider_unsubscribed_error_opts_the_address_out(database_url: str, tmp_path: Path) -> None:
    hub, recorder = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "hello")
        recorder.fail_next = [
            ChannelSendError("the recipient unsubscribed", retryable=False, provider_code="21610", opted_out=True)
        ]
        reply = await _reply(hub, stored.conversation.id, "hi there")
        await wait_for(lambda: _status_is(hub, reply, "failed"))
        assert (await _message(hub, reply))["delivery_error"] == "21610: the recipient unsubscribed"
        contact = await hub.api("GET", f"/api/v1/contacts/{stored.message.contact_id}")
        assert [(o["channel"], o["reason"]) for o in contact["opt_outs"]] == [("fake", "provider 21610")]
        # The next reply is refused by the hub itself: no second attempt at the provider.
        second = await _reply(hub, stored.conversation.id, "hello?")
        await wait_for(lambda: _status_is(hub, second, "failed"))
        assert recorder.sent == [] and recorder.fail_next == []
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_a_report_of_unsubscribed_opts_out_too(database_url: str, tmp_path: Path) -> None:
    hub, _ = await _start(database_url, tmp_path)
    try:
        stored = await _ingest(hub, "hello")
        reply = await _reply(hub, stored.conversation.id, "hi")
        await wait_for(lambda: _status_is(hub, reply, "sent"))
        report = DeliveryReport(
            channel="fake", provider_id=f"P-{reply}-1", status="failed", error_code="21610", opted_out=True
        )
        assert await hub.service.delivery_report(report)
        contact = await hub.api("GET", f"/api/v1/contacts/{stored.message.contact_id}")
        assert [o["reason"] for o in contact["opt_outs"]] == ["provider 21610"]
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_reply_outside_the_window_is_refused_with_the_reason(database_url: str, tmp_path: Path) -> None:
    hub, recorder = await _start(database_url, tmp_path, WindowedChannel)
    try:
        stored = await _ingest(hub, "hello")
        inside = await _reply(hub, stored.conversation.id, "within the hour")
        await wait_for(lambda: _status_is(hub, inside, "sent"))
        # Two hours pass since the customer's last message.
        earlier = utcnow() - timedelta(hours=2)
        await hub.db.write(
            lambda c: c.execute(
                sa.update(messages).where(messages.c.id == stored.message.id).values(created_at=earlier)
            )
        )
        late = await _reply(hub, stored.conversation.id, "too late")
        await wait_for(lambda: _status_is(hub, late, "failed"))
        error = (await _message(hub, late))["delivery_error"]
        assert "1-hour customer-service window" in error and "template" in error
        assert [m.text for m in recorder.sent] == ["within the hour"]
    finally:
        await close_hub(hub)
