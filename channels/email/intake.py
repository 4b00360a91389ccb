"""From a received mail's bytes into the hub: what every inbound mode does.

The SMTP server (``smtp``) and the IMAP poller hand each raw mail to
``MailIntake.take_in`` and acknowledge it (SMTP's 250, IMAP's flag or move)
only after it returned: by then the mail is stored (``ChannelHost.ingest``
committed) or its bounce recorded (``ChannelHost.delivery_report``).

``take_in``:

1. parses (``parse.parse_email``; in a worker thread for big mail, so the
   event loop never waits on it);
2. for a bounce, hands its ``DeliveryReport`` to the hub; nothing else;
3. counts the sender (``loops.SenderRate``): beyond the hourly limit the mail
   is marked ``automated``;
4. keeps the original (``original.eml``, ``message/rfc822``; metadata with
   ``"kind": "original"``) and every attachment and inline image
   (``"kind": "attachment"`` / ``"inline"``, with the part's ``content_id``)
   through ``ChannelHost.store_attachment``. A file beyond the hub's size cap
   (``TooLarge``) is left out and counted in the message's metadata
   (``email.files_not_kept``), the text still goes in;
5. checks the message where it enters (``hub.inputs.check_inbound``) and
   ingests it (deduplicated on the Message-ID).

Raises ``InvalidInput`` (with a reason) for mail that cannot be taken in:
the SMTP server refuses it with 550/554. Anything else raised (storage, a
hub that is shutting down) is transient: the sender keeps the mail and
retries (SMTP 451; IMAP leaves it unflagged).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from channels.email.addresses import SupportAddresses
from channels.email.bounce import Bounce
from channels.email.loops import SenderRate
from channels.email.parse import MailFile, ParsedMail, parse_email
from hub.errors import TooLarge
from hub.inputs import check_inbound
from hub.messages import IngestResult

log = logging.getLogger(__name__)

# Mail larger than this is parsed in a worker thread (the common mail, a few
# kilobytes, parses faster than a thread hop).
THREAD_PARSE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    """What became of one mail: a stored message, or a bounce (``reported``:
    it matched a message the hub sent)."""

    ingested: IngestResult | None = None
    bounce: Bounce | None = None
    reported: bool = False


class MailIntake:
    def __init__(
        self,
        *,
        channel: str,
        addresses: SupportAddresses,
        host: Callable[[], Any],
        sender_rate: SenderRate,
    ) -> None:
        self.channel = channel
        self.addresses = addresses
        self._host = host  # the channel's ChannelHost, looked up when used (bound after start)
        self.sender_rate = sender_rate

    async def parse(
        self, raw: bytes, *, envelope_sender: str | None = None, envelope_recipients: Sequence[str] = ()
    ) -> ParsedMail | Bounce:
        def run() -> ParsedMail | Bounce:
            return parse_email(
                raw,
                addresses=self.addresses,
                channel=self.channel,
                envelope_sender=envelope_sender,
                envelope_recipients=envelope_recipients,
            )

        if len(raw) > THREAD_PARSE_BYTES:
            return await asyncio.to_thread(run)
        return run()

    async def take_in(
        self, raw: bytes, *, envelope_sender: str | None = None, envelope_recipients: Sequence[str] = ()
    ) -> Received:
        parsed = await self.parse(raw, envelope_sender=envelope_sender, envelope_recipients=envelope_recipients)
        host = self._host()
        if isinstance(parsed, Bounce):
            report = parsed.report(self.channel)
            if report is None:
                log.info("%s: a bounce (%s) about no message the hub can name", self.channel, parsed.status)
                return Received(bounce=parsed)
            reported = await host.delivery_report(report)
            log.info(
                "%s: bounce %s %s for %s%s",
                self.channel,
                report.status,
                report.error_code or "-",
                report.provider_id,
                "" if reported else " (no such sent message)",
            )
            return Received(bounce=parsed, reported=reported)
        message = parsed.message
        if message.external_id and await host.was_erased(self.channel, message.external_id):
            # An erased customer's mail, read again (a re-scanned mailbox) or retried: not taken back.
            log.info("%s: a mail of an erased contact was not taken in again", self.channel)
            return Received()
        email_meta = dict(message.metadata.get("email", {}))
        if self.sender_rate.exceeded(message.sender) and not message.automated:
            email_meta["automated"] = f"more than {self.sender_rate.limit} messages from this sender within an hour"
            message = dataclasses.replace(message, automated=True)
        attachments: list[dict[str, Any]] = []
        not_kept = parsed.skipped_files
        original = await self._store(host, parsed.raw, "original.eml", "message/rfc822")
        if original is None:
            email_meta["original_not_kept"] = "too large"
        else:
            attachments.append({**original, "kind": "original"})
        for file in parsed.files:
            stored = await self._store(host, file.data, file.filename, file.content_type)
            if stored is None:
                not_kept += 1
                continue
            attachments.append(_file_metadata(stored, file))
        if not_kept:
            email_meta["files_not_kept"] = not_kept
        message = dataclasses.replace(
            message, attachments=tuple(attachments), metadata={**message.metadata, "email": email_meta}
        )
        result = await host.ingest(check_inbound(message))
        log.info(
            "%s: mail stored as message %s in conversation %s%s%s",
            self.channel,
            result.message.id,
            result.conversation.id,
            " (duplicate)" if result.duplicate else "",
            " (automated)" if message.automated else "",
        )
        return Received(ingested=result)

    async def _store(self, host: Any, data: bytes, filename: str | None, content_type: str) -> dict[str, Any] | None:
        try:
            stored: dict[str, Any] = await host.store_attachment(data, filename=filename, content_type=content_type)
        except TooLarge:
            log.info(
                "%s: a %s of %s bytes is beyond the attachment cap; not kept", self.channel, content_type, len(data)
            )
            return None
        return stored


def _file_metadata(stored: dict[str, Any], file: MailFile) -> dict[str, Any]:
    metadata = {**stored, "kind": "inline" if file.inline else "attachment"}
    if file.content_id:
        metadata["content_id"] = file.content_id
    return metadata
