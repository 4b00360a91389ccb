"""One contract over every channel that receives webhooks or messages (apprise's tests/helpers/rest.py).

Each channel is driven through the same checks, fed by captured-style
payloads under ``tests/fixtures/<channel>/`` and signed with the vendor's
real algorithm:

- bad config: ``from_settings`` without the secrets names every missing key;
- forged input (bad, missing or stale signature; for the web chat a forged,
  altered or missing visitor token, or a foreign page origin) is refused with
  401/403 and stores nothing, while the same payload, genuine, is stored;
- a malformed payload is refused with 400 and its reason, and stores nothing
  (hostile ones too: a lone surrogate, nesting beyond 32 levels, NaN);
- a provider's retried delivery (same provider id) is stored once;
- send: transport errors, vendor 5xx and 429 raise ``ChannelSendError(retryable=True)``
  (429 with the vendor's retry_after), a permanent 4xx ``retryable=False``.

Adding a channel: a fixture folder (``valid.json`` with ``{{placeholders}}``,
the malformed payloads) and one ``Contract`` subclass in ``CONTRACTS``. The
web chat is a WebSocket: its adapter translates the socket's outcomes into
the same terms (close 4401 is the 401, an error frame the 400). Twilio posts
forms: the SMS and WhatsApp fixtures are ``.form`` files (``valid.form``),
their hostile payloads the ones a form can carry (bytes that are not UTF-8,
an encoded lone surrogate), and their forgeries include a signature for
another URL than ``HUB_PUBLIC_URL`` (Twilio signs the URL it calls, and has
no timestamp to go stale).

E-mail has no webhook: its adapter speaks SMTP to the hub's own server and
maps the replies to the same terms (``EmailContract``).

Over ~400 lines on purpose: the contract and every channel's adapter stay in
one module, so a new channel is read and added in one place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiohttp import WSMsgType

from channels.base import OutboundMessage, SendResult
from channels.registry import KNOWN_CHANNELS, channel_class
from hub.errors import ChannelSendError, ConfigError
from tests.channels.signing import FAKE_SIGNER, SLACK_SIGNER
from tests.conftest import Hub, free_port, make_settings, start_hub, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SENT_TEXT = "Your refund is on its way."


# --- what every adapter reports -------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """How the channel answered one inbound delivery, in HTTP terms."""

    status: int
    reason: str = ""
    duplicate: bool | None = None  # when the channel says so


@dataclass(frozen=True)
class Retryable:
    retry_after: float | None = None


@dataclass(frozen=True)
class Permanent:
    pass


@dataclass(frozen=True)
class Undelivered:
    """No error: the channel keeps the message for later (the web chat's history)."""


Expected = Retryable | Permanent | Undelivered
SEND_FAILURES = ("transport", "5xx", "429", "4xx")


def fixture(channel: str, name: str, /, **values: str) -> bytes:
    text = (FIXTURES / channel / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"{channel}/{name}: unfilled placeholder"
    return text.encode()


async def stored_rows(hub: Hub) -> dict[str, int]:
    from hub.storage.schema import contacts, conversations, identities, messages

    def count(conn: sa.Connection) -> dict[str, int]:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (contacts, identities, conversations, messages)
        }

    return await hub.db.read(count)


# --- adapters -----------------------------------------------------------------------
@dataclass
class Contract:
    name: ClassVar[str]
    missing_settings: ClassVar[dict[str, str]]  # setting -> the env name the ConfigError must name
    forgeries: ClassVar[tuple[str, ...]]
    malformed: ClassVar[dict[str, str]]  # fixture file -> part of the reason
    send_expected: ClassVar[dict[str, Expected]]  # failure -> outcome; absent: the channel has no such failure
    # How long an accepted delivery may take to be stored (Slack's desk works in background tasks).
    settle: ClassVar[float] = 0.0
    valid: ClassVar[str] = "valid.json"  # the genuine payload's fixture
    state: dict[str, Any] = field(default_factory=dict)

    def settings(self, database_url: str, tmp_path: Path, **overrides: Any) -> Any:
        return make_settings(database_url, tmp_path, **overrides)

    @asynccontextmanager
    async def running(self, database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
        hub = await start_hub(self.settings(database_url, tmp_path))
        try:
            yield hub
        finally:
            await hub.client.close()

    async def prepare(self, hub: Hub) -> dict[str, str]:
        """Placeholders for ``valid.json`` besides ``external_id`` and ``text``."""
        return {}

    async def deliver(self, hub: Hub, body: bytes, *, forgery: str | None = None, retry: int = 0) -> Delivery:
        raise NotImplementedError

    def send_scenario(self, failure: str, tmp_path: Path) -> AbstractAsyncContextManager[Any]:
        """A channel (started) whose vendor fails with ``failure``; yields a callable that sends."""
        raise NotImplementedError


async def http_delivery(response: aiohttp.ClientResponse) -> Delivery:
    body = await response.json() if response.content_type == "application/json" else {}
    error = body.get("error") if isinstance(body, dict) else None
    reason = error.get("message", "") if isinstance(error, dict) else (error or "")
    received = body.get("received") if isinstance(body, dict) else None
    duplicate = all(r["duplicate"] for r in received) if received else None
    return Delivery(response.status, reason, duplicate)


class FakeContract(Contract):
    name = "fake"
    missing_settings: ClassVar[dict[str, str]] = {"fake_secret": "HUB_FAKE_SECRET"}
    forgeries = FAKE_SIGNER.forgeries
    malformed: ClassVar[dict[str, str]] = {
        "malformed.json": "item 1: 'from' must be a non-empty string",
        "not-json.txt": "not valid JSON",
        "surrogate.json": "'[1].text' is not valid Unicode",
        "deep.json": "deeper than 32 levels",
        "nan.json": "NaN is not a JSON number",
    }
    # The fake channel records what it sends: it has no vendor that could fail.
    send_expected: ClassVar[dict[str, Expected]] = {}

    async def deliver(self, hub: Hub, body: bytes, *, forgery: str | None = None, retry: int = 0) -> Delivery:
        headers = FAKE_SIGNER.headers(body, forgery=forgery)
        response = await hub.client.post(
            "/channels/fake/webhook", data=body, headers={**headers, "Content-Type": "application/json"}
        )
        return await http_delivery(response)


class WebchatContract(Contract):
    name = "webchat"
    missing_settings: ClassVar[dict[str, str]] = {"webchat_secrets": "HUB_WEBCHAT_SECRETS"}
    forgeries = ("forged-token", "altered-token", "missing-token", "foreign-origin")
    malformed: ClassVar[dict[str, str]] = {
        "malformed.json": "'client_id' must be 1-64 letters",
        "not-json.txt": "not valid JSON",
        "surrogate.json": "'text' is not valid Unicode",
        "deep.json": "deeper than 32 levels",
        "nan.json": "Infinity is not a JSON number",
    }
    # No vendor: a visitor without an open socket reads the reply from the history later.
    send_expected: ClassVar[dict[str, Expected]] = {"transport": Undelivered()}
    secret: ClassVar[str] = "contract-webchat-secret"

    def settings(self, database_url: str, tmp_path: Path, **overrides: Any) -> Any:
        values: dict[str, Any] = {"channels": "webchat", "webchat_secrets": self.secret, **overrides}
        return make_settings(database_url, tmp_path, **values)

    @asynccontextmanager
    async def running(self, database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
        hub = await start_hub(self.settings(database_url, tmp_path))
        try:
            yield hub
        finally:
            await hub.channel("webchat").on_shutdown(hub.app)
            await hub.client.close()

    def _token(self, forgery: str | None) -> str | None:
        from channels.webchat.security import VisitorClaims, VisitorTokens

        if forgery == "forged-token":
            return VisitorTokens(["not-the-hub-secret"], max_age_seconds=60).issue(VisitorClaims("v_contract"))
        if forgery == "altered-token":
            genuine = VisitorTokens([self.secret], max_age_seconds=60).issue(VisitorClaims("v_contract"))
            payload, stamp, signature = genuine.split(".")
            return f"{payload}.{stamp}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}"
        return self.state.get("token")  # the visitor's own, on a retry

    async def deliver(self, hub: Hub, body: bytes, *, forgery: str | None = None, retry: int = 0) -> Delivery:
        headers = {"Origin": "https://evil.example"} if forgery == "foreign-origin" else {}
        try:
            ws = await hub.client.ws_connect("/channels/webchat/ws", headers=headers)
        except aiohttp.WSServerHandshakeError as err:
            return Delivery(err.status, err.message)
        try:
            token = self._token(forgery) if (forgery or retry) else None
            if forgery == "missing-token" or token is not None:
                await ws.send_json({"type": "resume", **({"token": token} if token else {})})
            else:
                await ws.send_json({"type": "hello"})
            # The frame goes at once, as a widget that does not wait for its welcome would send it.
            await ws.send_str(body.decode())
            return await self._outcome(ws)
        finally:
            await ws.close()

    async def _outcome(self, ws: aiohttp.ClientWebSocketResponse) -> Delivery:
        refusal = ""
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                # 4401 is the socket's 401.
                return Delivery(msg.data - 4000 if isinstance(msg.data, int) and msg.data >= 4000 else 500, refusal)
            frame = msg.json()
            if frame["type"] == "welcome":
                self.state["token"] = frame["token"]
            elif frame["type"] == "ack":
                return Delivery(200, duplicate=frame["duplicate"])
            elif frame["type"] == "error" and frame["code"] == "invalid_token":
                refusal = frame["message"]  # the close follows
            elif frame["type"] == "error":
                status = 400 if frame["code"].startswith("invalid_") or frame["code"] == "too_large" else 500
                return Delivery(status, frame["message"])

    @asynccontextmanager
    async def send_scenario(self, failure: str, tmp_path: Path) -> AsyncIterator[Any]:
        from hub.storage.migrate import upgrade

        url = f"sqlite+aiosqlite:///{tmp_path / 'send.db'}"
        await asyncio.to_thread(upgrade, url)
        async with self.running(url, tmp_path) as hub:
            ws = await hub.client.ws_connect("/channels/webchat/ws")
            await ws.send_json({"type": "hello"})
            welcome = await ws.receive_json(timeout=5)
            visitor_id = welcome["visitor_id"]
            channel = hub.channel("webchat")
            online = await channel.send(outbound(visitor_id, message_id=1))
            assert online.delivered, "an open socket gets the message"
            await ws.close()  # the visitor's connection is gone
            await wait_for(lambda: channel.visitor_sockets(visitor_id) == 0)
            yield lambda: channel.send(outbound(visitor_id, message_id=2))


class SlackContract(Contract):
    name = "slack"
    missing_settings: ClassVar[dict[str, str]] = {
        "slack_bot_token": "HUB_SLACK_BOT_TOKEN",
        "slack_signing_secret": "HUB_SLACK_SIGNING_SECRET",
    }
    forgeries = SLACK_SIGNER.forgeries
    malformed: ClassVar[dict[str, str]] = {
        "malformed.json": "event_callback without an 'event' object",
        "not-json.txt": "not valid JSON",
        "surrogate.json": "'event.text' is not valid Unicode",
        "deep.json": "deeper than 32 levels",
        "nan.json": "'event_time' is not a finite number",
    }
    send_expected: ClassVar[dict[str, Expected]] = {
        "transport": Retryable(),
        "5xx": Retryable(),
        "429": Retryable(retry_after=7.0),
        "4xx": Permanent(),
    }
    settle = 0.4
    secret: ClassVar[str] = SLACK_SIGNER.secret

    def settings(self, database_url: str, tmp_path: Path, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "channels": "fake,slack",
            "slack_bot_token": "xoxb-contract-token",
            "slack_signing_secret": self.secret,
            "slack_api_url": f"http://127.0.0.1:{free_port()}/api/",
            "slack_default_channel": "CSUPPORT",
            "slack_jobs_base_delay": 0.05,
            "slack_jobs_max_delay": 0.2,
            "slack_jobs_poll_interval": 0.05,
        }
        values.update(overrides)
        return make_settings(database_url, tmp_path, **values)

    @asynccontextmanager
    async def running(self, database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
        from tests.fakes.slack_api import FakeSlackApi

        api = await FakeSlackApi().start()
        self.state["api"] = api
        hub = await start_hub(self.settings(database_url, tmp_path, slack_api_url=api.base_url))
        try:
            yield hub
        finally:
            await hub.client.close()
            await api.close()

    async def prepare(self, hub: Hub) -> dict[str, str]:
        """An agent and a ticket whose card is in a Slack thread: the thread's replies reach the customer."""
        from tests.channels.test_slack import AGENT_SLACK, bot_handoff, customer_conversation, make_agent, posted_card

        await make_agent(hub)
        conversation_id = await customer_conversation(hub, sender="contract-customer")
        ticket = await posted_card(hub, self.state["api"], (await bot_handoff(hub, conversation_id))["id"])
        return {
            "user": AGENT_SLACK,
            "channel": ticket["slack_channel"],
            "thread_ts": ticket["slack_ts"],
            "ts": f"{time.time():.6f}",
        }

    async def deliver(self, hub: Hub, body: bytes, *, forgery: str | None = None, retry: int = 0) -> Delivery:
        headers = SLACK_SIGNER.headers(body, forgery=forgery)
        if retry:
            headers = {**headers, "X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        response = await hub.client.post(
            "/channels/slack/events", data=body, headers={**headers, "Content-Type": "application/json"}
        )
        return await http_delivery(response)

    @asynccontextmanager
    async def send_scenario(self, failure: str, tmp_path: Path) -> AsyncIterator[Any]:
        from channels.slack import SlackChannel
        from tests.fakes.slack_api import FakeSlackApi

        api = await FakeSlackApi().start()
        try:
            if failure == "5xx":
                api.fail("chat.postMessage", 503)
            elif failure == "429":
                api.fail("chat.postMessage", 429, retry_after=7)
            elif failure == "4xx":
                api.fail("chat.postMessage", 404)  # channel_not_found
            # "transport": nothing listens on the URL the client is pointed at.
            url = f"http://127.0.0.1:{free_port()}/api/" if failure == "transport" else api.base_url
            channel = SlackChannel.from_settings(self.settings("sqlite:///unused.db", tmp_path, slack_api_url=url))
            lifespan = asynccontextmanager(channel.lifespan)
            async with lifespan(None):  # type: ignore[arg-type]  # SlackChannel's lifespan never reads the app
                yield lambda: channel.send(outbound("CSUPPORT"))
        finally:
            await api.close()


class SmsContract(Contract):
    name = "sms"
    missing_settings: ClassVar[dict[str, str]] = {
        "twilio_account_sid": "HUB_TWILIO_ACCOUNT_SID",
        "twilio_auth_token": "HUB_TWILIO_AUTH_TOKEN",
        "twilio_from": "HUB_TWILIO_FROM",
    }
    forgeries = ("bad-signature", "missing-signature", "wrong-url")
    malformed: ClassVar[dict[str, str]] = {
        "missing-from.form": "'From' is missing",
        "missing-sid.form": "'MessageSid' is missing",
        "bad-number.form": "'From' is not a phone number",
        "bad-num-media.form": "'NumMedia' must be a number",
        "not-utf8.form": "not valid UTF-8",
        "surrogate.form": "not valid UTF-8",
        "whatsapp-at-sms-url.form": "a WhatsApp message reached the SMS webhook",
    }
    send_expected: ClassVar[dict[str, Expected]] = {
        "transport": Retryable(),
        "5xx": Retryable(),
        "429": Retryable(),  # Twilio's SDK does not expose Retry-After: the outbox backs off
        "4xx": Permanent(),
    }
    valid = "valid.form"
    public_url: ClassVar[str] = "https://support.example.test"
    path: ClassVar[str] = "/channels/sms/twilio"
    sender_setting: ClassVar[dict[str, str]] = {"twilio_from": "+15005550006"}

    def settings(self, database_url: str, tmp_path: Path, **overrides: Any) -> Any:
        from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN

        values: dict[str, Any] = {
            "channels": self.name,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "public_url": self.public_url,
            "twilio_api_url": f"http://127.0.0.1:{free_port()}",
            "twilio_timeout": 2.0,
            **self.sender_setting,
        }
        values.update(overrides)
        return make_settings(database_url, tmp_path, **values)

    async def deliver(self, hub: Hub, body: bytes, *, forgery: str | None = None, retry: int = 0) -> Delivery:
        from urllib.parse import parse_qsl

        from tests.fakes.twilio_api import AUTH_TOKEN, sign_twilio

        # What Twilio signs: the URL it calls and the decoded form fields.
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = self.public_url + self.path
        headers = {
            None: sign_twilio(url, params, AUTH_TOKEN),
            "bad-signature": sign_twilio(url, params, "not-the-auth-token"),
            "missing-signature": {},
            "wrong-url": sign_twilio("https://elsewhere.example.test" + self.path, params, AUTH_TOKEN),
        }[forgery]
        response = await hub.client.post(
            self.path, data=body, headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}
        )
        return await http_delivery(response)

    @asynccontextmanager
    async def send_scenario(self, failure: str, tmp_path: Path) -> AsyncIterator[Any]:
        from channels.sms import SmsChannel
        from tests.fakes.twilio_api import FakeTwilioApi

        api = await FakeTwilioApi().start()
        try:
            api.fail_next.extend({"5xx": [503], "429": [429], "4xx": [(400, 21211)]}.get(failure, []))
            url = f"http://127.0.0.1:{free_port()}" if failure == "transport" else api.base_url
            channel = channel_class(self.name).from_settings(
                self.settings("sqlite:///unused.db", tmp_path, twilio_api_url=url)
            )
            assert isinstance(channel, SmsChannel)
            lifespan = asynccontextmanager(channel.lifespan)
            async with lifespan(None):  # type: ignore[arg-type]  # the SMS lifespan never reads the app
                yield lambda: channel.send(outbound("+15551230001"))
        finally:
            await api.close()


class WhatsappContract(SmsContract):
    name = "whatsapp"
    missing_settings: ClassVar[dict[str, str]] = {
        "twilio_account_sid": "HUB_TWILIO_ACCOUNT_SID",
        "twilio_auth_token": "HUB_TWILIO_AUTH_TOKEN",
        "whatsapp_from": "HUB_WHATSAPP_FROM",
    }
    malformed: ClassVar[dict[str, str]] = {
        "missing-from.form": "'From' is missing",
        "bad-number.form": "'From' is not a phone number",
        "surrogate.form": "not valid UTF-8",
        "sms-at-whatsapp-url.form": "an SMS reached the WhatsApp webhook",
    }
    path: ClassVar[str] = "/channels/whatsapp/twilio"
    sender_setting: ClassVar[dict[str, str]] = {"whatsapp_from": "whatsapp:+14155238886"}


class EmailContract(Contract):
    """E-mail arrives over SMTP, not HTTP: an SMTP session with the hub's own
    server stands for the webhook. 250 is the 200; a recipient refused at
    RCPT (550: mail for someone else, the hub never relays) is the forgery's
    403; a 55x after DATA the malformed payload's 400 (its text the reason).
    The envelope sender is null (``MAIL FROM:<>``), so the headers alone say
    who wrote. The relay is an SMTP sink whose replies stand for the vendor's
    statuses: 451 for a 5xx, 450 (rate limited) for a 429, 550 for a 4xx."""

    name = "email"
    missing_settings: ClassVar[dict[str, str]] = {
        "email_addresses": "HUB_EMAIL_ADDRESSES",
        "email_reply_secret": "HUB_EMAIL_REPLY_SECRET",
    }
    forgeries = ("foreign-recipient",)
    malformed: ClassVar[dict[str, str]] = {
        "no-sender.eml": "the message has no sender address (From)",
        "bad-sender.eml": "the sender address is not valid",
        "empty.eml": "the message is empty",
    }
    send_expected: ClassVar[dict[str, Expected]] = {
        "transport": Retryable(),
        "5xx": Retryable(),
        "429": Retryable(),
        "4xx": Permanent(),
    }
    valid = "valid.eml"

    def settings(self, database_url: str, tmp_path: Path, **overrides: Any) -> Any:
        from tests.channels.email_support import email_settings

        return email_settings(database_url, tmp_path, **overrides)

    @asynccontextmanager
    async def running(self, database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
        from tests.channels.email_support import email_hub

        async with email_hub(database_url, tmp_path) as running:
            self.state["smtp_port"] = running.smtp_port
            yield running.hub

    async def deliver(self, hub: Hub, body: bytes, *, forgery: str | None = None, retry: int = 0) -> Delivery:
        from tests.channels.email_support import SUPPORT, smtp_send

        recipient = "someone@elsewhere.example" if forgery == "foreign-recipient" else SUPPORT
        outcome = await smtp_send(self.state["smtp_port"], body, mail_from="<>", rcpt_to=(recipient,))
        if not outcome.data:
            return Delivery(403, f"RCPT refused with {outcome.rcpt}")
        status = {250: 200, 451: 503, 552: 413}.get(outcome.data, 400 if outcome.data >= 500 else 500)
        return Delivery(status, outcome.data_message)

    @asynccontextmanager
    async def send_scenario(self, failure: str, tmp_path: Path) -> AsyncIterator[Any]:
        from channels.email import EmailChannel
        from tests.fakes.smtp_sink import SmtpSink

        sink = await SmtpSink().start()
        try:
            sink.fail_next.extend(
                {
                    "5xx": ["451 4.3.0 Local error"],
                    "429": ["450 4.7.1 Rate limited"],
                    "4xx": ["550 5.1.1 No such user"],
                }.get(failure, [])
            )
            port = free_port() if failure == "transport" else sink.port
            channel = EmailChannel.from_settings(
                self.settings("sqlite:///unused.db", tmp_path, email_smtp_port=0, email_relay_port=port)
            )
            lifespan = asynccontextmanager(channel.lifespan)
            async with lifespan(None):  # type: ignore[arg-type]  # the e-mail lifespan never reads the app
                yield lambda: channel.send(outbound("ada@customer.example.org"))
        finally:
            await sink.close()


CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (FakeContract(), WebchatContract(), SlackContract(), SmsContract(), WhatsappContract(), EmailContract())
}


def outbound(to: str, *, message_id: int = 1) -> OutboundMessage:
    return OutboundMessage(
        message_id=message_id,
        conversation_id=1,
        channel="contract",
        to=to,
        text=SENT_TEXT,
        idempotency_key=f"contract-{message_id}",
    )


@pytest.fixture(params=sorted(CONTRACTS))
def contract(request: pytest.FixtureRequest) -> Contract:
    adapter = CONTRACTS[request.param]
    adapter.state.clear()
    return adapter


@pytest_asyncio.fixture
async def running(contract: Contract, database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    async with contract.running(database_url, tmp_path) as hub:
        yield hub


def test_every_registered_channel_has_a_contract() -> None:
    assert set(CONTRACTS) == set(KNOWN_CHANNELS)
    for name in CONTRACTS:
        assert (FIXTURES / name / CONTRACTS[name].valid).is_file()


# --- the contract ---------------------------------------------------------------------
def test_missing_secrets_are_a_config_error_naming_them(contract: Contract, tmp_path: Path) -> None:
    cls = channel_class(contract.name)
    complete = contract.settings("sqlite:///unused.db", tmp_path)
    assert isinstance(cls.from_settings(complete), cls)
    missing = contract.settings("sqlite:///unused.db", tmp_path, **dict.fromkeys(contract.missing_settings))
    with pytest.raises(ConfigError) as refused:
        cls.from_settings(missing)
    for env_name in contract.missing_settings.values():
        assert env_name in refused.value.message
    # One secret missing: that one is named, and no other.
    for setting, env_name in contract.missing_settings.items():
        with pytest.raises(ConfigError) as refused:
            cls.from_settings(contract.settings("sqlite:///unused.db", tmp_path, **{setting: None}))
        named = [name for name in contract.missing_settings.values() if name in refused.value.message]
        assert named == [env_name], (setting, refused.value.message)


@pytest.mark.asyncio
async def test_forged_input_is_refused_and_nothing_is_stored(contract: Contract, running: Hub) -> None:
    values = await contract.prepare(running)
    body = fixture(contract.name, contract.valid, external_id="contract-forged-1", text="Forged: refund me", **values)
    before = await stored_rows(running)
    for forgery in contract.forgeries:
        delivery = await contract.deliver(running, body, forgery=forgery)
        assert delivery.status in (401, 403), (forgery, delivery)
    await asyncio.sleep(contract.settle)
    assert await stored_rows(running) == before
    # The same payload, genuine, is stored: what was refused was the forgery, not the payload.
    contract.state.pop("token", None)
    assert (await contract.deliver(running, body)).status == 200
    await wait_for(lambda: _more_messages(running, before))


async def _more_messages(hub: Hub, before: dict[str, int]) -> bool:
    return (await stored_rows(hub))["messages"] > before["messages"]


@pytest.mark.asyncio
async def test_malformed_payload_is_refused_with_its_reason(contract: Contract, running: Hub) -> None:
    await contract.prepare(running)
    before = await stored_rows(running)
    for name, reason in contract.malformed.items():
        delivery = await contract.deliver(running, fixture(contract.name, name))
        assert delivery.status == 400, (name, delivery)
        assert reason in delivery.reason, (name, delivery)
    await asyncio.sleep(contract.settle)
    assert await stored_rows(running) == before


@pytest.mark.asyncio
async def test_retried_delivery_is_stored_once(contract: Contract, running: Hub) -> None:
    values = await contract.prepare(running)
    body = fixture(contract.name, contract.valid, external_id="contract-retried-1", text="Once only, please", **values)
    before = await stored_rows(running)
    deliveries = [await contract.deliver(running, body, retry=n) for n in range(4)]
    assert [d.status for d in deliveries] == [200] * 4, deliveries
    if deliveries[0].duplicate is not None:
        assert [d.duplicate for d in deliveries] == [False, True, True, True]
    await wait_for(lambda: _more_messages(running, before))
    await asyncio.sleep(contract.settle)
    assert (await stored_rows(running))["messages"] == before["messages"] + 1


@pytest.mark.asyncio
@pytest.mark.parametrize("failure", SEND_FAILURES)
async def test_send_failures_say_whether_to_retry(contract: Contract, failure: str, tmp_path: Path) -> None:
    expected = contract.send_expected.get(failure)
    if expected is None:
        pytest.skip(f"{contract.name} has no vendor that can fail with {failure}")
    async with contract.send_scenario(failure, tmp_path) as send:
        if isinstance(expected, Undelivered):
            result = await send()
            assert isinstance(result, SendResult) and not result.delivered
            return
        with pytest.raises(ChannelSendError) as failed:
            await send()
    assert failed.value.retryable is isinstance(expected, Retryable)
    if isinstance(expected, Retryable) and expected.retry_after is not None:
        assert failed.value.retry_after == expected.retry_after
