"""Where a webhook may be sent: http(s) URLs, and not into the hub's own network.

An endpoint URL is an admin's input that makes the hub send requests: a
server-side request forgery waiting to happen (cloud metadata at
169.254.169.254, the database on loopback, the office LAN). Unless
``HUB_WEBHOOK_ALLOW_PRIVATE`` is set, a destination must be a public
address: checked on the URL when it is saved (an IP literal, ``localhost``),
and again on every address a host name resolves to when a delivery is sent
(``GuardedResolver``), so a name that later resolves inward (DNS rebinding)
is refused too. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from hub.errors import InvalidInput

MAX_URL_LENGTH = 2000
LOCAL_NAMES = ("localhost", "localhost.localdomain")


class PrivateDestination(OSError):
    """A host resolved to an address the hub does not send webhooks to."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` if it may be an endpoint; a 400 naming why otherwise."""

    def bad(reason: str) -> InvalidInput:
        return InvalidInput(f"'url' {reason}", details={"field": "url"})

    if not isinstance(url, str) or not url.strip():
        raise bad("is required")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise bad(f"is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(ch.isspace() or ord(ch) < 0x21 for ch in url):
        raise bad("must be ASCII without spaces (percent-encode, and use the IDNA form of the host)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise bad("is not a valid URL") from err
    if parts.scheme.lower() not in ("http", "https"):
        raise bad("must be an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise bad("has no host")
    if parts.username is not None or parts.password is not None:
        raise bad("must not hold credentials: the receiver checks the signature instead")
    if parts.fragment:
        raise bad("must not have a #fragment")
    if port == 0:
        raise bad("has port 0")
    if not allow_private:
        literal = _literal(host)
        if host.lower().rstrip(".") in LOCAL_NAMES or host.lower().endswith(".localhost"):
            raise bad("points at this machine (HUB_WEBHOOK_ALLOW_PRIVATE is off)")
        if literal is not None and not is_public(literal):
            raise bad("is a private, loopback or link-local address (HUB_WEBHOOK_ALLOW_PRIVATE is off)")
    return url


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses every address that is not public."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        public = [entry for entry in found if is_public(entry["host"])]
        if not public:
            raise PrivateDestination(f"{host} resolves to a private address (HUB_WEBHOOK_ALLOW_PRIVATE is off)")
        return public

    async def close(self) -> None:
        await self._resolver.close()
