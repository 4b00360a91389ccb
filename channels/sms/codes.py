"""Twilio's error codes as the hub reports them: a short reason for the agent,
and what a refusal means (retry, give up, the customer opted out).

Every text here is safe to log: codes and reasons, never a number or a body.
"""

from __future__ import annotations

# The customer unsubscribed (replied STOP): nothing more may be sent until START.
OPTED_OUT = frozenset({"21610"})

REASONS: dict[str, str] = {
    # refused when sending (REST API)
    "20003": "Twilio refused the account SID or auth token",
    "20429": "too many requests to Twilio",
    "21211": "invalid 'To' phone number",
    "21408": "sending to this region is not enabled on the Twilio account",
    "21606": "the 'From' number cannot send messages",
    "21610": "the recipient unsubscribed (replied STOP)",
    "21612": "Twilio cannot route to this number",
    "21614": "the number is not a mobile number",
    "21617": "the message body is too long",
    "21656": "the Messaging Service has no sender for this number",
    "63007": "the WhatsApp sender is not set up on Twilio",
    "63016": "outside WhatsApp's 24-hour window: only a template message may be sent",
    # reported by status callbacks
    "30001": "Twilio's queue overflowed",
    "30002": "the Twilio account is suspended",
    "30003": "unreachable handset (off or out of coverage)",
    "30004": "the message was blocked",
    "30005": "unknown number (it does not exist)",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error from the carrier",
    "30034": "the sender is not registered for A2P 10DLC",
    "63003": "invalid WhatsApp number",
    "63024": "invalid WhatsApp recipient",
}


def reason(code: str | None) -> str | None:
    """A short text for the agent; None without a code."""
    if not code:
        return None
    return REASONS.get(code, f"Twilio error {code}")


def send_refusal(code: str | None, status: int) -> str:
    """The message of a ChannelSendError for a refused send."""
    if code and code in REASONS:
        return f"Twilio refused the message: {REASONS[code]} (error {code}, HTTP {status})"
    if code:
        return f"Twilio refused the message (error {code}, HTTP {status})"
    return f"Twilio refused the message (HTTP {status})"
