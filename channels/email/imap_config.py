"""The IMAP poller's configuration: ``ImapConfig`` (from ``HUB_EMAIL_IMAP_*``) and ``AfterAction``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hub.errors import ConfigError

if TYPE_CHECKING:
    from hub.config import Settings

# Servers may end an IDLE after 30 minutes (RFC 2177): renew it before.
IDLE_RENEW_SECONDS = 29 * 60.0


@dataclass(frozen=True, slots=True)
class AfterAction:
    """What happens to a message once taken in: nothing, ``seen`` (flag \\Seen) or ``move`` to ``folder``."""

    kind: str = "none"
    folder: str | None = None

    @classmethod
    def parse(cls, text: str) -> AfterAction:
        if text in ("none", "seen"):
            return cls(text)
        if text.startswith("move:") and text[5:].strip():
            return cls("move", text[5:].strip())
        raise ConfigError(f"HUB_EMAIL_IMAP_AFTER must be none, seen or move:<folder>, not {text!r}")


@dataclass(frozen=True)
class ImapConfig:
    """Where and how to read. ``tls``: ``tls`` (implicit, 993), ``starttls`` or ``none`` (loopback only);
    ``ssl_context``: the default context (system CAs, hostname checked) when None. ``idle``: use IDLE
    when the server offers it, else poll every ``poll_interval`` s. ``first_sync_days``: how far back a
    folder without a cursor is read (None: all of it). ``timeout`` bounds every command (FETCH: since its
    last byte); reconnects and retries of a failed ``handle`` wait ``reconnect_min`` doubling to
    ``reconnect_max`` seconds, with jitter."""

    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    tls: str = "tls"  # tls | starttls | none
    folders: tuple[str, ...] = ("INBOX",)
    poll_interval: float = 60.0
    idle: bool = True
    after: AfterAction = AfterAction()
    first_sync_days: int | None = 7
    idle_renew: float = IDLE_RENEW_SECONDS
    timeout: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 300.0
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ImapConfig:
        """The poller's configuration from ``HUB_EMAIL_IMAP_*``; ConfigError names every missing key."""
        password = settings.email_imap_password.get_secret_value() if settings.email_imap_password else ""
        missing = [
            f"HUB_EMAIL_IMAP_{key.upper()}"
            for key, value in (
                ("host", settings.email_imap_host),
                ("username", settings.email_imap_username),
                ("password", password),
            )
            if not value
        ]
        folders = tuple(name.strip() for name in settings.email_imap_folders.split(",") if name.strip())
        if not folders:
            missing.append("HUB_EMAIL_IMAP_FOLDERS")
        if missing:
            raise ConfigError(f"e-mail by IMAP needs {', '.join(missing)}")
        first = settings.email_imap_first_sync
        return cls(
            host=settings.email_imap_host or "",
            username=settings.email_imap_username or "",
            password=password,
            port=settings.email_imap_port,
            tls=settings.email_imap_tls,
            folders=folders,
            poll_interval=settings.email_imap_poll_interval,
            idle=settings.email_imap_idle,
            after=AfterAction.parse(settings.email_imap_after),
            first_sync_days=None if first == "all" else int(first),
        )
