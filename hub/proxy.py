"""Behind a reverse proxy: the client's address, scheme and host, taken only from hops we trust.

Without ``HUB_TRUSTED_PROXIES`` the forwarding headers are ignored and
``request.remote`` is the TCP peer. With it, and only when the peer is one of
those addresses or networks, the middleware walks the chain of addresses the
proxies recorded from right to left, skipping hops that are themselves
trusted, and the first one that is not is the client (all trusted: the
leftmost). This is the "strict" algorithm of aiohttp-remotes'
``XForwardedStrict``: the leftmost entries are whatever the client wrote and
are never believed; each trusted proxy appended the address it received
from.

``HUB_TRUSTED_PROXY_HEADERS`` picks which headers the proxy writes, and only
those are read (a proxy that writes one usually passes the other through from
the client untouched, so reading both would let the client choose):

- ``x-forwarded`` (default): ``X-Forwarded-For`` for the chain,
  ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` as the last value the nearest
  proxy wrote (nginx's ``proxy_set_header``, HAProxy's ``option forwardedfor``
  with ``http-request set-header``, Traefik, cloud load balancers);
- ``forwarded``: RFC 7239 ``Forwarded``, one element per hop; the scheme and
  host come from the element of the hop that received from the client.

The request is then ``request.clone(remote=..., scheme=..., host=...)``, so
everything downstream (the rate limiter's keys, the console's sign-in
limits, the chat socket's per-address limits, the Twilio signature's URL) sees
the client. A trusted proxy that sends a chain or a value the hub cannot read
is a 400 naming the header; an untrusted peer's headers are never read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from hub.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

HEADER_STYLES = ("x-forwarded", "forwarded")

# Set on requests whose scheme/host came from a trusted proxy: the origin the client called.
FORWARDED_ORIGIN = web.RequestKey("forwarded_origin", str)

# A host as a Host header carries it: a name or IPv4 address, or [IPv6], with an optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_SCHEMES = ("http", "https")
# RFC 7239: pair = token "=" ( token / quoted-string )
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[!#$%&\'*+.^_`|~0-9A-Za-z:\[\]-]*)\s*')


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1, ::1"`` -> networks; ValueError names a bad entry."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as err:
            raise ValueError(f"not an address or network: {entry!r}") from err
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """An IP address as a proxy writes it (IPv6 maybe in brackets, maybe with a
    port), IPv4-mapped IPv6 folded to IPv4; None when it is not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Hop:
    """What one proxy recorded about whom it received from."""

    client: str  # as written
    proto: str | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Forwarding:
    remote: str
    scheme: str | None
    host: str | None


class TrustedProxies:
    def __init__(self, networks: Iterable[Network], headers: str = "x-forwarded") -> None:
        if headers not in HEADER_STYLES:
            raise ValueError(f"forwarding headers must be one of {', '.join(HEADER_STYLES)}, not {headers!r}")
        self.networks = tuple(networks)
        self.headers = headers

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def resolve(self, request: web.BaseRequest) -> Forwarding | None:
        """The client a request came from, or None to leave the request as it is
        (an untrusted peer, or a trusted one that forwarded nothing)."""
        if not self.networks or not self.trusts(parse_address(request.remote or "")):
            return None
        hops, nearest_proto, nearest_host = self._hops(request)
        if not hops:
            return None
        chosen = hops[0]
        for hop in reversed(hops):  # nearest first
            address = parse_address(hop.client)
            if address is None:
                raise InvalidInput(f"{self._chain_header} from a trusted proxy has an entry that is not an address")
            chosen = hop
            if not self.trusts(address):
                break
        remote = str(parse_address(chosen.client))
        proto = chosen.proto if self.headers == "forwarded" else nearest_proto
        host = chosen.host if self.headers == "forwarded" else nearest_host
        if proto is not None:
            proto = proto.lower()
            if proto not in _SCHEMES:
                raise InvalidInput(f"{self._proto_header} from a trusted proxy must be http or https")
        if host is not None and not _HOST.fullmatch(host):
            raise InvalidInput(f"{self._host_header} from a trusted proxy is not a host")
        return Forwarding(remote=remote, scheme=proto, host=host)

    @property
    def _chain_header(self) -> str:
        return "Forwarded" if self.headers == "forwarded" else "X-Forwarded-For"

    @property
    def _proto_header(self) -> str:
        return "Forwarded" if self.headers == "forwarded" else "X-Forwarded-Proto"

    @property
    def _host_header(self) -> str:
        return "Forwarded" if self.headers == "forwarded" else "X-Forwarded-Host"

    def _hops(self, request: web.BaseRequest) -> tuple[list[Hop], str | None, str | None]:
        if self.headers == "forwarded":
            return _forwarded_hops(request.headers.getall("Forwarded", [])), None, None
        chain = [
            Hop(entry.strip()) for value in request.headers.getall("X-Forwarded-For", []) for entry in value.split(",")
        ]
        if any(not hop.client for hop in chain):
            raise InvalidInput("X-Forwarded-For from a trusted proxy has an empty entry")
        proto = _last(request.headers.getall("X-Forwarded-Proto", []))
        return chain, proto, _last(request.headers.getall("X-Forwarded-Host", []))


def _last(values: list[str]) -> str | None:
    """The value the nearest proxy wrote (the rightmost)."""
    entries = [entry.strip() for value in values for entry in value.split(",")]
    return entries[-1] if entries else None


def _forwarded_hops(values: list[str]) -> list[Hop]:
    hops = []
    for value in values:
        for element in _split_elements(value):
            pairs: dict[str, str] = {}
            for pair in element.split(";"):
                if not pair.strip():
                    continue
                match = _PAIR.fullmatch(pair)
                if match is None:
                    raise InvalidInput("Forwarded from a trusted proxy is malformed")
                name, raw = match.group(1).lower(), match.group(2)
                pairs[name] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
            if "for" not in pairs:
                raise InvalidInput("Forwarded from a trusted proxy has an element without for=")
            hops.append(Hop(pairs["for"], pairs.get("proto"), pairs.get("host")))
    return hops


def _split_elements(value: str) -> list[str]:
    """Split on commas outside quoted strings."""
    elements: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise InvalidInput("Forwarded from a trusted proxy has an unterminated quoted string")
    elements.append("".join(current))
    return [element for element in elements if element.strip()] or [""]


def proxy_middleware(trusted: TrustedProxies) -> Middleware:
    """Rewrites ``request.remote`` (and scheme and host) from a trusted proxy's headers."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        found = trusted.resolve(request)
        if found is None:
            return await handler(request)
        changes: dict[str, str] = {"remote": found.remote}
        if found.scheme is not None:
            changes["scheme"] = found.scheme
        if found.host is not None:
            changes["host"] = found.host
        cloned = request.clone(**changes)  # type: ignore[arg-type]
        if found.scheme is not None or found.host is not None:
            cloned[FORWARDED_ORIGIN] = f"{cloned.scheme}://{cloned.host}"
        return await handler(cloned)

    return forwarded
