"""Tables, in SQLAlchemy Core. Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def queue_columns(*extra: sa.Column) -> list[sa.Column]:
    """The columns every durable queue table has (``hub.jobs.queue``), with a
    table's own ``extra`` ones before the timestamps: a status, the attempts,
    when it is next due, the lease of the worker holding it, the last error."""
    return [
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("last_error", sa.Text),
        *extra,
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    ]


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("slack_user_id", sa.String(64), unique=True),
    sa.Column("extra", JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # The console's sign-in (``hub.console``): an argon2id hash (NULL: no
    # password yet, only a one-time link signs in), and the TOTP second
    # factor: its secret, when it was confirmed (NULL: enrolment not done)
    # and the last time step a code was accepted for (a code never works twice).
    sa.Column("password_hash", sa.String(200)),
    sa.Column("password_changed_at", UTCDateTime),
    sa.Column("totp_secret", sa.String(64)),
    sa.Column("totp_enabled_at", UTCDateTime),
    sa.Column("totp_last_step", sa.BigInteger),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("attributes", JSON, nullable=False, default=dict),
    sa.Column("tags", JSON, nullable=False, default=list),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # When the contact was last asked the NPS question (``hub.nps``): at most once per HUB_NPS_EVERY_DAYS.
    sa.Column("nps_asked_at", UTCDateTime),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    # Address kinds: "email", "phone" (E.164), or a channel-local id such as
    # a chat visitor id ("webchat") or a Slack user ("slack").
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("channel", "address", name="uq_identities_channel_address"),
    sa.Index("ix_identities_contact", "contact_id"),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("identity_id", BigId, sa.ForeignKey("identities.id", ondelete="SET NULL")),
    sa.Column("thread_key", sa.String(500)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("handler", sa.String(16), nullable=False),
    sa.Column("assignee_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("subject", sa.String(500)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_message_at", UTCDateTime),
    sa.Column("resolved_at", UTCDateTime),
    sa.Index("ix_conversations_contact", "contact_id", "id"),
    sa.Index("ix_conversations_identity", "identity_id", "id"),
    sa.Index("ix_conversations_status", "status", "priority", "id"),
    sa.Index("ix_conversations_assignee", "assignee_id", "status"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "conversation_id",
        BigId,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Denormalised so the contact timeline is one index range scan.
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("author_kind", sa.String(16), nullable=False),
    sa.Column("author_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attachments", JSON, nullable=False, default=list),
    sa.Column("external_id", sa.String(500)),
    sa.Column("delivery_status", sa.String(16), nullable=False),
    # Why an outbound message failed or went undelivered, for the agent:
    # the provider's code and a short reason ("30003: unreachable handset").
    sa.Column("delivery_error", sa.String(300)),
    sa.Column("meta", JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("channel", "external_id", name="uq_messages_channel_external_id"),
    sa.Index("ix_messages_conversation", "conversation_id", "id"),
    sa.Index("ix_messages_contact", "contact_id", "id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("conversation_id", BigId, nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("idempotency_key", sa.String(100), nullable=False, unique=True),
    sa.Column("payload", JSON, nullable=False),
    # pending -> sending -> delivered | dead (pending again after a retryable failure)
    *queue_columns(
        sa.Column("provider_id", sa.String(200)),
    ),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_outbox_message", "message_id"),
    sa.Index("ix_outbox_conversation", "conversation_id", "status"),
)

# The provider's ids of a sent message (one per part of a long SMS) and the
# status each last reported: delivery reports name a part, the message's
# ``delivery_status`` sums its parts up.
delivery_parts = sa.Table(
    "delivery_parts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(16)),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("channel", "provider_id", name="uq_delivery_parts_channel_provider_id"),
    sa.Index("ix_delivery_parts_message", "message_id"),
)

# Addresses that asked for no more messages on a channel (SMS STOP, or the
# provider's "unsubscribed" error): the outbox refuses to send to them.
opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    # What opted them out: the keyword they sent ("STOP") or "provider 21610".
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("channel", "address", name="uq_opt_outs_channel_address"),
    sa.Index("ix_opt_outs_contact", "contact_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("action", sa.String(64), nullable=False),
    # Through which door: api | slack | cli (``hub.audit``); NULL before 0005.
    sa.Column("via", sa.String(16)),
    sa.Column("target_type", sa.String(32)),
    sa.Column("target_id", sa.String(64)),
    # Never personal data: erasure must leave nothing of the contact here.
    sa.Column("details", JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_audit_log_created", "created_at"),
    # The agents report's claims and resolves: a range of it without the rows (migration 0020).
    sa.Index("ix_audit_log_action", "action", "created_at", "user_id"),
)

kb_votes = sa.Table(
    "kb_votes",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("collection", sa.String(100), nullable=False),
    sa.Column("article_id", sa.String(100), nullable=False),
    sa.Column("voter_key", sa.String(64), nullable=False),
    sa.Column("helpful", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("collection", "article_id", "voter_key", name="uq_kb_votes_collection_article_voter"),
)

# --- tickets, agents and the Slack desk (issue #6) ----------------------------

agent_profiles = sa.Table(
    "agent_profiles",
    metadata,
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("team", sa.String(64), nullable=False),
    sa.Column("skills", JSON, nullable=False, default=list),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("senior", sa.Boolean, nullable=False, default=False),
    sa.Column("on_duty", sa.Boolean, nullable=False, default=False),
    # Open tickets assigned to the agent; kept in the same transactions that
    # assign, unassign and resolve tickets (and recounted at start-up).
    sa.Column("open_tickets", sa.Integer, nullable=False, default=0),
    # Monotonic round-robin stamp: among equally loaded agents the one served
    # longest ago gets the next ticket.
    sa.Column("last_assigned_seq", sa.BigInteger, nullable=False, default=0),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_agent_profiles_team_duty", "team", "on_duty"),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    # Equals conversation_id while the ticket is open, NULL once resolved: the
    # unique constraint allows one open ticket per conversation, on every backend.
    sa.Column("open_conversation_id", BigId, unique=True),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    # Mirrors conversations.priority/assignee_id (the conversation is the source
    # of truth; these copies keep the queue and the SLA scan on one table).
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("assignee_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("team", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("kb_hits", JSON, nullable=False, default=list),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("first_response_at", UTCDateTime),
    sa.Column("first_response_due", UTCDateTime),
    sa.Column("resolution_due", UTCDateTime),
    sa.Column("sla_paused_at", UTCDateTime),
    sa.Column("sla_paused_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("first_response_breached_at", UTCDateTime),
    sa.Column("resolution_breached_at", UTCDateTime),
    sa.Column("escalations", sa.Integer, nullable=False, default=0),
    sa.Column("snoozed_until", UTCDateTime),
    # When HUB_SLA_WARN_AT of each window will have elapsed (moved with the
    # deadlines; NULL: no warning), for the scheduler's scan (``sla_warnings``).
    sa.Column("first_response_warn_at", UTCDateTime),
    sa.Column("resolution_warn_at", UTCDateTime),
    sa.Column("slack_channel", sa.String(64)),
    sa.Column("slack_ts", sa.String(32)),
    # The conversation's first agent reply (customer-visible, smallest id) at
    # or after created_at, and its author: the response-times report's
    # responder, kept by triggers (migration 0020) as messages and tickets
    # are inserted and messages deleted.
    sa.Column("first_reply_id", BigId),
    sa.Column("first_responder_id", BigId),
    sa.Index("ix_tickets_status", "status", "assignee_id"),
    sa.Index("ix_tickets_conversation", "conversation_id", "id"),
    sa.Index("ix_tickets_slack", "slack_channel", "slack_ts"),
)

# SLA warnings given (issue #17): one per ticket, target and deadline; the
# row is the claim (a unique key), so no deadline is warned about twice, on
# any number of instances. A deadline moved (a priority change) is a new one.
sla_warnings = sa.Table(
    "sla_warnings",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("target", sa.String(16), nullable=False),  # first_response | resolution
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("warned_at", UTCDateTime, nullable=False),
    # Who was told: the assignee then (NULL: the team's channel).
    sa.Column("assignee_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.UniqueConstraint("ticket_id", "target", "due_at", name="uq_sla_warnings_ticket_target_due"),
)

# A cache every instance keeps in memory (routing rules, a KB collection's
# keyword index) has a row here, bumped with each change (hub/versions.py).
shared_versions = sa.Table(
    "shared_versions",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# A singleton loop's lease: the holder runs it until lease_until (hub/leases.py).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("lease_until", UTCDateTime, nullable=False),
)

routing_rules = sa.Table(
    "routing_rules",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    # keyword: params {"words": [...]}; attribute: {"key": "tier", "values": [...]};
    # repeat: {"hours": 24, "count": 3}
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("params", JSON, nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("team", sa.String(64)),
    # keyword rules only: also hand off a conversation the bot is handling
    sa.Column("handoff", sa.Boolean, nullable=False, default=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

slack_jobs = sa.Table(
    "slack_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    # post_ticket | update_ticket | thread | notify
    sa.Column("kind", sa.String(16), nullable=False),
    # Jobs of one ticket run in order (a thread reply needs the posted parent).
    sa.Column("ticket_id", BigId),
    # "thread:{message_id}", "post:{ticket_id}"...: with a bus that fans events
    # out to every hub instance, each instance enqueues; the first one wins.
    sa.Column("dedup_key", sa.String(100), unique=True),
    sa.Column("payload", JSON, nullable=False),
    # pending -> sending -> done | dead (pending again after a retryable failure)
    *queue_columns(),
    sa.Index("ix_slack_jobs_due", "status", "next_attempt_at"),
    sa.Index("ix_slack_jobs_ticket", "ticket_id", "status"),
)

slack_events = sa.Table(
    "slack_events",
    metadata,
    # Slack's event_id (or a trigger id for interactions): handled once.
    sa.Column("event_id", sa.String(100), primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Index("ix_slack_events_received", "received_at"),
)

# Customer messages waiting for the bot, written in the ingest transaction so
# a crash between receiving and answering never loses one; also "resume"
# jobs that un-pause Rasa after an agent resolves a handed-off conversation.
bot_jobs = sa.Table(
    "bot_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    # NULL for a "forget" job: its conversation was erased with its contact.
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE")),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), unique=True),
    # The Rasa conversation a "forget" job empties (the erased conversation's id).
    sa.Column("sender", sa.String(64)),
    sa.Column("kind", sa.String(16), nullable=False),  # message | resume | forget
    # status: pending | running | done
    *queue_columns(),
    sa.Index("ix_bot_jobs_due", "status", "next_attempt_at"),
    sa.Index("ix_bot_jobs_conversation", "conversation_id", "status"),
)

# New phrasings of knowledge-base articles, offered to an admin: a customer's
# question the bot answered helpfully, or the question an agent answered with
# a link to an article after a handoff. Applied only when an admin accepts.
# Only the question text is kept of the customer; the conversation link goes
# NULL when the conversation is erased (hub.conversations.contacts.erase_contact).
kb_phrasing_suggestions = sa.Table(
    "kb_phrasing_suggestions",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("collection", sa.String(100), nullable=False),
    sa.Column("article_id", sa.String(100), nullable=False),
    sa.Column("text", sa.String(300), nullable=False),
    # Whitespace collapsed and case folded: one row per phrasing of an article.
    sa.Column("normalised_text", sa.String(1000), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # bot-vote | agent-link
    # Conversations that brought the phrasing up (a repeat from the same one counts once).
    sa.Column("votes", sa.Integer, nullable=False, default=1),
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="SET NULL")),
    sa.Column("suggested_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("status", sa.String(16), nullable=False),  # pending | accepted | rejected
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("decided_at", UTCDateTime),
    sa.Column("decided_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.UniqueConstraint("collection", "article_id", "normalised_text", name="uq_kb_phrasing_suggestions_article_text"),
    sa.Index("ix_kb_phrasing_suggestions_status", "status", "id"),
    sa.Index("ix_kb_phrasing_suggestions_conversation", "conversation_id"),
)


# Files that came with messages (e-mail attachments, the original .eml),
# content-addressed under the data dir (``hub.attachments``): the row names
# the bytes, ``message_attachments`` the messages that hold them. A file no
# message holds any more (an erasure) is removed by the attachment sweep.
attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the content's SHA-256, hex
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

message_attachments = sa.Table(
    "message_attachments",
    metadata,
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("attachment_id", sa.String(64), sa.ForeignKey("attachments.id"), primary_key=True),
    sa.Index("ix_message_attachments_attachment", "attachment_id"),
)

# What a channel keeps across restarts and instances (an IMAP folder's
# UIDVALIDITY and last UID).
channel_state = sa.Table(
    "channel_state",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Deliveries of erased contacts, by a hash of their provider id (never the
# id itself): a mailbox read again (IMAP after a UIDVALIDITY change) or a
# sender's retry must not bring an erased person's mail back.
erased_deliveries = sa.Table(
    "erased_deliveries",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("external_key", sa.String(64), primary_key=True),  # SHA-256 of the external id, hex
    sa.Column("created_at", UTCDateTime, nullable=False),
)


# --- the agents' web console (issue #16, ``hub.console``) ----------------------

# Signed-in browsers: the cookie holds a random id, the row only its SHA-256.
# A row is a session; deleting it signs that browser out, on every instance.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("session_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of the cookie's id, hex
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # mfa: the password was right, the second factor is still to come; full:
    # signed in. "+link" when a one-time link stood in for the password (the
    # account page then sets a password without asking for the current one).
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("idle_expires_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),  # absolute: no activity extends it
    sa.Column("ip", sa.String(64), nullable=False, default=""),
    sa.Column("user_agent", sa.String(300), nullable=False, default=""),
    sa.Index("ix_console_sessions_user", "user_id", "id"),
    sa.Index("ix_console_sessions_expires", "expires_at"),
)

# Single-use recovery codes of a user's second factor (80 random bits each,
# so a SHA-256 is enough; the codes are shown once).
user_recovery_codes = sa.Table(
    "user_recovery_codes",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
    sa.UniqueConstraint("user_id", "code_hash", name="uq_user_recovery_codes_user_code"),
)

# One-time sign-in links (``hub users link``, ``hub users bootstrap``): the
# token's SHA-256, used once, within its expiry.
sign_in_links = sa.Table(
    "sign_in_links",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
    sa.Index("ix_sign_in_links_user", "user_id"),
)

# --- reports (issue #17) -------------------------------------------------------
# What the reports count of an erased contact, kept without them: the
# erasure copies these facts of their conversations, tickets and messages
# here in its own transaction (``hub.reports.erased``), so a report's
# counts do not change when someone is erased. No contact id, no text, no
# address; the ids are those the deleted rows had (nothing else names them).
report_erased_conversations = sa.Table(
    "report_erased_conversations",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Index("ix_report_erased_conversations_created", "created_at"),
)

report_erased_tickets = sa.Table(
    "report_erased_tickets",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("conversation_id", BigId, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("assignee_id", BigId),
    sa.Column("team", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    # The reason's category (``hub.reports.bot.reason_key``), never its text.
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("first_response_at", UTCDateTime),
    sa.Column("first_response_due", UTCDateTime),
    sa.Column("resolution_due", UTCDateTime),
    sa.Column("first_response_breached_at", UTCDateTime),
    sa.Column("resolution_breached_at", UTCDateTime),
    sa.Column("sla_paused_at", UTCDateTime),
    sa.Index("ix_report_erased_tickets_created", "created_at"),
    sa.Index("ix_report_erased_tickets_conversation", "conversation_id"),
)

report_erased_messages = sa.Table(
    "report_erased_messages",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("conversation_id", BigId, nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("author_kind", sa.String(16), nullable=False),
    sa.Column("author_id", BigId),
    # The bot's decision on this turn (answer, clarify, topics, offer_human, handoff) and the message it answered.
    sa.Column("decision", sa.String(32)),
    sa.Column("in_reply_to", BigId),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_report_erased_messages_created", "created_at"),
    sa.Index("ix_report_erased_messages_conversation", "conversation_id", "id"),
)

# The reports select by time range (migration 0011).
# Covering for volume and agent activity: a range of it is read without the rows.
sa.Index(
    "ix_messages_created",
    messages.c.created_at,
    messages.c.kind,
    messages.c.direction,
    messages.c.author_kind,
    messages.c.channel,
    messages.c.author_id,
)
sa.Index("ix_conversations_created", conversations.c.created_at)
sa.Index("ix_tickets_created", tickets.c.created_at)


# --- canned replies (issue #17, ``hub.canned``) ----------------------------------

# Replies agents send often, as sandboxed Jinja templates over a few
# variables (contact, ticket, agent, conversation): ``hub.canned.templates``.
canned_replies = sa.Table(
    "canned_replies",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),  # a slug: /hub reply <name>
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("team", sa.String(64)),  # NULL: every team's
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("updated_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


# --- content gaps (issue #17, ``hub.kb.searchlog``) -------------------------------

# Every portal search and every bot knowledge-base lookup, for the content-gaps
# report. Nothing about the person: a portal search keeps no IP, cookie or
# contact; a bot lookup keeps its conversation only (erased with it: the
# foreign key cascades, so an erasure walks it as a contact's own rows).
kb_search_log = sa.Table(
    "kb_search_log",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # portal | bot (api: reserved; the action server's own lookups go through the search API)
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("collection", sa.String(100), nullable=False),
    sa.Column("query", sa.String(300), nullable=False),  # whitespace collapsed, capped
    sa.Column("confidence", sa.Float),  # the search's calibrated confidence in its best hit
    sa.Column("article_id", sa.String(100)),  # the best hit
    # bot: answered | clarified | handed_off | no_results; portal: results | no_results
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("clicked_article_id", sa.String(100)),  # portal: the article opened from the results
    # portal: the random token of the search in its result links, to tie a click to it (nothing else)
    sa.Column("search_token", sa.String(32)),
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE")),
    sa.Column("message_id", BigId),  # bot: the customer's message the lookup answered (one row each)
    sa.UniqueConstraint("conversation_id", "message_id", name="uq_kb_search_log_conversation_message"),
    sa.Index("ix_kb_search_log_created", "created_at"),
    sa.Index("ix_kb_search_log_token", "search_token"),
)


# --- CSAT (issue #17, ``hub.csat``) --------------------------------------------

# One satisfaction survey per resolve, sent on the conversation's channel in
# the resolve's transaction; answered once (rating 1-5, optional comment)
# before ``expires_at``. Both keys cascade: an erasure takes it along.
csat_surveys = sa.Table(
    "csat_surveys",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    # NULL: a conversation resolved without a ticket (the bot's own resolve).
    sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", ondelete="CASCADE")),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("rating", sa.SmallInteger),
    sa.Column("comment", sa.Text),
    sa.Column("answered_at", UTCDateTime),
    # csat: 1-5, on resolve; nps: 0-10 "would you recommend us", after a CSAT answer (``hub.nps``;
    # no ticket_id, so the ticket's one-survey key does not hold it back).
    sa.Column("kind", sa.String(8), nullable=False, server_default="csat"),
    sa.UniqueConstraint("ticket_id", name="uq_csat_surveys_ticket_id"),
    sa.Index("ix_csat_surveys_conversation_id", "conversation_id"),
    sa.Index("ix_csat_surveys_sent_at", "sent_at"),
)


# --- automation rules (issue #17, ``hub.automation``) --------------------------

# An admin's rules: when an event happens, if conditions hold, then actions.
# ``source`` file: loaded from HUB_AUTOMATION_FILE at start (changed there,
# read-only through the API).
automation_rules = sa.Table(
    "automation_rules",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("silent_hours", sa.Float),  # customer_silent rules
    sa.Column("conditions", JSON, nullable=False, default=dict),
    sa.Column("unless", JSON, nullable=False, default=dict),
    sa.Column("actions", JSON, nullable=False, default=list),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("source", sa.String(8), nullable=False, default="api"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_automation_rules_event", "event", "enabled"),
)

# A durable queue (``hub.jobs.queue``): one row per rule and event it matched,
# written in the event's transaction; the unique key makes it at most once
# (a provider's retry, a second instance's sweep). ``step`` counts the actions
# done, so a retry resumes after them. A ``close`` row waits until its
# ``next_attempt_at`` (close_after_silence). Cascades with its conversation.
automation_runs = sa.Table(
    "automation_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("rule_id", BigId, sa.ForeignKey("automation_rules.id", ondelete="CASCADE"), nullable=False),
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),  # a rule event, or "close"
    sa.Column("event_key", sa.String(200), nullable=False),
    sa.Column("payload", JSON, nullable=False, default=dict),
    sa.Column("step", sa.Integer, nullable=False, default=0),
    # status: pending | running | done | dead
    *queue_columns(),
    sa.UniqueConstraint("rule_id", "event_key", name="uq_automation_runs_rule_event"),
    sa.Index("ix_automation_runs_due", "status", "next_attempt_at"),
    sa.Index("ix_automation_runs_conversation", "conversation_id", "status"),
)


# --- outgoing webhooks (issue #18, ``hub.webhooks``) -----------------------------

# Integrators' endpoints: where events are POSTed, signed with the endpoint's
# secret (HMAC-SHA256). During a rotation the previous secret also signs,
# until ``previous_secret_until``, so a receiver can switch without a gap.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("previous_secret", sa.String(200)),
    sa.Column("previous_secret_until", UTCDateTime),
    # Event types delivered (``hub.webhooks.events.EVENT_TYPES``), or ["*"]: every one.
    sa.Column("events", JSON, nullable=False, default=list),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("description", sa.String(500), nullable=False, default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# One row per (endpoint, event): a durable queue of ``hub.jobs`` written in
# the transaction of the event's cause. ``idempotency_key`` is the delivery's
# id for the receiver (X-Servicehub-Delivery), the same on every retry and
# redelivery; unique, so an event is queued once per endpoint. Rows about a
# contact name them (``contact_id``): an erasure takes them along, payload
# and all; a merge moves them. ``ordering_key`` (endpoint and conversation)
# keeps one conversation's events to one endpoint in order.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("endpoint_id", BigId, sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(100), nullable=False, unique=True),
    sa.Column("ordering_key", sa.String(100)),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE")),
    sa.Column("payload", JSON, nullable=False),
    # pending -> sending -> delivered | dead (pending again after a retryable failure)
    *queue_columns(
        # The receiver's HTTP status on the last attempt (NULL: no answer: a timeout, a refused connection).
        sa.Column("response_status", sa.Integer),
        sa.Column("delivered_at", UTCDateTime),
    ),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    sa.Index("ix_webhook_deliveries_ordering", "ordering_key", "status"),
    sa.Index("ix_webhook_deliveries_contact", "contact_id"),
)


# --- report rollups (issue #17, ``hub.reports.rollups``) --------------------------

# The volume report's counts per UTC quarter-hour and channel, kept by
# triggers (migration 0017) in the transaction of every insert into
# ``messages`` (customer-visible ones: ``kind = message``) and
# ``conversations``, however the row was written. Nothing is subtracted: an
# erasure keeps what it deletes in ``report_erased_*``, which the volume
# counts too. ``shard`` spreads concurrent writers over rows (PostgreSQL:
# the backend's pid modulo 8; SQLite has one writer, always 0); a report
# adds the shards up.
report_volume_quarters = sa.Table(
    "report_volume_quarters",
    metadata,
    sa.Column("quarter", sa.BigInteger, nullable=False),  # epoch seconds // 900 of the quarter-hour's start
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("shard", sa.SmallInteger, nullable=False),
    sa.Column("inbound", sa.BigInteger, nullable=False),
    sa.Column("outbound", sa.BigInteger, nullable=False),
    sa.Column("outbound_bot", sa.BigInteger, nullable=False),
    sa.Column("outbound_agent", sa.BigInteger, nullable=False),
    sa.Column("new_conversations", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("quarter", "channel", "shard", name="pk_report_volume_quarters"),
)

# The bot report's facts of each conversation, kept by triggers (migration
# 0017) as its rows are inserted: created with the conversation, a flag set
# by the first reply of the bot, of an agent, of the bot answering from the
# knowledge base (``meta.decision.action = answer``), and by its first
# ticket. Flags are only ever set (nothing that sets them is deleted but by
# an erasure, and the report counts an erased contact's conversations as
# before); the row outlives an erasure on purpose (no contact, no text),
# detached from the id (``conversation_id`` set NULL by ``hub.reports.erased``):
# SQLite gives the id of the newest conversation to the next one once it is
# deleted.
report_bot_conversations = sa.Table(
    "report_bot_conversations",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("conversation_id", BigId),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("bot_replied", sa.SmallInteger, nullable=False),
    sa.Column("agent_replied", sa.SmallInteger, nullable=False),
    sa.Column("answered", sa.SmallInteger, nullable=False),
    sa.Column("handed_off", sa.SmallInteger, nullable=False),
    sa.Index("ix_report_bot_conversations_created", "created_at"),
    sa.Index("ix_report_bot_conversations_conversation", "conversation_id", unique=True),
)

# The agents report's counts per UTC quarter-hour (epoch seconds // 900) and
# agent: customer-visible replies and internal notes, added by a trigger
# (migration 0020) as messages are inserted, as ``report_volume_quarters``'s
# (``hub.reports.rollups``).
report_agent_quarters = sa.Table(
    "report_agent_quarters",
    metadata,
    sa.Column("quarter", sa.BigInteger, nullable=False),
    sa.Column("agent_id", sa.BigInteger, nullable=False),
    sa.Column("replies", sa.BigInteger, nullable=False),
    sa.Column("notes", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("quarter", "agent_id", name="pk_report_agent_quarters"),
)

# The bot's replies as the bot report counts its turns by decision: the
# decision and the turn (the customer message answered, or the reply itself)
# read out of ``meta`` once, by a trigger (migration 0017) when the reply is
# inserted, so a year of turns is a covering index range, not a JSON read of
# each reply. A row goes with its message (an erasure keeps the facts in
# ``report_erased_messages``, counted as the erased source).
report_bot_turns = sa.Table(
    "report_bot_turns",
    metadata,
    sa.Column(
        "message_id", BigId, sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    ),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("decision", sa.Text),
    sa.Column("turn", sa.BigInteger, nullable=False),
    # The created_at of the reply before this one of the same decision and
    # turn (in created_at, message_id order; NULL for the first), kept by
    # triggers (migration 0020): a turn's first reply in a range is the one
    # whose ``since`` is NULL or before the range, so turns are counted, not
    # COUNT DISTINCT.
    sa.Column("since", UTCDateTime),
    sa.Index("ix_report_bot_turns_created", "created_at", "decision", "since", "channel"),
    sa.Index("ix_report_bot_turns_turn", "turn"),
)
