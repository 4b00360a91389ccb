"""SMS and WhatsApp through Twilio (see README.md in this folder for the console set-up).

One concept per module: ``channel`` (routes, verify, parse, send), ``whatsapp``
(the same over WhatsApp), ``signature`` (Twilio's request signature),
``inbound`` (the message webhook's fields), ``status`` (status callbacks),
``keywords`` (STOP/START/HELP), ``numbers`` (E.164 and ``whatsapp:``),
``segments`` (GSM-7/UCS-2 and splitting), ``client`` (the twilio SDK on
aiohttp), ``resend`` (no double texts after a crash), ``codes`` (Twilio's
error codes as reasons).
"""

from channels.sms.channel import SmsChannel
from channels.sms.whatsapp import WhatsappChannel

__all__ = ["SmsChannel", "WhatsappChannel"]
