"""The SMS and WhatsApp channels (channels/sms/): Twilio's real RequestValidator
signs every webhook, and the real ``twilio`` client sends to a fake Twilio API
on loopback (tests/fakes/twilio_api.py).

What the hub does with a consent keyword, a delivery report or an opt-out
(records, refusals, Slack) is the hub's side, tested there; here the channel
is checked to hand over the right ``InboundMessage`` and ``DeliveryReport``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from channels.base import DeliveryReport, OutboundMessage
from channels.sms import SmsChannel, WhatsappChannel
from channels.sms.keywords import Keyword, keyword
from channels.sms.resend import already_sent
from hub.errors import ChannelSendError, ConfigError
from tests.conftest import Hub, free_port, make_settings, start_hub, wait_for
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi, inbound_params, sign_twilio

PUBLIC_URL = "https://support.example.test/hub"  # the reverse proxy strips /hub
SUPPORT_NUMBER = "+15005550006"
WHATSAPP_NUMBER = "+14155238886"
SERVICE_SID = "MG" + "a" * 32
CUSTOMER = "+15551230001"
SMS_PATH = "/channels/sms/twilio"
WHATSAPP_PATH = "/channels/whatsapp/twilio"


def sms_settings(tmp_path: Path, database_url: str = "sqlite:///unused.db", **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "channels": "sms,whatsapp",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": SUPPORT_NUMBER,
        "whatsapp_from": WHATSAPP_NUMBER,
        "public_url": PUBLIC_URL,
        "twilio_api_url": f"http://127.0.0.1:{free_port()}",
        "twilio_timeout": 2.0,
        **overrides,
    }
    return make_settings(database_url, tmp_path, **values)


@pytest_asyncio.fixture
async def twilio_api() -> AsyncIterator[FakeTwilioApi]:
    api = await FakeTwilioApi().start()
    try:
        yield api
    finally:
        await api.close()


@pytest_asyncio.fixture
async def sms_hub(database_url: str, tmp_path: Path, twilio_api: FakeTwilioApi) -> AsyncIterator[Hub]:
    hub = await start_hub(sms_settings(tmp_path, database_url, twilio_api_url=twilio_api.base_url))
    try:
        yield hub
    finally:
        await hub.client.close()


@asynccontextmanager
async def started(channel: SmsChannel) -> AsyncIterator[SmsChannel]:
    async with asynccontextmanager(channel.lifespan)(None):  # the lifespan never reads the app
        yield channel


def outbound(text: str = "Your refund is on its way.", *, to: str = CUSTOMER, **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "message_id": 41,
        "conversation_id": 7,
        "channel": "sms",
        "to": to,
        "text": text,
        "idempotency_key": "outbox-41",
        **fields,
    }
    return OutboundMessage(**values)


async def post_signed(
    hub: Hub, params: dict[str, str], *, path: str = SMS_PATH, signed_url: str | None = None, token: str = AUTH_TOKEN
) -> Any:
    headers = sign_twilio(signed_url or PUBLIC_URL + path, params, token)
    return await hub.client.post(path, data=params, headers=headers)


async def stored(hub: Hub, channel: str = "sms", address: str = CUSTOMER) -> list[Any]:
    conversation = await hub.service.conversation_for(channel, address)
    return [] if conversation is None else await hub.service.history(conversation.id)


# --- settings ---------------------------------------------------------------------------
def test_sender_is_a_number_a_short_code_or_a_messaging_service(tmp_path: Path) -> None:
    assert (
        SmsChannel.from_settings(sms_settings(tmp_path, twilio_from="(500) 555-0006")).sender.address == SUPPORT_NUMBER
    )
    assert SmsChannel.from_settings(sms_settings(tmp_path, twilio_from="88742")).sender.address == "88742"
    service = SmsChannel.from_settings(sms_settings(tmp_path, twilio_from=SERVICE_SID)).sender
    assert service.messaging_service and service.address == SERVICE_SID
    whatsapp = WhatsappChannel.from_settings(sms_settings(tmp_path, whatsapp_from=f"whatsapp:{WHATSAPP_NUMBER}"))
    assert whatsapp.sender.address == f"whatsapp:{WHATSAPP_NUMBER}"
    with pytest.raises(ConfigError, match="HUB_TWILIO_FROM is neither a phone number"):
        SmsChannel.from_settings(sms_settings(tmp_path, twilio_from="support"))


def test_whatsapp_needs_its_own_sender(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        WhatsappChannel.from_settings(sms_settings(tmp_path, whatsapp_from=None))
    assert "HUB_WHATSAPP_FROM" in refused.value.message and "HUB_TWILIO_FROM" not in refused.value.message
    assert WhatsappChannel.reply_window == timedelta(hours=24) and SmsChannel.reply_window is None
    assert WhatsappChannel.identity_kind == SmsChannel.identity_kind == "phone"


# --- inbound ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_signed_text_is_stored_and_answered_with_empty_twiml(sms_hub: Hub) -> None:
    params = inbound_params(sender=CUSTOMER, body="Where is my order #10442?")
    response = await post_signed(sms_hub, params)
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert await response.text() == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    [message] = await stored(sms_hub)
    assert (message.body, message.external_id, message.channel) == (
        "Where is my order #10442?",
        params["MessageSid"],
        "sms",
    )
    contact = await sms_hub.api("GET", f"/api/v1/contacts/{message.contact_id}")
    assert contact["phone"] == CUSTOMER


@pytest.mark.asyncio
async def test_a_national_number_is_stored_in_e164(sms_hub: Hub) -> None:
    response = await post_signed(sms_hub, inbound_params(sender="(555) 123-0001", body="hi"))
    assert response.status == 200
    assert len(await stored(sms_hub, address=CUSTOMER)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("forgery", ["forged", "unsigned", "wrong-url", "altered-body"])
async def test_a_forged_or_unsigned_text_is_refused_with_403_and_nothing_is_stored(sms_hub: Hub, forgery: str) -> None:
    params = inbound_params(sender=CUSTOMER, body="Refund me")
    if forgery == "forged":
        headers = sign_twilio(PUBLIC_URL + SMS_PATH, params, "not-the-auth-token")
    elif forgery == "unsigned":
        headers = {}
    elif forgery == "wrong-url":
        # Proxy misconfiguration: Twilio called (and signed) another URL than HUB_PUBLIC_URL's.
        headers = sign_twilio("https://support.example.test" + SMS_PATH, params)
    else:
        headers = sign_twilio(PUBLIC_URL + SMS_PATH, params)
        params = {**params, "Body": "Refund me twice"}
    response = await sms_hub.client.post(SMS_PATH, data=params, headers=headers)
    assert response.status == 403
    assert await response.json() == {"error": {"code": "invalid_signature", "message": "forbidden"}}
    assert await stored(sms_hub) == []


@pytest.mark.asyncio
async def test_a_retried_message_sid_is_stored_once(sms_hub: Hub) -> None:
    params = inbound_params(sender=CUSTOMER, body="Is anyone there?")
    for _ in range(3):
        assert (await post_signed(sms_hub, params)).status == 200
    assert len(await stored(sms_hub)) == 1


@pytest.mark.asyncio
async def test_mms_media_are_kept_as_attachments(sms_hub: Hub) -> None:
    media = {
        "NumMedia": "2",
        "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME2",
        "MediaContentType1": "application/pdf",
    }
    await post_signed(sms_hub, inbound_params(sender=CUSTOMER, body="The box was crushed", **media))
    await post_signed(sms_hub, inbound_params(sender=CUSTOMER, body="", **{**media, "NumMedia": "1"}))
    with_words, media_only = await stored(sms_hub)
    assert with_words.body == "The box was crushed"
    assert with_words.attachments == [
        {"url": media["MediaUrl0"], "content_type": "image/jpeg"},
        {"url": media["MediaUrl1"], "content_type": "application/pdf"},
    ]
    assert media_only.body == "[image/jpeg]"
    assert len(media_only.attachments) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"From": ""}, "'From' is missing"),
        ({"MessageSid": ""}, "'MessageSid' is missing"),
        ({"From": "not a number"}, "'From' is not a phone number"),
        ({"From": "+1555"}, "'From' is not a possible phone number"),
        ({"NumMedia": "many"}, "'NumMedia' must be a number"),
        ({"NumMedia": "11"}, "'NumMedia' must be a number from 0 to 10"),
        ({"NumMedia": "1"}, "'MediaUrl0' is missing"),
    ],
)
async def test_a_malformed_text_is_a_400_with_its_reason(sms_hub: Hub, change: dict[str, str], reason: str) -> None:
    params = {**inbound_params(sender=CUSTOMER, body="hello"), **change}
    response = await post_signed(sms_hub, params)
    assert response.status == 400
    assert reason in (await response.json())["error"]["message"]
    assert await stored(sms_hub) == []


@pytest.mark.asyncio
async def test_the_reason_of_a_bad_number_does_not_echo_it(sms_hub: Hub) -> None:
    response = await post_signed(sms_hub, {**inbound_params(sender=CUSTOMER, body="x"), "From": "+1 555 0199 999 9999"})
    assert response.status == 400
    assert "0199" not in await response.text()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", Keyword.OPT_OUT),
        ("  stop \n", Keyword.OPT_OUT),
        ("Stop All", Keyword.OPT_OUT),
        ("stopall", Keyword.OPT_OUT),
        ("UNSUBSCRIBE", Keyword.OPT_OUT),
        ("cancel", Keyword.OPT_OUT),
        ("End", Keyword.OPT_OUT),
        ("quit", Keyword.OPT_OUT),
        ("OPTOUT", Keyword.OPT_OUT),
        ("revoke", Keyword.OPT_OUT),
        ("start", Keyword.OPT_IN),
        ("UNSTOP", Keyword.OPT_IN),
        ("yes", Keyword.OPT_IN),
        ("help", Keyword.HELP),
        ("Info", Keyword.HELP),
        ("please stop texting me", None),
        ("stop.", None),
        ("cancel my order", None),
        ("", None),
    ],
)
def test_keywords_are_the_whole_message(body: str, expected: Keyword | None) -> None:
    assert keyword(body) is expected


def test_twilio_opt_out_type_wins() -> None:
    assert keyword("arrêt", "STOP") is Keyword.OPT_OUT
    assert keyword("STOP", "START") is Keyword.OPT_IN
    assert keyword("aide", "HELP") is Keyword.HELP


def parsed(channel: SmsChannel, params: dict[str, str]) -> Any:
    [message] = channel.parse(None, urlencode(params).encode())  # type: ignore[arg-type]  # parse never reads the request
    return message


def test_keywords_become_consent_and_help_an_auto_reply(tmp_path: Path) -> None:
    channel = SmsChannel.from_settings(sms_settings(tmp_path, site_name="Northwind"))
    stop = parsed(channel, inbound_params(sender=CUSTOMER, body="Stop"))
    assert (stop.consent, stop.auto_reply, stop.text) == ("opt_out", None, "Stop")
    start = parsed(channel, inbound_params(sender=CUSTOMER, body="START"))
    assert (start.consent, start.auto_reply) == ("opt_in", None)
    help_ = parsed(channel, inbound_params(sender=CUSTOMER, body="help"))
    assert help_.consent is None
    assert help_.auto_reply is not None and help_.auto_reply.startswith("Northwind") and "STOP" in help_.auto_reply
    plain = parsed(channel, inbound_params(sender=CUSTOMER, body="Can you help?"))
    assert (plain.consent, plain.auto_reply) == (None, None)
    # Advanced Opt-Out classified (and answered) it: its word counts, and HELP gets no second answer.
    advanced = parsed(channel, inbound_params(sender=CUSTOMER, body="arrêt", OptOutType="STOP"))
    assert advanced.consent == "opt_out"
    assert parsed(channel, inbound_params(sender=CUSTOMER, body="HELP", OptOutType="HELP")).auto_reply is None
    # An empty help text: the hub leaves HELP to Twilio.
    quiet = SmsChannel.from_settings(sms_settings(tmp_path, sms_help_text=""))
    assert parsed(quiet, inbound_params(sender=CUSTOMER, body="HELP")).auto_reply is None


# --- WhatsApp -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_whatsapp_sender_is_the_same_phone_identity(sms_hub: Hub) -> None:
    params = inbound_params(
        sender=f"whatsapp:{CUSTOMER}", to=f"whatsapp:{WHATSAPP_NUMBER}", body="Hola", ProfileName="Ada"
    )
    response = await post_signed(sms_hub, params, path=WHATSAPP_PATH)
    assert response.status == 200
    [message] = await stored(sms_hub, "whatsapp")
    assert message.channel == "whatsapp"
    contact = await sms_hub.api("GET", f"/api/v1/contacts/{message.contact_id}")
    assert contact["name"] == "Ada"
    # The same person texting over SMS is the same contact.
    await post_signed(sms_hub, inbound_params(sender=CUSTOMER, body="Hello again"))
    [sms] = await stored(sms_hub, "sms")
    assert sms.contact_id == message.contact_id


@pytest.mark.asyncio
async def test_a_message_at_the_other_channels_url_is_a_400_naming_the_right_url(sms_hub: Hub) -> None:
    whatsapp = inbound_params(sender=f"whatsapp:{CUSTOMER}", body="hi")
    response = await post_signed(sms_hub, whatsapp, path=SMS_PATH)
    assert response.status == 400
    assert f"{PUBLIC_URL}/channels/whatsapp/twilio" in (await response.json())["error"]["message"]
    sms = inbound_params(sender=CUSTOMER, body="hi")
    response = await post_signed(sms_hub, sms, path=WHATSAPP_PATH)
    assert response.status == 400
    assert f"{PUBLIC_URL}/channels/sms/twilio" in (await response.json())["error"]["message"]
    assert await stored(sms_hub, "sms") == [] and await stored(sms_hub, "whatsapp") == []


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
    from channels.sms.client import SentMessage

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


# --- personal data -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_no_number_or_words_in_the_logs(
    sms_hub: Hub, twilio_api: FakeTwilioApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    words = "my secret order words"
    await post_signed(sms_hub, inbound_params(sender=CUSTOMER, body=words), token="forged")
    await post_signed(sms_hub, inbound_params(sender=CUSTOMER, body=words))
    sms = sms_hub.channel("sms")
    queued_at = datetime.now(UTC)
    await sms.send(outbound(words, queued_at=queued_at))
    await sms.send(outbound(words, attempt=2, queued_at=queued_at))
    twilio_api.fail_next.extend([(400, 21211), 500])
    for _ in range(2):
        with pytest.raises(ChannelSendError):
            await sms.send(outbound(words))
    channel_records = [r for r in caplog.records if r.name.startswith(("channels.sms", "twilio"))]
    assert channel_records, "the channel logs what it does"
    for record in channel_records:
        text = record.getMessage()
        assert CUSTOMER.lstrip("+") not in text and words not in text, (record.name, text)
