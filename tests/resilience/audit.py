"""What the resilience run left behind, read from the database and the fake
vendors after the load (no tests here): the figures the suite prints, and
the problems it fails on.

Queues are found by their shape, not by name: every table with a ``status``
and a ``lease_until`` column is a durable queue (outbox, Slack jobs, bot
jobs, automation runs, and whatever queue is added next), and none may keep
a row that is neither done nor dead, nor any dead one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.smtp_sink import SmtpSink
from tests.fakes.twilio_api import FakeTwilioApi
from tests.resilience.agent import Agent, agent_text
from tests.resilience.load import Load, parse_text

FINISHED = {"done", "delivered"}
DEAD = "dead"
IMAP_CURSOR = "imap:INBOX"  # the mailbox folder's cursor in channel_state: "<UIDVALIDITY>:<last UID>"


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def queue_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """SELECT table_name FROM information_schema.columns
           WHERE table_schema = 'public' AND column_name IN ('status', 'lease_until')
           GROUP BY table_name HAVING count(*) = 2 ORDER BY table_name"""
    )
    return [row["table_name"] for row in rows]


async def unfinished(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Queue table -> status -> rows, for rows not done (pending, leased, dead...)."""
    found: dict[str, dict[str, int]] = {}
    for table in await queue_tables(conn):
        rows = await conn.fetch(f'SELECT status, count(*) AS n FROM "{table}" GROUP BY status')
        left = {row["status"]: row["n"] for row in rows if row["status"] not in FINISHED}
        if left:
            found[table] = left
    return found


async def mailbox_cursor(conn: asyncpg.Connection) -> int:
    """The last UID of the mailbox the hub took in (0: none yet)."""
    value = await conn.fetchval("SELECT value FROM channel_state WHERE channel = 'email' AND key = $1", IMAP_CURSOR)
    return int(value.split(":")[1]) if value else 0


async def mailbox_read_up(database_url: str, last_uid: int, stall_limit: float) -> None:
    """Wait until the hub's cursor reached ``last_uid`` (the last mail
    APPENDed), as long as it keeps moving; at most ``stall_limit`` seconds
    without progress (the audit names a mailbox left unread)."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        seen, progressed = -1, time.monotonic()
        while time.monotonic() - progressed < stall_limit:
            cursor = await mailbox_cursor(conn)
            if cursor >= last_uid:
                return
            if cursor > seen:
                seen, progressed = cursor, time.monotonic()
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


@dataclass
class Audit:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def summary(self) -> str:
        return json.dumps(self.figures, sort_keys=False, default=str)


async def audit(
    database_url: str, load: Load, agent: Agent, slack: FakeSlackApi, twilio: FakeTwilioApi, relay: SmtpSink
) -> Audit:
    result = Audit()
    figures = result.figures
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        inbound = await conn.fetch(
            "SELECT id, conversation_id, channel, body FROM messages WHERE direction = 'inbound' ORDER BY id"
        )
        replies = await conn.fetch(
            """SELECT id, conversation_id, channel, body, delivery_status, (meta::json ->> 'in_reply_to') AS reply_to
               FROM messages WHERE direction = 'outbound' AND author_kind = 'bot' ORDER BY id"""
        )
        agent_replies = await conn.fetch(
            "SELECT id, conversation_id, body FROM messages WHERE direction = 'outbound' AND author_kind = 'agent'"
        )
        outbox = dict(await conn.fetch("SELECT status, count(*) FROM outbox GROUP BY status"))
        tickets = await conn.fetch("SELECT id, conversation_id, slack_channel, slack_ts FROM tickets ORDER BY id")
        handlers = dict(await conn.fetch("SELECT id, handler FROM conversations"))
        mail_sent = await conn.fetch(
            "SELECT conversation_id, provider_id, attempts FROM outbox WHERE channel = 'email' AND status = 'delivered'"
        )
        cursor = await mailbox_cursor(conn)
        left = await unfinished(conn)
    finally:
        await conn.close()

    tally = load.tally
    scripts = {s.key: s for s in load.scripts}
    planned = {text for s in load.scripts for text in s.texts} - set(tally.gave_up)

    # --- inbound: stored once each, in order, one conversation per customer --------
    stored = Counter(row["body"] for row in inbound)
    ours = [row for row in inbound if parse_text(row["body"])]
    first_of: dict[str, Any] = {}
    by_key: dict[str, list[Any]] = defaultdict(list)
    for row in ours:
        first_of.setdefault(row["body"], row)
        by_key[parse_text(row["body"])[0]].append(row)  # type: ignore[index]
    duplicates = sum(n - 1 for body, n in stored.items() if n > 1)
    lost = sorted(planned - set(stored))
    out_of_order = [
        key
        for key, rows in by_key.items()
        if [parse_text(r["body"])[1] for r in rows]
        != sorted(  # type: ignore[index]
            parse_text(r["body"])[1]
            for r in rows  # type: ignore[index]
        )
    ]
    split = [key for key, rows in by_key.items() if len({r["conversation_id"] for r in rows}) > 1]
    conversation_of = {key: rows[0]["conversation_id"] for key, rows in by_key.items()}

    # --- the bot's answers: exactly one per message, in order, delivered ------------
    answers: dict[int, list[Any]] = defaultdict(list)
    for row in replies:
        if row["reply_to"] is not None:
            answers[int(row["reply_to"])].append(row)
    unanswered = [body for body, row in first_of.items() if not answers.get(row["id"])]
    answered_twice = [body for body, row in first_of.items() if len(answers.get(row["id"], [])) > 1]
    reply_order: dict[int, list[int]] = defaultdict(list)
    for row in replies:
        if row["reply_to"] is not None:
            reply_order[row["conversation_id"]].append(int(row["reply_to"]))
    replies_out_of_order = [cid for cid, order in reply_order.items() if order != sorted(order)]

    # --- handoffs: one ticket and one Slack card each, nothing else -----------------
    handed_off = {conversation_of[s.key] for s in load.scripts if s.handoff and s.key in conversation_of}
    per_conversation = Counter(row["conversation_id"] for row in tickets)
    cards = {
        (channel, ts)
        for (channel, ts), message in slack.messages.items()
        if message.get("blocks") and not message.get("thread_ts")
    }
    carded = {(row["slack_channel"], row["slack_ts"]) for row in tickets if row["slack_ts"]}
    thread_posts = Counter(
        (channel, message["thread_ts"], message["text"])
        for (channel, _ts), message in slack.messages.items()
        if message.get("thread_ts") and message.get("bot_id")
    )
    at_twilio = Counter((m.to, m.body) for m in twilio.messages)
    # A reply's Message-ID is its outbox row's idempotency key: the same mail sent twice has the same one.
    at_relay = Counter(str(m.message["Message-ID"]) for m in relay.messages)
    orphans = sorted(cards - carded)
    webchat_replies = {
        key: {row["id"] for row in [*replies, *agent_replies] if row["conversation_id"] == conversation_of.get(key)}
        for key, s in scripts.items()
        if s.channel == "webchat"
    }
    webchat_total = sum(len(ids) for ids in webchat_replies.values())
    unseen = sum(len(ids - load.visitors[key].final) for key, ids in webchat_replies.items() if key in load.visitors)
    not_live = sum(len(ids - load.visitors[key].live) for key, ids in webchat_replies.items() if key in load.visitors)
    on_reconnect = sum(
        len((ids - load.visitors[key].live) & load.visitors[key].on_reconnect)
        for key, ids in webchat_replies.items()
        if key in load.visitors
    )
    never_shown = not_live - on_reconnect  # neither live nor on the widget's next connection

    # --- mail: every reply sent (its Message-ID the outbox's provider id) at the relay once ----
    # SMTP cannot be asked what it took: a send whose outcome the hub never
    # learnt (SIGKILLed between the relay's 250 and recording it, or a 250
    # lost in a timeout) is sent again on the row's next attempt, with the
    # same Message-ID, by which receivers drop the copy (RFC 5322 3.6.4).
    # So a copy is allowed only from a row that took more than one attempt,
    # never more copies than attempts; counted apart as ``mails_resent``.
    channel_of = {conversation_of[key]: s.channel for key, s in scripts.items() if key in conversation_of}
    relay_by_channel: Counter[str] = Counter()
    mail_replies_not_once: list[str] = []
    resent_mail: set[str] = set()
    for row in mail_sent:
        kind = channel_of.get(row["conversation_id"], "other")
        copies = at_relay[row["provider_id"]]
        relay_by_channel[kind] += copies
        if copies == 1:
            continue
        if 1 < copies <= row["attempts"]:
            resent_mail.add(row["provider_id"])
        else:
            mail_replies_not_once.append(f"{kind} {row['provider_id']}: {copies} (attempts {row['attempts']})")
    stored_by_channel = Counter(
        s.channel for s in load.scripts for text in s.texts if text in planned for _ in range(stored[text])
    )

    # --- the agent's answers: one per ticket, delivered, in the ticket's thread -------
    agent_texts = Counter((row["conversation_id"], row["body"]) for row in agent_replies)
    agent_missing = [row["id"] for row in tickets if not agent_texts[(row["conversation_id"], agent_text(row["id"]))]]
    agent_doubled = [pair for pair, n in agent_texts.items() if n > 1]
    in_threads = Counter(
        ticket_id
        for (channel, thread_ts, text) in thread_posts
        for ticket_id in [
            row["id"] for row in tickets if (row["slack_channel"], row["slack_ts"]) == (channel, thread_ts)
        ]
        if agent_text(ticket_id) in (text or "")
    )
    agent_not_threaded = [row["id"] for row in tickets if row["id"] in agent.answered and not in_threads[row["id"]]]

    figures.update(
        sent=tally.total_sent,
        sent_by_channel=dict(tally.sent),
        stored_by_channel=dict(stored_by_channel),
        deliveries=tally.attempts,
        failed_deliveries=tally.failed_attempts,
        server_errors=tally.server_errors,
        deliberate_duplicates=tally.duplicates_sent,
        stored=sum(stored[body] for body in planned if body in stored),
        duplicates=duplicates,
        lost=len(lost) + len(tally.gave_up),
        out_of_order=len(out_of_order),
        split_conversations=len(split),
        bot_replies=len(replies),
        unanswered=len(unanswered),
        answered_twice=len(answered_twice),
        replies_out_of_order=len(replies_out_of_order),
        delivered=outbox.get("delivered", 0),
        outbox=outbox,
        texts_at_twilio=sum(at_twilio.values()),
        texts_twice_at_twilio=sum(n - 1 for n in at_twilio.values() if n > 1),
        mails_at_relay=sum(at_relay.values()),
        mails_twice_at_relay=sum(n - 1 for m, n in at_relay.items() if n > 1 and m not in resent_mail),
        mails_resent=sum(at_relay[m] - 1 for m in resent_mail),
        mail_replies_at_relay_by_channel=dict(relay_by_channel),
        imap_appended_uids=tally.imap_last_uid,
        imap_read_up_to_uid=cursor,
        webchat_replies=webchat_total,
        webchat_shown_live=webchat_total - not_live,
        webchat_delivered_on_reconnect=on_reconnect,
        webchat_missing_from_history=unseen,
        handoffs=len(handed_off),
        tickets=len(tickets),
        slack_cards=len(cards),
        slack_cards_twice=len(orphans),
        slack_thread_posts=sum(thread_posts.values()),
        agent_replies=len(agent_replies),
        unfinished_queue_rows=left,
    )

    result.expect(tally.server_errors == 0, f"instances that were up answered {tally.server_errors} times with 5xx")
    result.expect(not tally.gave_up, f"never taken by any instance: {tally.gave_up[:5]}")
    result.expect(duplicates == 0, f"stored more than once: {[b for b, n in stored.items() if n > 1][:5]}")
    result.expect(not lost, f"taken but not stored: {lost[:5]}")
    result.expect(not out_of_order, f"messages stored out of order in {out_of_order[:5]}")
    result.expect(not split, f"one customer's messages in several conversations: {split[:5]}")
    result.expect(not unanswered, f"no bot answer to: {unanswered[:5]}")
    result.expect(not answered_twice, f"answered twice: {answered_twice[:5]}")
    result.expect(not replies_out_of_order, f"answers out of order in conversations {replies_out_of_order[:5]}")
    result.expect(not left, f"queue rows not done: {left}")
    result.expect(
        set(outbox) <= {"delivered"},
        f"outbox rows not delivered: { {k: v for k, v in outbox.items() if k != 'delivered'} }",
    )
    texts_doubled = [pair for pair, n in at_twilio.items() if n > 1]
    result.expect(not texts_doubled, f"texts sent twice to Twilio: {texts_doubled[:5]}")
    mails_doubled = [message_id for message_id, n in at_relay.items() if n > 1 and message_id not in resent_mail]
    result.expect(not mails_doubled, f"mails sent twice to the relay: {mails_doubled[:5]}")
    result.expect(not mail_replies_not_once, f"mail replies not at the relay exactly once: {mail_replies_not_once[:5]}")
    result.expect(
        cursor >= tally.imap_last_uid,
        f"the hub read the mailbox up to UID {cursor}, not to its last mail {tally.imap_last_uid}",
    )
    result.expect(unseen == 0, f"{unseen} of {webchat_total} web chat answers missing from their visitor's history")
    result.expect(
        never_shown == 0,
        f"{never_shown} of {webchat_total} web chat answers reached their visitor neither live nor on its reconnect",
    )
    not_handed = sorted(handed_off - {cid for cid, handler in handlers.items() if handler == "human"})
    result.expect(not not_handed, f"conversations that asked for a person and are not with humans: {not_handed[:5]}")
    result.expect(
        set(per_conversation) == handed_off,
        f"tickets on conversations not handed off {sorted(set(per_conversation) - handed_off)[:5]}, "
        f"handoffs without a ticket {sorted(handed_off - set(per_conversation))[:5]}",
    )
    doubled = [cid for cid, n in per_conversation.items() if n > 1]
    result.expect(not doubled, f"more than one ticket for conversations {doubled[:5]}")
    uncarded = [row["id"] for row in tickets if (row["slack_channel"], row["slack_ts"]) not in cards]
    result.expect(not uncarded, f"tickets without a Slack card: {uncarded[:5]}")
    result.expect(not orphans, f"{len(orphans)} Slack cards no ticket knows (posted twice): {orphans[:5]}")
    threads_doubled = [key for key, n in thread_posts.items() if n > 1]
    result.expect(not threads_doubled, f"Slack thread messages posted twice: {threads_doubled[:5]}")
    result.expect(not agent_missing, f"tickets the agent answered without a stored reply: {agent_missing[:5]}")
    result.expect(not agent_doubled, f"an agent's reply stored twice: {agent_doubled[:5]}")
    result.expect(
        not agent_not_threaded, f"agent replies missing from their ticket's Slack thread: {agent_not_threaded[:5]}"
    )
    return result
