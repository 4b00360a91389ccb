"""The help portal's URL scheme, shared by search hits and the portal.

The portal is mounted at ``/help``. The ``default`` collection lives at the
root of it, every other collection under its own name::

    /help/articles/{article_id}#{anchor}                 collection "default"
    /help/{collection}/articles/{article_id}#{anchor}    any other collection

An empty anchor (the text before an article's first heading) gives no
fragment. Collection names that are portal paths are reserved.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

PORTAL_PREFIX = "/help"
DEFAULT_COLLECTION = "default"
RESERVED_COLLECTION_NAMES = frozenset({"articles", "search", "static", "categories"})


def collection_root(collection: str) -> str:
    if collection == DEFAULT_COLLECTION:
        return PORTAL_PREFIX
    return f"{PORTAL_PREFIX}/{collection}"


def article_url(collection: str, article_id: str, anchor: str = "") -> str:
    url = f"{collection_root(collection)}/articles/{article_id}"
    if anchor:
        url += "#" + quote(anchor, safe="-_")
    return url


def search_url(collection: str, query: str) -> str:
    return f"{collection_root(collection)}/search?" + urlencode({"q": query})


def category_url(collection: str, category_slug: str) -> str:
    return f"{collection_root(collection)}/categories/{category_slug}"
