"""The support addresses, their ``+tag`` forms and the tokenised reply address.

``HUB_EMAIL_ADDRESSES`` names the mailboxes the hub answers for. Mail to one
of them, or to a sub-address of one (``help+anything@example.com``), is taken
in; anything else is refused at RCPT (the hub is never an open relay).

Replies carry a reply address that names their conversation:
``help+c123.<token>@example.com``, where ``<token>`` is the first
``TOKEN_CHARS`` hex digits of HMAC-SHA256(``HUB_EMAIL_REPLY_SECRET``,
``"c123"``). A customer's answer to it comes back with the conversation id
the hub can trust (``conversation_hint``): nobody without the secret can
make a valid token for another conversation. Lower-case hex survives the
mail systems that fold local parts to one case.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from hub.errors import ConfigError, InvalidInput
from hub.inputs import check_email, parse_id

TOKEN_CHARS = 12  # 48 bits: a guess per SMTP transaction would take years
_CONVERSATION_TAG = re.compile(r"c([0-9]{1,19})\.([0-9a-f]{" + str(TOKEN_CHARS) + "})")


@dataclass(frozen=True, slots=True)
class Mailbox:
    local: str  # lower-cased, without a +tag
    domain: str  # lower-cased

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


def split_address(address: str) -> tuple[str, str | None, str] | None:
    """``(local, tag, domain)`` of ``address``, lower-cased (``tag`` is what
    follows the first ``+``); None when it is not ``local@domain``."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain:
        return None
    base, plus, tag = local.lower().partition("+")
    return base, (tag if plus else None), domain.lower().rstrip(".")


class SupportAddresses:
    """What mail the hub takes in, and the reply address of a conversation."""

    def __init__(self, raw: str, secret: bytes) -> None:
        mailboxes: list[Mailbox] = []
        for item in raw.split(","):
            if not item.strip():
                continue
            try:
                address = check_email(item, "HUB_EMAIL_ADDRESSES")
            except InvalidInput as err:
                raise ConfigError(err.message) from err
            parts = split_address(address)
            if parts is None or parts[1] is not None:
                raise ConfigError("HUB_EMAIL_ADDRESSES: give support addresses without a +tag")
            mailboxes.append(Mailbox(parts[0], parts[2]))
        if not mailboxes:
            raise ConfigError("HUB_EMAIL_ADDRESSES names no address")
        self.mailboxes = tuple(dict.fromkeys(mailboxes))
        self._known = frozenset((m.local, m.domain) for m in self.mailboxes)
        self._secret = secret

    @property
    def primary(self) -> Mailbox:
        """The first address: the From of every reply."""
        return self.mailboxes[0]

    def accepts(self, address: str) -> bool:
        """Whether mail to ``address`` is for the hub (a support address or a +tag of one)."""
        parts = split_address(address)
        return parts is not None and (parts[0], parts[2]) in self._known

    def token(self, conversation_id: int) -> str:
        digest = hmac.new(self._secret, f"c{conversation_id}".encode(), hashlib.sha256).hexdigest()
        return digest[:TOKEN_CHARS]

    def reply_address(self, conversation_id: int) -> str:
        """``local+c<id>.<token>@domain`` of the primary address."""
        mailbox = self.primary
        return f"{mailbox.local}+c{conversation_id}.{self.token(conversation_id)}@{mailbox.domain}"

    def conversation_hint(self, addresses: Iterable[str]) -> int | None:
        """The conversation named by the first reply address among
        ``addresses`` whose token is genuine (constant-time compare); None
        when there is none. A forged or altered token names nothing."""
        for address in addresses:
            parts = split_address(address)
            if parts is None or parts[1] is None or (parts[0], parts[2]) not in self._known:
                continue
            match = _CONVERSATION_TAG.fullmatch(parts[1])
            if match is None:
                continue
            conversation_id = parse_id(match.group(1))
            if conversation_id is None:
                continue
            if hmac.compare_digest(self.token(conversation_id), match.group(2)):
                return conversation_id
        return None
