"""Outgoing webhooks for integrators (issue #18).

- ``store``: endpoints and the ``webhook_deliveries`` queue; ``enqueue_delivery``
  queues one signed delivery to one endpoint (the ping, automation rules).
- ``service``: tx hooks that queue a delivery per subscribed endpoint in the
  transaction of the event's cause, and the cleanup context.
- ``sender``: the worker that POSTs them (retries, Retry-After, dead letters).
- ``signing``: the signature scheme and ``verify_signature`` for receivers.
- ``destinations``: which URLs may be endpoints (http/https, SSRF guard).
- ``payloads``: each event's ``data``.
"""

from hub.webhooks.signing import verify_signature

__all__ = ["verify_signature"]
