"""E-mail: inbound by SMTP and IMAP, outbound through a relay, on the same timeline as every channel."""
