"""Sending over SMS and WhatsApp with the real ``twilio`` client against a fake
Twilio API on loopback: parts, senders, refusals, no double texts after a
crash, and status callbacks handed over as ``DeliveryReport``s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from channels.base import DeliveryReport
from channels.sms import SmsChannel, WhatsappChannel
from channels.sms.client import SentMessage
from channels.sms.resend import already_sent
from hub.errors import ChannelSendError
from tests.channels.test_sms import (  # noqa: F401 (fixtures)
    CUSTOMER,
    PUBLIC_URL,
    SERVICE_SID,
    SUPPORT_NUMBER,
    WHATSAPP_NUMBER,
    outbound,
    sms_hub,
    sms_settings,
    started,
    twilio_api,
)
from tests.conftest import Hub, wait_for
from tests.fakes.twilio_api import FakeTwilioApi, sign_twilio


# --- sending ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_send_goes_through_the_twilio_client_with_a_status_callback(
    tmp_path: Path, twilio_api: FakeTwilioApi
) -> None:
    async with started(SmsChannel.from_settings(sms_settings(tmp_path, twilio_api_url=twilio_api.base_url))) as sms:
        result = await sms.send(outbound())
    [message] = twilio_api.messages
    assert (message.to, message.from_, message.body) == (CUSTOMER, SUPPORT_NUMBER, "Your refund is on its way.")
    assert message.status_callback == f"{PUBLIC_URL}/channels/sms/twilio/status?message_id=41"
    assert result.provider_id == message.sid and result.parts == (message.sid,)
    assert not result.delivered


@pytest.mark.asyncio
async def test_a_long_reply_goes_as_several_messages(tmp_path: Path, twilio_api: FakeTwilioApi) -> None:
    link = "https://help.example.com/articles/returns-and-refunds-policy-for-online-orders"
    text = ("We are sorry about the delay with your order. " * 8) + f"Read {link} for the steps."
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url, sms_max_segments=2)
    async with started(SmsChannel.from_settings(settings)) as sms:
        result = await sms.send(outbound(text))
    bodies = [m.body for m in twilio_api.messages]
    assert len(bodies) > 1
    assert " ".join(bodies).split() == text.split()
    assert any(link in body for body in bodies)
    assert result.parts == tuple(m.sid for m in twilio_api.messages)


@pytest.mark.asyncio
async def test_send_through_a_messaging_service(tmp_path: Path, twilio_api: FakeTwilioApi) -> None:
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url, twilio_from=SERVICE_SID)
    async with started(SmsChannel.from_settings(settings)) as sms:
        await sms.send(outbound())
    [message] = twilio_api.messages
    assert message.messaging_service_sid == SERVICE_SID


@pytest.mark.asyncio
async def test_whatsapp_sends_to_whatsapp_addresses_without_segments(tmp_path: Path, twilio_api: FakeTwilioApi) -> None:
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url, sms_max_segments=1)
    text = "Gracias por escribirnos. " * 20  # 500 characters: one WhatsApp message, four SMS segments
    async with started(WhatsappChannel.from_settings(settings)) as whatsapp:
        await whatsapp.send(outbound(text, channel="whatsapp"))
    [message] = twilio_api.messages
    assert (message.to, message.from_) == (f"whatsapp:{CUSTOMER}", f"whatsapp:{WHATSAPP_NUMBER}")
    assert message.status_callback == f"{PUBLIC_URL}/channels/whatsapp/twilio/status?message_id=41"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("failure", "retryable", "code", "opted_out"),
    [
        (500, True, None, False),
        (503, True, None, False),
        (429, True, "20429", False),
        ((400, 21211), False, "21211", False),
        ((400, 21610), False, "21610", True),
        ((400, 21614), False, "21614", False),
        ((400, 63016), False, "63016", False),
        (401, False, "20003", False),
    ],
)
async def test_twilio_refusals_say_whether_to_retry(
    tmp_path: Path, twilio_api: FakeTwilioApi, failure: Any, retryable: bool, code: str | None, opted_out: bool
) -> None:
    twilio_api.fail_next.append(failure)
    async with started(SmsChannel.from_settings(sms_settings(tmp_path, twilio_api_url=twilio_api.base_url))) as sms:
        with pytest.raises(ChannelSendError) as failed:
            await sms.send(outbound())
    error = failed.value
    assert (error.retryable, error.provider_code, error.opted_out) == (retryable, code, opted_out)
    assert error.retry_after is None
    if code and not retryable:
        assert f"error {code}" in error.message
    assert CUSTOMER not in error.message and "refund" not in error.message


@pytest.mark.asyncio
async def test_transport_errors_and_timeouts_are_retryable(tmp_path: Path, twilio_api: FakeTwilioApi) -> None:
    async with started(SmsChannel.from_settings(sms_settings(tmp_path))) as sms:  # nothing listens there
        with pytest.raises(ChannelSendError) as failed:
            await sms.send(outbound())
    assert failed.value.retryable
    twilio_api.after_accept.append("hang")
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url, twilio_timeout=0.3)
    async with started(SmsChannel.from_settings(settings)) as sms:
        with pytest.raises(ChannelSendError) as failed:
            await sms.send(outbound())
    assert failed.value.retryable and "TimeoutError" in failed.value.message


@pytest.mark.asyncio
async def test_a_burst_of_500_and_429_then_one_text(tmp_path: Path, twilio_api: FakeTwilioApi) -> None:
    """What the outbox sees: retryable failures, then one message, once, found by no later attempt."""
    twilio_api.fail_next.extend([500, 429, 503])
    queued_at = datetime.now(UTC)
    async with started(SmsChannel.from_settings(sms_settings(tmp_path, twilio_api_url=twilio_api.base_url))) as sms:
        for attempt in range(1, 4):
            with pytest.raises(ChannelSendError) as failed:
                await sms.send(outbound(attempt=attempt, queued_at=queued_at))
            assert failed.value.retryable
        result = await sms.send(outbound(attempt=4, queued_at=queued_at))
    assert [m.sid for m in twilio_api.messages] == [result.provider_id]


# --- no double texts after a crash -----------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("hold_sending", [False, True], ids=["sent", "still-queued-at-twilio"])
async def test_a_send_accepted_before_the_hub_died_is_not_sent_again(
    tmp_path: Path, twilio_api: FakeTwilioApi, hold_sending: bool
) -> None:
    twilio_api.hold_sending = hold_sending
    twilio_api.after_accept.append("hang")
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url)
    queued_at = datetime.now(UTC)
    async with started(SmsChannel.from_settings(settings)) as sms:
        first = asyncio.create_task(sms.send(outbound(queued_at=queued_at)))
        await wait_for(lambda: twilio_api.hanging == 1)
        first.cancel()  # the hub died: Twilio has the message, the hub has no sid
        with pytest.raises(asyncio.CancelledError):
            await first
    assert len(twilio_api.messages) == 1
    # After the restart the lease expires and the outbox tries again.
    async with started(SmsChannel.from_settings(settings)) as sms:
        result = await sms.send(outbound(attempt=2, queued_at=queued_at))
    assert [m.sid for m in twilio_api.messages] == [result.provider_id]
    assert [r for r in twilio_api.requests if r[0] == "GET"], "the retry looked at Twilio's list first"


@pytest.mark.asyncio
async def test_after_a_crash_between_parts_only_the_missing_parts_are_sent(
    tmp_path: Path, twilio_api: FakeTwilioApi
) -> None:
    text = " ".join(f"Step {n}: do the thing number {n} carefully." for n in range(12))
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url, sms_max_segments=1)
    queued_at = datetime.now(UTC)
    twilio_api.after_accept.extend(["ok", "reset"])  # part 1 answered, part 2 accepted but the answer lost
    async with started(SmsChannel.from_settings(settings)) as sms:
        with pytest.raises(ChannelSendError) as failed:
            await sms.send(outbound(text, queued_at=queued_at))
        assert failed.value.retryable
        accepted = [m.body for m in twilio_api.messages]
        assert len(accepted) == 2
        result = await sms.send(outbound(text, attempt=2, queued_at=queued_at))
    bodies = [m.body for m in twilio_api.messages]
    assert bodies[:2] == accepted and len(bodies) == len(set(bodies)) == len(result.parts)
    assert " ".join(bodies).split() == text.split()
    assert result.parts == tuple(m.sid for m in twilio_api.messages)


@pytest.mark.asyncio
async def test_a_retry_that_finds_nothing_sends_and_one_that_cannot_look_does_not(
    tmp_path: Path, twilio_api: FakeTwilioApi
) -> None:
    queued_at = datetime.now(UTC)
    settings = sms_settings(tmp_path, twilio_api_url=twilio_api.base_url)
    async with started(SmsChannel.from_settings(settings)) as sms:
        twilio_api.fail_list_next.append(503)
        with pytest.raises(ChannelSendError) as failed:
            await sms.send(outbound(attempt=2, queued_at=queued_at))
        assert failed.value.retryable and twilio_api.messages == []
        await sms.send(outbound(attempt=3, queued_at=queued_at))
    assert len(twilio_api.messages) == 1


def test_already_sent_matches_each_listed_message_once_and_only_since_queued() -> None:
    queued_at = datetime(2026, 11, 29, 12, 0, 0, 500_000, tzinfo=UTC)
    recent = [
        SentMessage("SM3", "Thanks!", queued_at + timedelta(seconds=2)),
        SentMessage("SM2", "Thanks!", queued_at + timedelta(seconds=1)),
        SentMessage("SM1", "Thanks!", queued_at - timedelta(minutes=5)),  # an earlier reply
        SentMessage("SM0", "Other", queued_at),
    ]
    assert already_sent(["Thanks!", "Thanks!", "Thanks!"], recent, queued_at) == ["SM2", "SM3", None]
    assert already_sent(["Thanks!"], recent, queued_at.replace(tzinfo=None)) == ["SM2"]


# --- status callbacks ------------------------------------------------------------------------------
@dataclass
class RecordingHost:
    """The hub's host, with delivery reports recorded (the hub's side is tested on its own)."""

    inner: Any
    reports: list[DeliveryReport] = field(default_factory=list)
    answer: bool = True

    async def delivery_report(self, report: DeliveryReport) -> bool:
        self.reports.append(report)
        return self.answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_asyncio.fixture
async def reports(sms_hub: Hub) -> RecordingHost:
    host = RecordingHost(sms_hub.service)
    sms_hub.channel("sms").bind(host)
    sms_hub.channel("whatsapp").bind(host)
    return host


@pytest.mark.asyncio
async def test_status_callbacks_become_delivery_reports(
    sms_hub: Hub, twilio_api: FakeTwilioApi, reports: RecordingHost
) -> None:
    result = await sms_hub.channel("sms").send(outbound())
    sid = result.provider_id
    for status in ("sent", "delivered"):
        response = await twilio_api.post_status(sms_hub.client, sid, status, public_url=PUBLIC_URL)
        assert response.status == 204
    assert [(r.channel, r.provider_id, r.status, r.message_id) for r in reports.reports] == [
        ("sms", sid, "sent", 41),
        ("sms", sid, "delivered", 41),
    ]
    assert reports.reports[-1].error_code is None and not reports.reports[-1].opted_out


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("twilio_status", "error_code", "status", "reason", "opted_out"),
    [
        ("undelivered", "30003", "undelivered", "unreachable handset", False),
        ("undelivered", "30005", "undelivered", "unknown number", False),
        ("undelivered", "30006", "undelivered", "landline", False),
        ("failed", "30007", "failed", "carrier", False),
        ("failed", "21610", "failed", "unsubscribed", True),
        ("failed", "63016", "failed", "24-hour window", False),
        ("failed", "39999", "failed", "Twilio error 39999", False),
        ("sending", None, "queued", None, False),
        ("accepted", None, "queued", None, False),
        ("read", None, "delivered", None, False),
        ("canceled", None, "failed", None, False),
    ],
)
async def test_status_mapping_and_error_reasons(
    sms_hub: Hub,
    twilio_api: FakeTwilioApi,
    reports: RecordingHost,
    twilio_status: str,
    error_code: str | None,
    status: str,
    reason: str | None,
    opted_out: bool,
) -> None:
    result = await sms_hub.channel("sms").send(outbound())
    response = await twilio_api.post_status(
        sms_hub.client, result.provider_id, twilio_status, error_code=error_code, public_url=PUBLIC_URL
    )
    assert response.status == 204
    [report] = reports.reports
    assert (report.status, report.error_code, report.opted_out) == (status, error_code, opted_out)
    if reason is None:
        assert report.error_message is None
    else:
        assert report.error_message is not None and reason in report.error_message


@pytest.mark.asyncio
async def test_a_forged_status_is_refused_and_reports_nothing(
    sms_hub: Hub, twilio_api: FakeTwilioApi, reports: RecordingHost
) -> None:
    result = await sms_hub.channel("sms").send(outbound())
    response = await twilio_api.post_status(
        sms_hub.client, result.provider_id, "delivered", token="not-the-token", public_url=PUBLIC_URL
    )
    assert response.status == 403
    unsigned = await sms_hub.client.post(
        "/channels/sms/twilio/status?message_id=41", data={"MessageSid": result.provider_id, "MessageStatus": "failed"}
    )
    assert unsigned.status == 403
    # The message id is covered by the signature: another one is a forgery.
    params = {"MessageSid": result.provider_id, "MessageStatus": "failed"}
    headers = sign_twilio(f"{PUBLIC_URL}/channels/sms/twilio/status?message_id=41", params)
    moved = await sms_hub.client.post("/channels/sms/twilio/status?message_id=42", data=params, headers=headers)
    assert moved.status == 403
    assert reports.reports == []


@pytest.mark.asyncio
async def test_a_status_the_hub_cannot_match_is_still_answered(
    sms_hub: Hub, twilio_api: FakeTwilioApi, reports: RecordingHost
) -> None:
    reports.answer = False
    whatsapp = sms_hub.channel("whatsapp")
    result = await whatsapp.send(outbound(channel="whatsapp"))
    response = await twilio_api.post_status(sms_hub.client, result.provider_id, "read", public_url=PUBLIC_URL)
    assert response.status == 204
    assert [(r.channel, r.status) for r in reports.reports] == [("whatsapp", "delivered")]
    # Statuses of inbound messages are no reports; a malformed callback is a 400.
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "received"}
    path = "/channels/sms/twilio/status"
    response = await sms_hub.client.post(path, data=params, headers=sign_twilio(PUBLIC_URL + path, params))
    assert response.status == 204
    params = {"MessageSid": "SM" + "0" * 32}
    response = await sms_hub.client.post(path, data=params, headers=sign_twilio(PUBLIC_URL + path, params))
    assert response.status == 400
    assert len(reports.reports) == 1


# --- through the hub -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_an_agent_reply_leaves_through_the_outbox_as_a_text(sms_hub: Hub, twilio_api: FakeTwilioApi) -> None:
    from tests.channels.test_sms import post_signed, stored
    from tests.fakes.twilio_api import inbound_params

    await post_signed(sms_hub, inbound_params(sender=CUSTOMER, body="Where is my parcel?"))
    [question] = await stored(sms_hub)
    reply = await sms_hub.api(
        "POST",
        f"/api/v1/conversations/{question.conversation_id}/messages",
        role="agent",
        json={"text": "It left our warehouse this morning: https://track.example.com/p/10442"},
        expect=201,
    )
    await wait_for(lambda: twilio_api.sent_to(CUSTOMER))
    [text] = twilio_api.sent_to(CUSTOMER)
    assert text.body == "It left our warehouse this morning: https://track.example.com/p/10442"
    assert text.from_ == SUPPORT_NUMBER
    assert text.status_callback == f"{PUBLIC_URL}/channels/sms/twilio/status?message_id={reply['id']}"
