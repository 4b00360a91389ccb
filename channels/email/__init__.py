"""E-mail: inbound by SMTP and IMAP, outbound through a relay (README: "E-mail").

One concept per module: ``channel`` (the Channel: settings, send, lifespan),
``smtp`` (the inbound SMTP server), ``imap`` (the IMAP poller: cursor per
folder, backfill, IDLE or polling; with ``imap_config``, ``imap_session``,
``imap_wire``), ``intake`` (raw mail into the hub, shared by SMTP and IMAP),
``parse`` (one raw mail as a message or a bounce: the stable entry point
``parse_email``), ``text`` (body text: charsets, HTML, quotes and
signatures), ``bounce`` (delivery status notifications), ``loops``
(automated mail, the per-sender rate), ``addresses`` (support addresses,
+tags, tokenised reply addresses), ``compose`` (a reply's headers and
parts), ``relay`` (aiosmtplib and DKIM).
"""

from channels.email.channel import EmailChannel

__all__ = ["EmailChannel"]
