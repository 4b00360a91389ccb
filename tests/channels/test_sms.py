"""The SMS and WhatsApp channels (channels/sms/): Twilio's real RequestValidator
signs every webhook, and the real ``twilio`` client sends to a fake Twilio API
on loopback (tests/fakes/twilio_api.py).

What the hub does with a consent keyword, a delivery report or an opt-out
(records, refusals, Slack) is the hub's side, tested there; here the channel
is checked to hand over the right ``InboundMessage`` and ``DeliveryReport``.
This module: settings, inbound messages, keywords, WhatsApp addresses and
the logs; sending and status callbacks are in ``test_sms_send.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from channels.base import OutboundMessage
from channels.sms import SmsChannel, WhatsappChannel
from channels.sms.keywords import Keyword, keyword
from hub.errors import ChannelSendError, ConfigError
from tests.conftest import Hub, free_port, make_settings, start_hub
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
