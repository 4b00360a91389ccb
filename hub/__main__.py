"""``hub``: the Servicehub command line (``python -m hub`` works too).

Why this module runs past ~400 lines: it is the whole ``hub`` command line
(one click group per noun); every command is a thin call into a service.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hub.config import Settings
from hub.reports.service import REPORTS

# The reports ``hub report`` offers: every registered one (hub.reports.service).
REPORT_NAMES = list(REPORTS)

T = TypeVar("T")


def _settings() -> Settings:
    return Settings()


def _with_db(fn: Callable[..., T], *args: Any, write: bool = True) -> T:
    from hub.storage import open_database

    async def run() -> T:
        db = open_database(_settings().database_url)
        try:
            return await (db.write(fn, *args) if write else db.read(fn, *args))
        finally:
            await db.close()

    return asyncio.run(run())


def _fail(err: Exception) -> None:
    from hub.errors import HubError

    if isinstance(err, HubError):
        raise click.ClickException(err.message) from err
    raise err


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="servicehub")
def main() -> None:
    """Servicehub: web chat, SMS and e-mail on one timeline, a Rasa bot that
    answers from your knowledge base, and agents who work from Slack.

    Configuration comes from HUB_* environment variables or a .env file
    (see README.md). Start with `hub db upgrade`, `hub users create` and
    `hub serve`.
    """


@main.command()
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=".env", show_default=True)
def init(env_file: Path) -> None:
    """Write a .env for a local install: generated secrets, web chat, the sample KB.

    Leaves an existing file alone, so secrets survive restarts.
    """
    import secrets

    if env_file.exists():
        click.echo(f"{env_file} exists; leaving it as it is")
        return
    sample = Path(__file__).resolve().parent.parent / "knowledge_base" / "sample"
    lines = [
        "# Written by `hub init` for a local install; see README.md for every setting.",
        "HUB_CHANNELS=webchat",
        f"HUB_WEBCHAT_SECRETS={secrets.token_urlsafe(32)}",
        f"HUB_PORTAL_SECRET={secrets.token_urlsafe(32)}",
        f"HUB_RASA_TOKEN={secrets.token_urlsafe(24)}",
        f"HUB_KB_SEED_DIR={sample}",
        "",
        "# SMS and WhatsApp through Twilio (README: 'SMS and WhatsApp'): add sms (and",
        "# whatsapp) to HUB_CHANNELS, set these, and paste the URLs `hub serve` prints",
        "# into the Twilio console (Phone Numbers > your number > Messaging, or your",
        "# Messaging Service's Integration page). HUB_PUBLIC_URL must be the exact",
        "# public https URL Twilio calls: Twilio signs it, and the hub checks it.",
        "# HUB_PUBLIC_URL=https://support.example.com",
        "# HUB_TWILIO_ACCOUNT_SID=AC...",
        "# HUB_TWILIO_AUTH_TOKEN=...",
        "# HUB_TWILIO_FROM=+15551234567   (or a Messaging Service SID, MG...)",
        "# HUB_WHATSAPP_FROM=+15551234567 (your WhatsApp sender, for whatsapp)",
        "# HUB_SMS_DEFAULT_REGION=US      (for numbers written without +country code)",
        "",
        "# E-mail (README: 'E-mail'): add email to HUB_CHANNELS. Mail comes in on the",
        "# hub's SMTP server (MX, or forwarding from your mailbox) and/or by IMAP from an",
        "# existing mailbox; replies leave through your provider's relay.",
        "# HUB_EMAIL_ADDRESSES=help@example.com",
        f"# HUB_EMAIL_REPLY_SECRET={secrets.token_urlsafe(32)}",
        "# HUB_EMAIL_SMTP_PORT=2525",
        "# HUB_EMAIL_RELAY_HOST=smtp.example.com   HUB_EMAIL_RELAY_PORT=587",
        "# HUB_EMAIL_RELAY_USERNAME=help@example.com   HUB_EMAIL_RELAY_PASSWORD=...",
        "# HUB_EMAIL_IMAP_HOST=imap.example.com   HUB_EMAIL_IMAP_USERNAME=...   HUB_EMAIL_IMAP_PASSWORD=...",
        "",
        "# The agents' console at /console (README: 'The agents' console'): admins must",
        "# use a second factor (TOTP) when this is true.",
        "# HUB_REQUIRE_MFA=true",
        "",
    ]
    env_file.write_text("\n".join(lines))
    env_file.chmod(0o600)
    click.echo(f"wrote {env_file}")


@main.command()
@click.option("--host", help="Interface to listen on (default: HUB_HOST).")
@click.option("--port", type=int, help="Port to listen on (default: HUB_PORT).")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Upgrade the database first.")
def serve(host: str | None, port: int | None, migrate: bool) -> None:
    """Run the hub's HTTP server until SIGINT/SIGTERM, then drain and stop."""
    from aiohttp import web

    from hub.app import create_app, freeze_after_startup
    from hub.logs import setup_logging
    from hub.storage.migrate import upgrade

    settings = _settings()
    setup_logging(settings.log_level, settings.log_format)
    if migrate:
        upgrade(settings.database_url)
    app = create_app(settings)
    freeze_after_startup(app)
    host = host or settings.host
    port = port or settings.port

    def announce(_: str) -> None:
        base = settings.public_url.rstrip("/")
        click.echo(f"Servicehub is running on http://{host}:{port} (event loop: {settings.event_loop})")
        urls = []
        if "webchat" in settings.channel_names:
            urls.append(("Chat demo", "/demo"))
        if settings.kb_enabled:
            urls.append(("Help portal", "/help"))
        urls += [
            ("Console", "/console"),
            ("API (OpenAPI)", "/api/v1/openapi.json"),
            ("Readiness", "/readyz"),
            ("Metrics", "/metrics"),
        ]
        for label, path in urls:
            click.echo(f"  {label:<14} {base}{path}")
        if "email" in settings.channel_names and settings.email_smtp_port:
            click.echo(f"  {'E-mail (SMTP)':<14} {settings.email_smtp_host}:{settings.email_smtp_port}")
        # What to paste into the Twilio console ("A message comes in" and the status callback).
        for name in ("sms", "whatsapp"):
            if name in settings.channel_names:
                click.echo(f"  Twilio {name + ':':<9} incoming {base}/channels/{name}/twilio (HTTP POST)")
                click.echo(f"  {'':<16} status   {base}/channels/{name}/twilio/status (set on every send)")
        click.echo("Press Ctrl+C to stop.")

    web.run_app(
        app,
        host=host,
        port=port,
        print=announce,
        access_log=None,
        shutdown_timeout=15,
        loop=new_event_loop(settings.event_loop),
    )


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of the kind ``HUB_EVENT_LOOP`` names."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError as err:
            raise click.ClickException(
                "HUB_EVENT_LOOP=uvloop needs the uvloop package; set HUB_EVENT_LOOP=asyncio"
            ) from err
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (creates the SQLite file if needed)."""
    from hub.storage.migrate import current_revision, upgrade

    url = _settings().database_url
    upgrade(url, revision)
    click.echo(f"database at revision {current_revision(url)}")


@main.group()
def users() -> None:
    """Manage agents, admins and viewers."""


@users.command("create")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["admin", "agent", "viewer"]), default="agent", show_default=True)
@click.option("--slack-user-id", help="The agent's Slack member id (U...), to act from Slack.")
@click.option("--token/--no-token", default=True, show_default=True, help="Also create an API token.")
@click.option("--password", "ask_password", is_flag=True, help="Ask for a console password (typed twice, hidden).")
@click.option("--password-stdin", is_flag=True, help="Read the console password from the first line of stdin.")
@click.option("--link", is_flag=True, help="Print a one-time console sign-in link (the person sets a password).")
def users_create(
    name: str,
    email: str,
    role: str,
    slack_user_id: str | None,
    token: bool,
    ask_password: bool,
    password_stdin: bool,
    link: bool,
) -> None:
    """Create a user (and print a new API token for them); --password,
    --password-stdin or --link let them sign in to the console."""
    from hub import auth
    from hub.audit import Actor, Audit, audited, record  # noqa: F401 (the CLI imports lazily)

    password_hash = _new_password_hash(ask_password, password_stdin)
    settings = _settings()

    def create(conn: Any) -> tuple[Any, str | None, str | None]:
        user = auth.create_user(conn, name=name, email=email, role=role, slack_user_id=slack_user_id)
        secret = auth.create_token(conn, user.id, "cli")[0] if token else None
        record(
            conn,
            Audit(
                Actor.cli(),
                "user.create",
                "user",
                user.id,
                {"role": role, "token": bool(token), "password": password_hash is not None},
            ),
        )
        if password_hash is not None:
            _set_password(conn, user.id, password_hash)
        return user, secret, _sign_in_link(conn, user.id, settings) if link else None

    try:
        user, secret, url = _with_db(create)
    except Exception as err:
        _fail(err)
    click.echo(f"created {user.role.value} #{user.id} {user.email}")
    if secret:
        click.echo(f"API token (shown once): {secret}")
    if password_hash is not None:
        click.echo("console password set")
    if url:
        click.echo(f"One-time console sign-in link (valid {settings.console_link_hours:g} h): {url}")


def _new_password_hash(ask: bool, stdin: bool) -> str | None:
    """The argon2id hash of a password typed twice (``ask``) or read from stdin; None without either."""
    from hub.console import passwords
    from hub.errors import InvalidInput

    if ask and stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if not (ask or stdin):
        return None
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Console password", hide_input=True, confirmation_prompt=True)
    try:
        passwords.check_new_password(password)
    except InvalidInput as err:
        raise click.ClickException(err.message) from err
    return asyncio.run(passwords.hash_password(password))


def _set_password(conn: Any, user_id: int, password_hash: str) -> int:
    """Set a console password; every console session of the user ends (how many)."""
    from hub.console import passwords, sessions
    from hub.events import utcnow

    passwords.set_password_hash(conn, user_id, password_hash, now=utcnow())
    return sessions.end_user_sessions(conn, user_id)


def _sign_in_link(conn: Any, user_id: int, settings: Settings) -> str:
    from datetime import timedelta

    from hub.console import links
    from hub.events import utcnow

    token = links.create_link(conn, user_id, now=utcnow(), valid_for=timedelta(hours=settings.console_link_hours))
    return links.link_url(settings.public_url, token)


@users.command("password")
@click.argument("user")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_password(user: str, from_stdin: bool) -> None:
    """Set or reset USER's (id or e-mail) console password; signs them out everywhere."""
    from hub import auth
    from hub.audit import Actor, Audit, record

    password_hash = _new_password_hash(not from_stdin, from_stdin)
    assert password_hash is not None

    def change(conn: Any) -> tuple[Any, int]:
        found = auth.find_user(conn, user)
        ended = _set_password(conn, found.id, password_hash)
        record(conn, Audit(Actor.cli(), "user.password", "user", found.id, {"sessions_ended": ended}))
        return found, ended

    try:
        found, ended = _with_db(change)
    except Exception as err:
        _fail(err)
    click.echo(f"password set for {found.email}; {ended} console session(s) ended")


@users.command("link")
@click.argument("user")
def users_link(user: str) -> None:
    """Print a one-time console sign-in link for USER (id or e-mail), valid
    HUB_CONSOLE_LINK_HOURS; their earlier unused links stop working."""
    from hub import auth
    from hub.audit import Actor, Audit, record

    settings = _settings()

    def make(conn: Any) -> str:
        found = auth.find_user(conn, user)
        record(conn, Audit(Actor.cli(), "user.sign_in_link", "user", found.id))
        return _sign_in_link(conn, found.id, settings)

    try:
        click.echo(_with_db(make))
    except Exception as err:
        _fail(err)


@users.command("mfa-reset")
@click.argument("user")
def users_mfa_reset(user: str) -> None:
    """Turn off USER's second factor (a lost phone without recovery codes); signs them out everywhere."""
    from hub import auth
    from hub.audit import Actor, Audit, record
    from hub.console import sessions, totp
    from hub.events import utcnow

    def reset(conn: Any) -> Any:
        found = auth.find_user(conn, user)
        totp.disable(conn, found.id, None, now=utcnow())
        ended = sessions.end_user_sessions(conn, found.id)
        record(conn, Audit(Actor.cli(), "user.mfa_reset", "user", found.id, {"sessions_ended": ended}))
        return found

    try:
        found = _with_db(reset)
    except Exception as err:
        _fail(err)
    click.echo(f"second factor off for {found.email}; they sign in with their password and may enrol again")


@users.command("bootstrap")
@click.option("--email", default="admin@localhost", show_default=True)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to keep the token (default: DATA_DIR/admin-token).",
)
def users_bootstrap(email: str, token_file: Path | None) -> None:
    """First run: create an admin with a token when the hub has no users yet,
    and print a one-time console sign-in link for them (again at every run
    until they have set a password; never a password in the log)."""
    import sqlalchemy as sa

    from hub import auth
    from hub.audit import Actor, Audit, audited, record  # noqa: F401 (the CLI imports lazily)
    from hub.errors import NotFound
    from hub.storage.schema import users as users_table

    settings = _settings()
    token_file = token_file or settings.data_dir / "admin-token"

    def create(conn: Any) -> tuple[str | None, str | None]:
        if auth.list_users(conn):
            # The bootstrap admin who has not set a console password yet gets a fresh link.
            try:
                admin = auth.find_user(conn, email)
            except NotFound:
                return None, None
            if (
                conn.execute(sa.select(users_table.c.password_hash).where(users_table.c.id == admin.id)).scalar_one()
                is not None
            ):
                return None, None
            record(conn, Audit(Actor.cli(), "user.sign_in_link", "user", admin.id))
            return None, _sign_in_link(conn, admin.id, settings)
        user = auth.create_user(conn, name="Administrator", email=email, role="admin")
        record(conn, Audit(Actor.cli(), "user.bootstrap", "user", user.id))
        return auth.create_token(conn, user.id, "bootstrap")[0], _sign_in_link(conn, user.id, settings)

    token, url = _with_db(create)
    if token is None:
        click.echo(f"users exist already; the first admin token, if kept, is in {token_file}")
    else:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        click.echo(f"created admin {email}; API token saved to {token_file}")
    if url is not None:
        click.echo(f"Sign in to the console as {email} (one-time link, valid {settings.console_link_hours:g} h): {url}")


@users.command("list")
def users_list() -> None:
    """List users."""
    from hub import auth

    for user in _with_db(auth.list_users, write=False):
        click.echo(f"#{user.id}\t{user.role.value}\t{user.email}\t{user.name}")


@main.group()
def tokens() -> None:
    """Manage API tokens."""


@tokens.command("create")
@click.argument("user")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
def tokens_create(user: str, name: str) -> None:
    """Create an API token for USER (id or e-mail)."""
    from hub import auth
    from hub.audit import Actor, Audit, audited, record  # noqa: F401 (the CLI imports lazily)

    def create(conn: Any) -> str:
        owner = auth.find_user(conn, user).id
        secret, token_id = auth.create_token(conn, owner, name)
        record(conn, Audit(Actor.cli(), "token.create", "user", owner, {"token_id": token_id}))
        return secret

    try:
        click.echo(_with_db(create))
    except Exception as err:
        _fail(err)


@tokens.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID."""
    from hub import auth
    from hub.audit import Actor, Audit, audited, record  # noqa: F401 (the CLI imports lazily)

    try:
        _with_db(audited(auth.revoke_token, Audit(Actor.cli(), "token.revoke", "token", token_id)), token_id)
    except Exception as err:
        _fail(err)
    click.echo(f"revoked token {token_id}")


@main.group()
def contacts() -> None:
    """Right to know and right to erasure (GDPR/CCPA)."""


@contacts.command("export")
@click.argument("contact_id", type=int)
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: stdout).")
def contacts_export(contact_id: int, output: Any) -> None:
    """Write everything stored about CONTACT_ID as JSON."""
    from hub.audit import Actor, Audit, audited, record  # noqa: F401 (the CLI imports lazily)
    from hub.conversations.contacts import export_contact

    try:
        data = _with_db(
            audited(export_contact, Audit(Actor.cli(), "contact.export", "contact", contact_id)), contact_id
        )
    except Exception as err:
        _fail(err)
    json.dump(data, output, indent=2, ensure_ascii=False)
    output.write("\n")


@contacts.command("erase")
@click.argument("contact_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def contacts_erase(contact_id: int, yes: bool) -> None:
    """Delete CONTACT_ID and all their messages, identities and conversations."""
    from hub.audit import Actor, Audit, audited, record  # noqa: F401 (the CLI imports lazily)
    from hub.conversations.contacts import erase_contact

    if not yes:
        click.confirm(f"Erase contact {contact_id} and everything about them?", abort=True)
    try:
        counts = _with_db(
            audited(
                erase_contact, Audit(Actor.cli(), "contact.erase", "contact", contact_id), lambda c: {"deleted": c}
            ),
            contact_id,
        )
    except Exception as err:
        _fail(err)
    click.echo(f"erased contact {contact_id}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@main.group()
def kb() -> None:
    """The knowledge base: ingest Markdown articles, search them, decide suggested phrasings.

    These open the knowledge base under HUB_DATA_DIR/kb (or HUB_CHROMA_URL)
    directly; while `hub serve` runs, prefer the articles API. An ingest
    tells running hubs sharing the knowledge base to reload their keyword
    index (hub/versions.py).
    """


def _kb_location() -> dict[str, Any]:
    settings = _settings()
    return {
        "data_dir": settings.data_dir / "kb",
        "chroma_url": settings.chroma_url,
        "model_path": settings.kb_model_path,
    }


@kb.command("ingest")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--collection", default="default", show_default=True, help="Which knowledge base.")
@click.option("--keep-missing", is_flag=True, help="Keep articles that are no longer in DIRECTORY.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def kb_ingest(directory: Path, collection: str, keep_missing: bool, as_json: bool) -> None:
    """Index the Markdown articles in DIRECTORY (unchanged ones cost nothing)."""
    from knowledge_base import KnowledgeBaseError
    from knowledge_base.cli import ingest_command

    try:
        asyncio.run(
            ingest_command(
                directory, collection=collection, delete_missing=not keep_missing, as_json=as_json, **_kb_location()
            )
        )
    except KnowledgeBaseError as err:
        raise click.ClickException(str(err)) from err
    from hub.versions import bump, kb_collection

    try:
        _with_db(bump, kb_collection(collection))
    except Exception as err:  # no hub database here (yet): no running hub to tell
        click.echo(f"note: running hubs were not told to reload the index ({type(err).__name__})", err=True)


@kb.command("search")
@click.argument("query", required=False)
@click.option(
    "--queries",
    "queries_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="One query per line; one JSON line of hits per query out (the model loads once).",
)
@click.option("--collection", default="default", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True, help="How many hits.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def kb_search(query: str | None, queries_file: Path | None, collection: str, k: int, as_json: bool) -> None:
    """Search the knowledge base for QUERY (or every line of --queries FILE)."""
    from knowledge_base import KnowledgeBaseError
    from knowledge_base.cli import search_command

    if (query is None) == (queries_file is None):
        raise click.UsageError("give a QUERY or --queries FILE")
    try:
        status = asyncio.run(
            search_command(
                query, queries_file=queries_file, collection=collection, k=k, as_json=as_json, **_kb_location()
            )
        )
    except KnowledgeBaseError as err:
        raise click.ClickException(str(err)) from err
    sys.exit(status)


@kb.command("suggestions")
@click.option(
    "--status", type=click.Choice(["pending", "accepted", "rejected", "all"]), default="pending", show_default=True
)
@click.option("--collection", help="Only this collection's.")
@click.option(
    "--accept", "accept_id", type=int, metavar="ID", help="Add suggestion ID's text to its article's questions."
)
@click.option("--reject", "reject_id", type=int, metavar="ID", help="Reject suggestion ID.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def kb_suggestions(
    status: str, collection: str | None, accept_id: int | None, reject_id: int | None, as_json: bool
) -> None:
    """New phrasings of articles, offered by agents' help-centre links after a
    handoff and customers' helpful votes on the bot's answers; --accept or
    --reject one (audited as the CLI's, with the OS user; the API records the admin)."""
    from hub.audit import Actor
    from hub.events import utcnow
    from hub.kb.suggestions import PhrasingSuggestions, Suggestion
    from hub.storage import open_database
    from knowledge_base import KnowledgeBase

    if accept_id is not None and reject_id is not None:
        raise click.UsageError("give --accept or --reject, not both")
    settings = _settings()

    async def run() -> list[Suggestion]:
        db = open_database(settings.database_url)
        try:
            if accept_id is not None:
                async with KnowledgeBase(**_kb_location()) as knowledge_base:
                    phrasings = PhrasingSuggestions(db, public_url=settings.public_url, knowledge_base=knowledge_base)
                    return [await phrasings.accept(accept_id, actor=Actor.cli(), now=utcnow())]
            phrasings = PhrasingSuggestions(db, public_url=settings.public_url, knowledge_base=None)
            if reject_id is not None:
                return [await phrasings.reject(reject_id, actor=Actor.cli(), now=utcnow())]
            return await phrasings.list(status=None if status == "all" else status, collection=collection, limit=500)
        finally:
            await db.close()

    try:
        found = asyncio.run(run())
    except Exception as err:
        _fail(err)
    for suggestion in found:
        if as_json:
            click.echo(json.dumps(suggestion.to_dict(), ensure_ascii=False))
        else:
            click.echo(
                f"{suggestion.id}\t{suggestion.status}\t{suggestion.collection}/{suggestion.article_id}\t"
                f"{suggestion.votes} vote(s), {suggestion.source}\t{suggestion.text}"
            )


@main.command()
@click.argument("name", type=click.Choice(REPORT_NAMES))
@click.option(
    "--from", "start", required=True, help="ISO 8601 date or date-time (inclusive; local to --tz without an offset)."
)
@click.option("--to", "end", required=True, help="ISO 8601 date or date-time (exclusive).")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the buckets (Europe/Berlin).")
@click.option("--bucket", type=click.Choice(["hour", "day", "week"]), default="day", show_default=True)
@click.option("--channel", help="Only this channel (volume, response-times, sla, bot).")
@click.option("--team", help="Only this team (response-times, sla, agents).")
@click.option("--agent", help="Only this agent's user id (response-times, sla, agents).")
@click.option("--priority", type=click.Choice(["urgent", "high", "normal", "low"]), help="Only this priority.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (a section column, then the figures) instead of tables.")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
def report(
    name: str,
    start: str,
    end: str,
    tz: str,
    bucket: str,
    channel: str | None,
    team: str | None,
    agent: str | None,
    priority: str | None,
    as_csv: bool,
    as_json: bool,
) -> None:
    """Print a report: the figures GET /api/v1/reports/NAME answers with."""
    from hub.events import Clock
    from hub.kb.setup import build_knowledge_base
    from hub.reports.params import ReportParams
    from hub.reports.render import to_csv, to_table
    from hub.reports.service import ReportService
    from hub.storage import open_database
    from hub.tickets.sla import BusinessHours

    settings = _settings()

    async def run() -> dict[str, Any]:
        params = ReportParams.parse(
            start=start, end=end, tz=tz, bucket=bucket, channel=channel, team=team, agent=agent, priority=priority
        )
        hours = BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays)
        db = open_database(settings.database_url)
        # The content gaps cluster questions with the knowledge base's model.
        kb = build_knowledge_base(settings) if name == "gaps" else None
        try:
            if kb is not None:
                await kb.start()
            embed = kb.embed if kb is not None else None
            service = ReportService(
                db, hours=hours, clock=Clock(), embed=embed, answer_confidence=settings.bot_confidence_threshold
            )
            return await service.run(name, params)
        finally:
            if kb is not None:
                await kb.close()
            await db.close()

    try:
        figures = asyncio.run(run())
    except Exception as err:
        _fail(err)
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
    elif as_csv:
        click.echo(to_csv(figures), nl=False)
    else:
        click.echo(to_table(figures))


if __name__ == "__main__":
    sys.exit(main())
