"""What the portal tells its host about searches: the search-log contract.

The host (the hub) keeps a log of searches to find the questions the help
centre fails to answer; the portal only reports them, through a
:class:`SearchSink` it is given, and knows nothing of where they go.

Nothing about the person is reported: no IP, no cookie, no account. A
search carries a random ``token`` put in its result links (``?s=``), so
that the article opened from the results can be tied to the search, and to
nothing else.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

TOKEN_PARAM = "s"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,32}$")


def new_token() -> str:
    return secrets.token_urlsafe(12)  # 16 characters


def valid_token(token: str | None) -> bool:
    return bool(token) and _TOKEN.match(token or "") is not None


@dataclass(frozen=True, slots=True)
class PortalSearch:
    """One search of the portal: the query as searched (whitespace collapsed),
    how sure the search is of its best hit, which article that is (None:
    nothing shown) and how many results the page listed."""

    token: str
    collection: str
    query: str
    confidence: float
    article_id: str | None
    results: int


@dataclass(frozen=True, slots=True)
class PortalClick:
    """An article opened from the results of the search ``token``."""

    token: str
    collection: str
    article_id: str


@runtime_checkable
class SearchSink(Protocol):
    """Where the portal reports searches and clicks.

    Both are called on the event loop, in the request's handler: they MUST
    NOT block or raise (queue the record and return); losing one is
    acceptable, slowing a page is not.
    """

    def searched(self, search: PortalSearch) -> None: ...

    def clicked(self, click: PortalClick) -> None: ...
