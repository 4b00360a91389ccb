"""Handing a composed reply to the relay (``aiosmtplib``), optionally DKIM-signed.

One SMTP session per send to ``HUB_EMAIL_RELAY_HOST:PORT``: implicit TLS
(``tls``, port 465), STARTTLS required (``starttls``, port 587) or neither
(``none``, a relay on loopback), with AUTH when a username is set. The
envelope sender is the first support address, so bounces come back to the
hub's SMTP server (``bounce``).

Failures become ``ChannelSendError``: a transport error, a timeout or an
SMTP 4xx is retryable (the outbox backs off); an SMTP 5xx is permanent and
carries the reply code as ``provider_code``. Neither the error nor the log
holds an address or the text: the relay's reply is reduced to its codes.

DKIM (``HUB_EMAIL_DKIM_SELECTOR`` + ``HUB_EMAIL_DKIM_KEY_FILE``): ``dkimpy``
signs the bytes (relaxed/simple, rsa-sha256, d= the support domain) in a
worker thread; the key is read once at start.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import aiosmtplib
import dkim

from hub.errors import ChannelSendError

log = logging.getLogger(__name__)

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"auto-submitted",
)
_ENHANCED = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")


@dataclass(frozen=True, slots=True)
class DkimKey:
    selector: str
    domain: str
    private_key: bytes

    def sign(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature header in front."""
        signature = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            include_headers=list(SIGNED_HEADERS),
        )
        return bytes(signature) + message


@dataclass(frozen=True, slots=True)
class Relay:
    host: str
    port: int
    tls: str  # "starttls", "tls" or "none"
    username: str | None
    password: str | None
    timeout: float
    local_hostname: str
    dkim_key: DkimKey | None = None

    async def send(self, message: bytes, *, sender: str, recipient: str) -> None:
        if self.dkim_key is not None:
            try:
                message = await asyncio.to_thread(self.dkim_key.sign, message)
            except dkim.DKIMException as err:
                raise ChannelSendError(f"e-mail: DKIM signing failed ({type(err).__name__})", retryable=False) from err
        try:
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=[recipient],
                hostname=self.host,
                port=self.port,
                username=self.username or None,
                password=self.password if self.username else None,
                use_tls=self.tls == "tls",
                start_tls=True if self.tls == "starttls" else False,
                timeout=self.timeout,
                local_hostname=self.local_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = [refusal.code for refusal in err.recipients]
            raise smtp_error(codes[0] if codes else 550, "refused the recipient") from err
        except aiosmtplib.SMTPResponseException as err:
            raise smtp_error(err.code, _what(err), err.message) from err
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise ChannelSendError(f"e-mail relay: {type(err).__name__} (no answer)", retryable=True) from err


def _what(err: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(err, aiosmtplib.SMTPSenderRefused):
        return "refused the sender"
    if isinstance(err, aiosmtplib.SMTPAuthenticationError):
        return "refused the login"
    if isinstance(err, aiosmtplib.SMTPDataError):
        return "refused the message"
    return "failed"


def smtp_error(code: int, what: str, reply: str = "") -> ChannelSendError:
    """A relay's SMTP reply as a ChannelSendError: 4xx retryable, 5xx (and
    anything else) permanent; the text holds codes only, never the reply's words
    (relays quote addresses in them)."""
    enhanced = _ENHANCED.search(reply or "")
    detail = f"SMTP {code}" + (f" {enhanced.group(0)}" if enhanced else "")
    retryable = 400 <= code < 500
    return ChannelSendError(f"e-mail relay {what}: {detail}", retryable=retryable, provider_code=str(code))
