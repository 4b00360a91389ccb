"""Two real ``hub serve`` processes under load while things break (issue #18).

Both instances share the machine's PostgreSQL (a database of this run's
own) and a Redis server of this test's own; Slack, Twilio and Rasa are the
loopback stand-ins of ``tests/fakes`` (and an SMTP sink as the mail
relay), and a real Dovecot on loopback holds the support mailbox that both
instances read by IMAP (one at a time: the folder's lease). Customers write
in over the fake channel, SMS, WhatsApp, e-mail (SMTP to either instance's
server, or IMAP: APPENDed into the mailbox) and web chat, each message to
one instance or the other like a balancer, with at most
``HUB_RESILIENCE_CONCURRENCY`` customers writing at once; some deliveries
are repeated on purpose (a mail APPENDed twice with one Message-ID), and
every failed one is retried on the other instance. Meanwhile: Slack and
Twilio answer 429 and 500 for a while, one instance (the IMAP reader, the
holder of the mailbox's lease) is SIGKILLed and started again, so the other
takes the mailbox over, Redis is killed and started again (every
connection and subscription gone), and Slack and Twilio fail once more.
Without dovecot installed, the e-mail customers all write by SMTP (said
in the output).

Afterwards the database and the fakes must show every message stored once,
in order, answered once by the bot and delivered (every mail reply at the
relay once; SMTP cannot be asked what it took, so a reply whose first send
had an unknown outcome - its instance SIGKILLed between the relay's 250 and
recording it - may arrive once more from its outbox row's next attempt,
with the same Message-ID receivers drop it by: counted as ``mails_resent``,
never more copies than attempts); the mailbox read to its last mail; no queue row left
undone; every handoff with exactly one ticket and one Slack card; every
web chat answer shown live or, when its socket's instance was killed as it
was pushed, on the widget's resume after (counted apart). The test passes
or fails, never xfail. The figures are printed as one line of JSON
(``pytest -s``) and are the failure message.

``HUB_RESILIENCE_MESSAGES`` sets the number of customer messages: the
issue's 10,000 in CI (4 min 23 s on the quiet 2-core machine, 48 customers
at once), 1,200 (about a minute) otherwise;
``HUB_RESILIENCE_CONCURRENCY`` (48) how many write at once. The figures
print the throughput.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tests.conftest import RESILIENCE_FIGURES, _create_pg_database, _drop_pg_database, database_urls
from tests.fakes.dovecot import DOVECOT, PASSWORD, USER, Dovecot
from tests.fakes.rasa import FakeRasa
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi
from tests.resilience.agent import Agent
from tests.resilience.audit import asyncpg_dsn, audit, mailbox_read_up, unfinished
from tests.resilience.cluster import REDIS_SERVER, HubProcess, RedisServer, hub_env
from tests.resilience.load import (
    FAKE_SECRET,
    PUBLIC_URL,
    SUPPORT_ADDRESS,
    WHATSAPP_NUMBER,
    Load,
    at_progress,
    scripts,
)

pytestmark = pytest.mark.postgres

# The 10,000 in CI (4 min 23 s on this 2-core machine when quiet); 1,200 (about a
# minute) otherwise, for a quick run on a laptop.
MESSAGES = int(os.environ.get("HUB_RESILIENCE_MESSAGES", "10000" if os.environ.get("CI") else "1200"))
CONCURRENCY = int(os.environ.get("HUB_RESILIENCE_CONCURRENCY", "48"))
# "off": the same load with nothing breaking, for a baseline of the figures.
CHAOS = os.environ.get("HUB_RESILIENCE_CHAOS", "on") != "off"
# "off": no mailbox, every e-mail customer writes by SMTP (as without dovecot installed).
IMAP = os.environ.get("HUB_RESILIENCE_IMAP", "on") != "off"
STORM_ERRORS = 8  # calls Slack and Twilio each refuse, every time they fail
STORM_SECONDS = 15.0  # at most this long
SLACK_METHODS = ("chat.postMessage", "chat.update")
# After the load, the queues may go this many seconds without a row getting
# done (well over the 10 s leases of the rows a killed instance held).
STALL_LIMIT = 45.0


def postgres_base() -> str:
    for url in database_urls():
        if url.startswith("postgresql"):
            return url
    return "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@pytest_asyncio.fixture
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    base = postgres_base()
    try:
        url, name = await _create_pg_database(base)
    except (OSError, asyncpg.PostgresError) as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {base} is not reachable: {err}")
    from hub.storage.migrate import upgrade

    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _drop_pg_database(base, name)


def imap_env(mailbox: Dovecot | None) -> dict[str, str]:
    """Both instances read the one support mailbox (none: no IMAP)."""
    if mailbox is None:
        return {}
    return {
        "HUB_EMAIL_IMAP_HOST": "127.0.0.1",
        "HUB_EMAIL_IMAP_PORT": str(mailbox.port),
        "HUB_EMAIL_IMAP_TLS": "none",
        "HUB_EMAIL_IMAP_USERNAME": USER,
        "HUB_EMAIL_IMAP_PASSWORD": PASSWORD,
        "HUB_EMAIL_IMAP_FIRST_SYNC": "all",
    }


def imap_lease(mailbox: Dovecot) -> str:
    """The name of the mailbox folder's lease (``ImapPoller.lease_name``)."""
    return f"imap:{USER}@127.0.0.1:{mailbox.port}/INBOX"


def instance_env(name: str, tmp_path: Path, database_url: str, redis: RedisServer, slack: FakeSlackApi,
                 twilio: FakeTwilioApi, relay: SmtpSink, rasa_url: str,
                 mailbox: Dovecot | None) -> dict[str, str]:  # fmt: skip
    return hub_env(
        **imap_env(mailbox),
        HUB_DATABASE_URL=database_url,
        HUB_REDIS_URL=redis.url,
        HUB_DATA_DIR=str(tmp_path / name),
        HUB_PUBLIC_URL=PUBLIC_URL,
        HUB_LOG_LEVEL="WARNING",
        HUB_CHANNELS="fake,sms,whatsapp,email,webchat,slack",
        HUB_FAKE_SECRET=FAKE_SECRET,
        HUB_KB_ENABLED="false",
        HUB_CSAT_ENABLED="false",
        HUB_BOT="rasa",
        HUB_RASA_URL=rasa_url,
        # Leases and backoff of a real deployment, shortened so the run fits
        # in minutes (a row a killed instance held is taken over after 10 s);
        # more attempts instead, so a vendor outage still spans fewer of them.
        HUB_OUTBOX_LEASE_SECONDS="10",
        HUB_OUTBOX_BASE_DELAY="0.25",
        HUB_OUTBOX_MAX_DELAY="2",
        HUB_OUTBOX_MAX_ATTEMPTS="30",
        HUB_OUTBOX_POLL_INTERVAL="0.2",
        HUB_SLACK_JOBS_BASE_DELAY="0.25",
        HUB_SLACK_JOBS_MAX_DELAY="2",
        HUB_SLACK_JOBS_MAX_ATTEMPTS="30",
        HUB_SLACK_JOBS_POLL_INTERVAL="0.2",
        HUB_SLACK_JOBS_LEASE_SECONDS="10",
        HUB_BOT_JOBS_LEASE_SECONDS="10",
        HUB_LEASE_SECONDS="10",  # the singletons': the IMAP folder's reader is taken over 10 s after it died
        HUB_SLACK_BOT_TOKEN="xoxb-resilience",
        HUB_SLACK_SIGNING_SECRET="resilience-slack-secret",
        HUB_SLACK_API_URL=slack.base_url,
        HUB_SLACK_DEFAULT_CHANNEL="CSUPPORT",
        HUB_SLACK_URGENT_CHANNEL="CURGENT",
        HUB_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        HUB_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        HUB_TWILIO_FROM="+15005550006",
        HUB_WHATSAPP_FROM=WHATSAPP_NUMBER,
        HUB_TWILIO_API_URL=twilio.base_url,
        HUB_TWILIO_TIMEOUT="3",
        HUB_EMAIL_ADDRESSES=SUPPORT_ADDRESS,
        HUB_EMAIL_REPLY_SECRET="resilience-email-secret",
        HUB_EMAIL_RELAY_HOST=relay.host,
        HUB_EMAIL_RELAY_PORT=str(relay.port),
        HUB_EMAIL_RELAY_TLS="none",
        HUB_EMAIL_RELAY_TIMEOUT="5",
        HUB_WEBCHAT_SECRETS="resilience-webchat-secret",
        HUB_WEBCHAT_ALLOWED_ORIGINS=PUBLIC_URL,
        HUB_WEBCHAT_AGENTS_ONLINE="true",
        # Every visitor comes from 127.0.0.1: the per-address limits would be the bottleneck.
        HUB_WEBCHAT_SESSION_RATE="100",
        HUB_WEBCHAT_SESSION_BURST="100",
        HUB_WEBCHAT_IP_RATE="100000",
        HUB_WEBCHAT_IP_BURST="100000",
        HUB_WEBCHAT_MAX_SOCKETS_PER_IP="10000",
    )


async def agent_token(database_url: str) -> str:
    """An agent's API token, made the way ``hub users`` makes one."""
    from hub import auth
    from hub.storage import open_database

    db = open_database(database_url)
    try:
        user = await db.write(
            lambda conn: auth.create_user(conn, name="Resilience Agent", email="agent@resilience.test", role="agent")
        )
        return (await db.write(auth.create_token, user.id, "resilience"))[0]
    finally:
        await db.close()


class Chaos:
    """What goes wrong during the run, and a record of it."""

    def __init__(self, hubs: list[HubProcess], redis: RedisServer, slack: FakeSlackApi, twilio: FakeTwilioApi,
                 database_url: str, mailbox: Dovecot | None) -> None:  # fmt: skip
        self.hubs, self.redis, self.slack, self.twilio = hubs, redis, slack, twilio
        self.database_url, self.mailbox = database_url, mailbox
        self.vendor_errors: Counter[str] = Counter()
        self.log: list[str] = []
        self.started = time.monotonic()
        self.storming = asyncio.Lock()
        self.imap_takeovers = 0  # the IMAP reader was killed and the other instance read on
        self.problems: list[str] = []

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:.1f}s {what}")

    async def vendor_storm(self) -> None:
        """Slack and Twilio answer 429 (with Retry-After) and 500 to every call, until each
        refused ``STORM_ERRORS`` calls (``STORM_SECONDS`` at most)."""
        async with self.storming:  # one at a time, if the load outruns a storm
            await self._storm()

    async def _storm(self) -> None:
        self.note("Slack and Twilio answer 429/500")
        queued = 10_000
        for method in SLACK_METHODS:
            self.slack.failures[method] = [(429, 0.5), (500, None)] * (queued // 2)
        self.twilio.fail_next[:] = [429, 500] * (queued // 2)

        def refused() -> tuple[int, int]:
            slack = sum(queued - len(self.slack.failures[m]) for m in SLACK_METHODS)
            return slack, queued - len(self.twilio.fail_next)

        loop = asyncio.get_running_loop()
        ends = loop.time() + STORM_SECONDS
        while min(refused()) < STORM_ERRORS and loop.time() < ends:
            await asyncio.sleep(0.05)
        slack, twilio = refused()
        for method in SLACK_METHODS:
            del self.slack.failures[method]
        self.twilio.fail_next.clear()
        self.vendor_errors["slack"] += slack
        self.vendor_errors["twilio"] += twilio
        self.note(f"Slack and Twilio answer again ({slack} and {twilio} calls refused)")

    async def imap_reader(self) -> HubProcess | None:
        """The instance holding the mailbox's lease (its holder names its pid), if any."""
        if self.mailbox is None:
            return None
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            holder = await conn.fetchval("SELECT holder FROM leases WHERE name = $1", imap_lease(self.mailbox))
        finally:
            await conn.close()
        pid = holder.split(":")[-2] if holder else None
        return next((h for h in self.hubs if h.process and str(h.process.pid) == pid), None)

    async def kill_and_restart(self, which: int) -> None:
        """SIGKILL the IMAP reader (``which`` without IMAP), start it again after a
        second, or once the other instance took the mailbox over (its lease expired)."""
        reader = await self.imap_reader()
        if self.mailbox is not None and reader is None:
            # Without a lease both instances would read the mailbox (the Message-ID dedupe
            # hides that from the counts): the lease is the only sign of one reader.
            self.problems.append("no instance held the mailbox's lease when one was killed")
        hub = reader or self.hubs[which]
        await hub.sigkill()
        self.note(f"SIGKILLed {hub.name}" + (" (the IMAP reader)" if reader else ""))
        await asyncio.sleep(1.0)
        if reader is not None:
            await self.imap_taken_over(reader)
        await hub.start()
        self.note(f"{hub.name} ready again")

    async def imap_taken_over(self, dead: HubProcess) -> None:
        """Wait until another instance than ``dead`` reads the mailbox (``STALL_LIMIT`` at most: else a problem)."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + STALL_LIMIT
        while loop.time() < ends:
            reader = await self.imap_reader()
            if reader is not None and reader is not dead:
                self.imap_takeovers += 1
                self.note(f"{reader.name} took the mailbox over")
                return
            await asyncio.sleep(0.2)
        self.problems.append(f"no instance took the mailbox over within {STALL_LIMIT:g} s of {dead.name}'s death")

    async def restart_redis(self) -> None:
        await self.redis.restart()
        self.note("Redis restarted")


async def drain(database_url: str) -> float:
    """Wait until no queue holds a row to work, for as long as rows keep
    getting done (a backlog after a big run), but no longer than
    ``STALL_LIMIT`` without progress (stuck rows: the audit names them).
    The seconds it took."""
    started = time.monotonic()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        calm, fewest, progressed = 0, None, time.monotonic()
        while time.monotonic() - progressed < STALL_LIMIT:
            left = await unfinished(conn)
            pending = sum(n for statuses in left.values() for status, n in statuses.items() if status != "dead")
            calm = calm + 1 if not pending else 0
            if calm >= 3:  # three empty looks in a row: nothing in flight either
                break
            if fewest is None or pending < fewest:
                fewest, progressed = pending, time.monotonic()
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return time.monotonic() - started


@pytest.mark.asyncio
@pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="needs redis-server")
async def test_two_instances_lose_and_double_nothing_while_things_break(
    postgres_url: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    slack, twilio, rasa = await FakeSlackApi().start(), await FakeTwilioApi().start(), FakeRasa()
    relay = await SmtpSink().start()
    rasa_url = await rasa.start()
    redis = await RedisServer(tmp_path / "redis").start()
    mailbox = None
    if DOVECOT and IMAP:
        # No look for changes of its own in IDLE besides the notifications (30 s by default):
        # mail the hub failed to see would wait for the next one, or be given up on.
        mailbox = Dovecot(idle_check=3600)
        await asyncio.to_thread(mailbox.start)
    else:
        why = "HUB_RESILIENCE_IMAP=off" if not IMAP else "dovecot is not installed (apt-get install dovecot-imapd)"
        print(f"\nresilience: {why}: no mail by IMAP, every e-mail customer writes by SMTP")
    hubs = [
        HubProcess(
            name,
            instance_env(name, tmp_path, postgres_url, redis, slack, twilio, relay, rasa_url, mailbox),
            tmp_path / f"{name}.log",
        )
        for name in ("hub-a", "hub-b")
    ]
    try:
        await asyncio.gather(*(hub.start() for hub in hubs))
        load = Load(
            [hub.url for hub in hubs],
            scripts(MESSAGES, imap=mailbox is not None),
            concurrency=CONCURRENCY,
            smtp_ports=[hub.smtp_port for hub in hubs],
            mailbox=mailbox,
            database_url=asyncpg_dsn(postgres_url),
        )
        agent, quiet = Agent(load, await agent_token(postgres_url)), asyncio.Event()
        chaos = Chaos(hubs, redis, slack, twilio, postgres_url, mailbox)
        schedule: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (0.10, chaos.vendor_storm),
            (0.20, lambda: chaos.kill_and_restart(1)),
            (0.50, chaos.restart_redis),
            (0.65, chaos.vendor_storm),
        ]
        if not CHAOS:
            schedule = []
        started = time.monotonic()
        troubles = [asyncio.create_task(at_progress(load, share, action)) for share, action in schedule]
        agent_working = asyncio.create_task(agent.run(quiet))
        async with load.connected():
            try:
                await load.write()
                load_seconds = time.monotonic() - started
                await asyncio.gather(*troubles)
                # Mail APPENDed again after its first copy was stored: the hub reads it (and drops it) too.
                await mailbox_read_up(postgres_url, load.tally.imap_last_uid, STALL_LIMIT)
                # The last handoffs happen while the queues drain; the agent answers them, then that drains too.
                drain_seconds = await drain(postgres_url)
                quiet.set()
                await agent_working
                drain_seconds += await drain(postgres_url)
                await load.close_chats()
                # The widget's resume path: chats that missed an answer while
                # open (their instance killed as it was pushed) open again.
                reconnected = await load.reconnect_missed()
            finally:
                for task in [*troubles, agent_working]:
                    task.cancel()
            await load.check_histories()
        result = await audit(postgres_url, load, agent, slack, twilio, relay)
        result.figures.update(
            messages=MESSAGES,
            concurrency=CONCURRENCY,
            load_seconds=round(load_seconds, 1),
            messages_per_second=round(load.tally.total_sent / load_seconds, 1),
            webhook_ms_p50=load.tally.latency_ms(0.5),
            webhook_ms_p99=load.tally.latency_ms(0.99),
            imap_stored_ms_p50=load.tally.latency_ms(0.5, load.tally.imap_latencies),
            imap_stored_ms_p99=load.tally.latency_ms(0.99, load.tally.imap_latencies),
            drain_seconds=round(drain_seconds, 1),
            webchat_reconnected=reconnected,
            instance_kills=sum(hub.kills for hub in hubs),
            imap_takeovers=chaos.imap_takeovers,
            redis_restarts=redis.restarts,
            vendor_errors_served=dict(chaos.vendor_errors),
            delivery_errors=dict(load.tally.errors),
            chaos=chaos.log,
            logged_errors={hub.name: len(hub.errors()) for hub in hubs},
        )
        result.problems += chaos.problems
        print("\nresilience:", result.summary())
        # Printed again at the end of every run, -s or not, workers or not (tests/conftest.py).
        record_property(RESILIENCE_FIGURES, result.summary())
        logged = [f"{hub.name}: {line}" for hub in hubs for line in hub.errors()[:10]]
        assert not result.problems, "\n".join([result.summary(), *result.problems, *logged])
    finally:
        await asyncio.gather(*(hub.stop() for hub in hubs))
        await redis.stop()
        await rasa.stop()
        await slack.close()
        await twilio.close()
        await relay.close()
        if mailbox is not None:
            await asyncio.to_thread(mailbox.cleanup)
