"""The resilience suite's load (no tests here): customers writing in over
the fake channel, SMS and WhatsApp (Twilio's signed webhooks), e-mail (SMTP
to each instance's own server, as an MX with two hosts would, or IMAP: mail
put into the support mailbox both instances read) and web chat sockets,
through two hub instances alternately, as a balancer would send them.

Each customer is one scripted conversation: its messages go one after the
other (the next once the hub has taken the previous), so their order is
known. Every delivery is retried, on the other instance, until one answers
2xx (a provider retrying after a timeout or a dropped connection), and some
are delivered twice on purpose (once more after the success, or to both
instances at once), so that "no duplicates" means something.

Mail by IMAP has no answer to wait for: it is APPENDed into the mailbox (as
the mail system's delivery would put it there) and "taken" once the hub
stored it (its Message-ID in the messages table, looked up every
``IMAP_LOOK_EVERY`` seconds); some mails are APPENDed twice (both at once,
or again once stored), same Message-ID, as a redelivering mail system
would. Apart from that look, nothing here reads the hub's memory: what it
stored is checked in the database after (``audit``). Web chat visitors are
in ``chat``, the agent in ``agent``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

import aiohttp
import aiosmtplib
import asyncpg

from channels.fake import sign as sign_fake
from tests.fakes.twilio_api import inbound_params, sign_twilio

if TYPE_CHECKING:
    from tests.fakes.dovecot import Dovecot
    from tests.resilience.chat import WebchatVisitor

PUBLIC_URL = "http://hub.resilience.test"  # the balancer's address: Twilio signs URLs under it
FAKE_SECRET = "resilience-fake-secret"
SMS_PATH = "/channels/sms/twilio"
WHATSAPP_PATH = "/channels/whatsapp/twilio"
WHATSAPP_NUMBER = "+14155238886"
SUPPORT_ADDRESS = "help@support.resilience.test"  # HUB_EMAIL_ADDRESSES
# The mix, by conversation index (six slots: every HANDOFF_EVERY-th lands on each channel in turn).
# With a mailbox (``imap=True``), every IMAP_EVERY-th e-mail customer's mail
# goes into it by IMAP instead of SMTP (channel "imap" here, "email" in the
# hub): one instance reads the mailbox, a mail at a time, so a bigger share
# mostly makes the run longer.
CHANNELS = ("fake", "email", "sms", "webchat", "whatsapp", "fake")
IMAP_EVERY = 4
# IMAP customers take longest (the reader takes in a mail at a time, each
# once the server tells of it): they start this many conversations ahead of
# their turn, so that the load does not end waiting for the last one's mails.
IMAP_LEAD = 2 * IMAP_EVERY * len(CHANNELS)
IMAP_LOOK_EVERY = 0.05  # seconds between looks whether the hub stored an APPENDed mail
MESSAGES_PER_CONVERSATION = 4
HANDOFF_EVERY = 5  # every 5th conversation ends asking for a person: the bot hands it off
DUPLICATE_RATE = 0.05  # delivered again after the hub took it
RACING_DUPLICATE_RATE = 0.05  # delivered to both instances at once
GIVE_UP_AFTER = 120.0  # seconds one message may take to be taken, retries included
TEXT = re.compile(r"^(c\d{5}) #(\d+) ")


@dataclass
class Script:
    """One customer's conversation: ``texts`` in order; ``handoff``: the last one asks for a person."""

    index: int
    channel: str
    texts: list[str]
    handoff: bool

    @property
    def key(self) -> str:
        return f"c{self.index:05d}"

    @property
    def address(self) -> str:
        if self.channel == "sms":
            return f"+1555{2_000_000 + self.index:07d}"
        if self.channel == "whatsapp":
            return f"whatsapp:+1555{3_000_000 + self.index:07d}"
        if self.channel in ("email", "imap"):
            return f"{self.key}@customer.resilience.test"
        return f"resil-{self.key}"


def scripts(total_messages: int, *, imap: bool = False) -> list[Script]:
    """Conversations of ``MESSAGES_PER_CONVERSATION`` messages until ``total_messages`` are written;
    with ``imap``, every ``IMAP_EVERY``-th e-mail conversation by IMAP."""
    made: list[Script] = []
    left = total_messages
    index = 0
    while left > 0:
        count = min(MESSAGES_PER_CONVERSATION, left)
        handoff = index % HANDOFF_EVERY == HANDOFF_EVERY - 1
        key = f"c{index:05d}"
        # Words the stand-in Rasa reacts to ("person", "down"...) and SMS
        # keywords (STOP, HELP...) appear only where meant.
        texts = [f"{key} #{k} where is my parcel number {index * 10 + k}" for k in range(count)]
        if handoff:
            texts[-1] = f"{key} #{count - 1} can I talk to a person please"
        channel = CHANNELS[index % len(CHANNELS)]
        if imap and channel == "email" and (index // len(CHANNELS)) % IMAP_EVERY == 1:
            channel = "imap"
        made.append(Script(index, channel, texts, handoff))
        left -= count
        index += 1
    return made


def parse_text(body: str) -> tuple[str, int] | None:
    """The conversation key and the position of a customer's message, from its text."""
    found = TEXT.match(body)
    return (found.group(1), int(found.group(2))) if found else None


@dataclass
class Tally:
    """What the load did, counted from outside."""

    sent: Counter[str] = field(default_factory=Counter)  # distinct messages taken, by channel
    attempts: int = 0  # deliveries made, retries and deliberate duplicates included
    failed_attempts: int = 0  # refused (5xx), dropped or timed out: retried
    duplicates_sent: int = 0  # deliberate second deliveries of a message already taken
    gave_up: list[str] = field(default_factory=list)  # messages no instance took within GIVE_UP_AFTER
    errors: Counter[str] = field(default_factory=Counter)  # why attempts failed
    # Answers of an instance that was up: HTTP 5xx, or a chat's internal_error
    # (a killed instance drops connections instead).
    server_errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, webhook deliveries an instance took
    imap_latencies: list[float] = field(default_factory=list)  # seconds from a mail's APPEND to its storing
    imap_last_uid: int = 0  # the highest UID APPENDed: the hub has read the mailbox once its cursor is there
    # Visitor key -> the bot answers its chat showed while open (pushed live, or
    # in the history of a socket resumed after a drop).
    webchat_live: dict[str, set[int]] = field(default_factory=dict)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    def latency_ms(self, share: float, latencies: list[float] | None = None) -> float | None:
        latencies = self.latencies if latencies is None else latencies
        if not latencies:
            return None
        ordered = sorted(latencies)
        return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


class Load:
    """Plays ``scripts`` against ``urls`` (the instances) with at most ``concurrency`` customers writing at once."""

    def __init__(
        self,
        urls: Sequence[str],
        scripts: list[Script],
        *,
        concurrency: int,
        smtp_ports: Sequence[int] = (),
        mailbox: Dovecot | None = None,
        database_url: str | None = None,
        seed: int = 18,
    ) -> None:
        self.urls = list(urls)
        self.smtp_ports = list(smtp_ports)  # each instance's SMTP server, in the order of ``urls``
        # The support mailbox both instances read ("imap" scripts), and the
        # database (an asyncpg DSN) looked at for when the hub stored a mail.
        self.mailbox = mailbox
        self.database_url = database_url
        self.db: asyncpg.Pool | None = None
        self.scripts = scripts
        self.concurrency = concurrency
        self.random = random.Random(seed)
        self.tally = Tally()
        self.visitors: dict[str, WebchatVisitor] = {}
        self.chats: list[asyncio.Task[None]] = []
        self.settled = asyncio.Event()  # set when the hub has nothing left to send
        self.http: aiohttp.ClientSession | None = None

    @property
    def planned(self) -> int:
        return sum(len(s.texts) for s in self.scripts)

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
            self.http = http
            if self.mailbox is not None:
                assert self.database_url is not None
                self.db = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
            try:
                yield
            finally:
                for chat in self.chats:
                    chat.cancel()
                await asyncio.gather(*self.chats, return_exceptions=True)
                self.http = None
                if self.db is not None:
                    await self.db.close()
                    self.db = None

    async def write(self) -> None:
        """Every customer writes every message; web chats stay open after, waiting for their answers."""
        queue: asyncio.Queue[Script] = asyncio.Queue()
        for script in sorted(self.scripts, key=lambda s: s.index - (IMAP_LEAD if s.channel == "imap" else 0)):
            queue.put_nowait(script)
        await asyncio.gather(*(self._customer(queue) for _ in range(self.concurrency)))

    async def close_chats(self) -> None:
        """Once the hub has sent everything: the chats still open close."""
        self.settled.set()
        await asyncio.gather(*self.chats)

    async def reconnect_missed(self) -> int:
        """Once the hub has sent everything, every chat that missed answers
        while open resumes (on the other instance than it started on), as
        the widget does on its next connection. How many did."""
        gate = asyncio.Semaphore(self.concurrency)
        missed = [v for v in self.visitors.values() if v.missed and v.token is not None]

        async def resume(visitor: WebchatVisitor) -> None:
            async with gate:
                await visitor.reconnect(self.urls[(visitor.script.index + 1) % len(self.urls)])

        await asyncio.gather(*(resume(v) for v in missed))
        return len(missed)

    async def check_histories(self) -> None:
        """Every chat visitor opens the chat once more (on either instance) and reads the whole conversation."""
        gate = asyncio.Semaphore(self.concurrency)

        async def check(index: int, visitor: WebchatVisitor) -> None:
            async with gate:
                await visitor.check_history(self.urls[index % len(self.urls)])

        await asyncio.gather(*(check(i, v) for i, v in enumerate(self.visitors.values())))

    async def _customer(self, queue: asyncio.Queue[Script]) -> None:
        while not queue.empty():
            script = queue.get_nowait()
            if script.channel == "webchat":
                from tests.resilience.chat import WebchatVisitor  # it imports this module

                visitor = self.visitors[script.key] = WebchatVisitor(script, self)
                chat = asyncio.create_task(visitor.run(), name=f"chat-{script.key}")
                self.chats.append(chat)
                written = asyncio.create_task(visitor.written.wait())
                await asyncio.wait({chat, written}, return_when=asyncio.FIRST_COMPLETED)
                written.cancel()
            elif script.channel == "imap":
                for position in range(len(script.texts)):
                    await self._imap(script, position)
            else:
                for position in range(len(script.texts)):
                    await self._webhook(script, position)

    def taken(self, script: Script) -> None:
        self.tally.sent[script.channel] += 1

    # --- signed webhooks (fake channel, SMS) ---------------------------------------
    def _request(
        self, script: Script, position: int
    ) -> tuple[str, bytes | dict[str, str], Callable[[], dict[str, str]]]:
        text = script.texts[position]
        if script.channel in ("sms", "whatsapp"):
            sid = "SM" + hashlib.md5(f"{script.key}-{position}".encode()).hexdigest()
            path, to = (
                (SMS_PATH, "+15005550006")
                if script.channel == "sms"
                else (WHATSAPP_PATH, f"whatsapp:{WHATSAPP_NUMBER}")
            )
            params = inbound_params(sender=script.address, body=text, message_sid=sid, to=to)
            return path, params, lambda: sign_twilio(PUBLIC_URL + path, params)
        item = {
            "from": script.address,
            "text": text,
            "id": f"{script.key}-{position}",
            "name": f"Customer {script.key}",
        }
        raw = json.dumps(item).encode()
        return (
            "/channels/fake/webhook",
            raw,
            lambda: {**sign_fake(FAKE_SECRET, raw), "Content-Type": "application/json"},
        )

    async def _webhook(self, script: Script, position: int) -> None:
        deliver: Callable[[int], Awaitable[bool]]
        if script.channel == "email":
            raw = self._mail(script, position)

            def deliver(start: int) -> Awaitable[bool]:
                return self._deliver_mail(script.address, raw, start)
        else:
            path, body, headers = self._request(script, position)

            def deliver(start: int) -> Awaitable[bool]:
                return self._deliver(path, body, headers, start)

        first = (script.index + position) % len(self.urls)  # alternate, like a round-robin balancer
        roll = self.random.random()
        if roll < RACING_DUPLICATE_RATE:  # a provider's retry racing its first delivery
            self.tally.duplicates_sent += 1
            results = await asyncio.gather(*(deliver(start) for start in range(len(self.urls))))
            taken = any(results)
        else:
            taken = await deliver(first)
            if taken and roll < RACING_DUPLICATE_RATE + DUPLICATE_RATE:  # the 2xx was lost: sent again
                self.tally.duplicates_sent += 1
                await deliver(first + 1)
        if taken:
            self.taken(script)
        else:
            self.tally.gave_up.append(script.texts[position])

    async def _deliver(
        self, path: str, body: bytes | dict[str, str], headers: Callable[[], dict[str, str]], start: int
    ) -> bool:
        """Post until an instance answers 2xx, switching instance after each failure."""
        assert self.http is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_AFTER
        attempt = 0
        while loop.time() < deadline:
            url = self.urls[(start + attempt) % len(self.urls)] + path
            self.tally.attempts += 1
            sent_at = loop.time()
            try:
                async with self.http.post(url, data=body, headers=headers()) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.tally.latencies.append(loop.time() - sent_at)
                        return True
                    if response.status < 500 and response.status != 429:
                        raise AssertionError(f"{url} refused a genuine delivery: {response.status}")
                    self.tally.errors[f"http {response.status}"] += 1
                    self.tally.server_errors += response.status >= 500
            except (aiohttp.ClientError, TimeoutError) as err:
                self.tally.errors[type(err).__name__] += 1
            self.tally.failed_attempts += 1
            attempt += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * self.random.uniform(0.5, 1.0))
        return False

    # --- e-mail over SMTP ---------------------------------------------------------------
    def _mail(self, script: Script, position: int) -> bytes:
        """The customer's mail: the same bytes (and Message-ID) on every delivery of it."""
        message = EmailMessage()
        message["From"] = f"Customer {script.key} <{script.address}>"
        message["To"] = SUPPORT_ADDRESS
        message["Subject"] = f"My parcel ({script.key})"
        message["Date"] = format_datetime(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=position))
        message["Message-ID"] = f"<{script.key}-{position}@customer.resilience.test>"
        message.set_content(script.texts[position])
        return message.as_bytes()

    async def _deliver_mail(self, sender: str, raw: bytes, start: int) -> bool:
        """An MX delivering: one instance's SMTP server, then the other after a
        refusal (4xx), a dropped connection or a timeout, until one answers 250."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_AFTER
        attempt = 0
        while loop.time() < deadline:
            port = self.smtp_ports[(start + attempt) % len(self.smtp_ports)]
            self.tally.attempts += 1
            sent_at = loop.time()
            try:
                await aiosmtplib.send(
                    raw,
                    sender=sender,
                    recipients=[SUPPORT_ADDRESS],
                    hostname="127.0.0.1",
                    port=port,
                    use_tls=False,
                    start_tls=False,
                    timeout=10,
                    local_hostname="mx.customer.resilience.test",
                )
                self.tally.latencies.append(loop.time() - sent_at)
                return True
            except aiosmtplib.SMTPResponseException as err:
                if err.code >= 500:
                    raise AssertionError(f"SMTP on {port} refused a genuine mail: {err.code} {err.message}") from err
                self.tally.errors[f"smtp {err.code}"] += 1
                self.tally.server_errors += 1  # an instance that was up could not take it
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
                self.tally.errors[f"smtp {type(err).__name__}"] += 1
            self.tally.failed_attempts += 1
            attempt += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * self.random.uniform(0.5, 1.0))
        return False

    # --- e-mail by IMAP: into the mailbox both instances read --------------------------
    async def _imap(self, script: Script, position: int) -> None:
        """APPEND the customer's mail (twice at once, or again once stored, now
        and then) and wait until the hub stored it."""
        assert self.mailbox is not None
        raw = self._mail(script, position)
        loop = asyncio.get_running_loop()
        appended = loop.time()
        roll = self.random.random()
        copies = 2 if roll < RACING_DUPLICATE_RATE else 1  # a redelivery racing the first
        self.tally.duplicates_sent += copies - 1
        await self._append(raw, copies)
        taken = await self._stored(f"<{script.key}-{position}@customer.resilience.test>", appended + GIVE_UP_AFTER)
        if taken:
            self.tally.imap_latencies.append(loop.time() - appended)
            if RACING_DUPLICATE_RATE <= roll < RACING_DUPLICATE_RATE + DUPLICATE_RATE:  # delivered again later
                self.tally.duplicates_sent += 1
                await self._append(raw, 1)
            self.taken(script)
        else:
            self.tally.gave_up.append(script.texts[position])

    async def _append(self, raw: bytes, copies: int) -> None:
        assert self.mailbox is not None
        uids = await asyncio.gather(*(self.mailbox.append(raw) for _ in range(copies)))
        self.tally.attempts += copies
        self.tally.imap_last_uid = max(self.tally.imap_last_uid, *uids)

    async def _stored(self, message_id: str, deadline: float) -> bool:
        """Whether the hub stored the mail of ``message_id`` before ``deadline`` (loop time)."""
        assert self.db is not None
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            found = await self.db.fetchval(
                "SELECT 1 FROM messages WHERE channel = 'email' AND external_id = $1", message_id
            )
            if found:
                return True
            await asyncio.sleep(IMAP_LOOK_EVERY)
        return False


async def at_progress(load: Load, share: float, action: Callable[[], Awaitable[None]]) -> None:
    """Run ``action`` once ``share`` of the planned messages were taken."""
    while load.tally.total_sent < share * load.planned:
        await asyncio.sleep(0.05)
    await action()
