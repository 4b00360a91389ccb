"""The vector store: Chroma, embedded (PersistentClient) or a server (HttpClient).

Every method is synchronous - Chroma's clients are - and the service calls
them from its executor. Vectors are always passed in: no Chroma embedding
function is ever configured, so nothing is downloaded. Each knowledge-base
collection ``name`` is the Chroma collection ``kb_{name}_v1`` (cosine space);
other collections on a shared server are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import urlsplit

import numpy as np

from knowledge_base import messages
from knowledge_base.errors import InvalidInput, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import Where

log = logging.getLogger(__name__)

CHROMA_PREFIX = "kb_"
CHROMA_SUFFIX = "_v1"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredChunk:
    id: str
    document: str
    metadata: dict[str, Any]


def _included(values: list[T] | None, field: str) -> list[T]:
    """A result field that was asked for in ``include`` (Chroma types every field as optional)."""
    if values is None:
        raise StoreError(messages.CHROMA_FAILED.format(operation="get", reason=f"no {field} in the result"))
    return values


def chroma_name(collection: str) -> str:
    return f"{CHROMA_PREFIX}{collection}{CHROMA_SUFFIX}"


def _settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


class ChromaStore:
    """Chunks with vectors, documents and flat metadata, per collection."""

    def __init__(self, client: Any, *, description: str) -> None:
        self._client = client
        self.description = description
        self._collections: dict[str, Collection] = {}
        self._max_batch = 1000
        try:
            self._max_batch = max(1, min(5000, int(client.get_max_batch_size())))
        except Exception:
            pass

    @classmethod
    def open(cls, *, path: Path | None = None, url: str | None = None) -> ChromaStore:
        import chromadb

        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInput(messages.BAD_CHROMA_URL.format(url=url))
            port = parts.port or (443 if parts.scheme == "https" else 8000)
            try:
                client = chromadb.HttpClient(
                    host=parts.hostname, port=port, ssl=parts.scheme == "https", settings=_settings()
                )
                client.heartbeat()
            except Exception as err:
                raise StoreUnavailable(messages.CHROMA_UNAVAILABLE.format(url=url, reason=err)) from err
            return cls(client, description=url)
        assert path is not None
        path.mkdir(parents=True, exist_ok=True)
        return cls(chromadb.PersistentClient(path=str(path), settings=_settings()), description=str(path))

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (InvalidInput, StoreError, StoreUnavailable):
            raise
        except (ConnectionError, TimeoutError, OSError) as err:
            raise StoreUnavailable(messages.CHROMA_UNAVAILABLE.format(url=self.description, reason=err)) from err
        except Exception as err:
            if type(err).__module__.startswith(("httpx", "httpcore")):
                raise StoreUnavailable(messages.CHROMA_UNAVAILABLE.format(url=self.description, reason=err)) from err
            raise StoreError(messages.CHROMA_FAILED.format(operation=operation, reason=err)) from err

    def _call(self, operation: str, func: Callable[[], T]) -> T:
        with self._errors(operation):
            return func()

    @overload
    def _collection(self, collection: str, *, create: Literal[True]) -> Collection: ...
    @overload
    def _collection(self, collection: str, *, create: Literal[False]) -> Collection | None: ...
    def _collection(self, collection: str, *, create: bool) -> Collection | None:
        cached = self._collections.get(collection)
        if cached is not None:
            return cached
        name = chroma_name(collection)
        handle: Collection
        with self._errors("open collection"):
            if create:
                handle = self._client.get_or_create_collection(
                    name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
                )
            else:
                if name not in self._names():
                    return None
                handle = self._client.get_collection(name, embedding_function=None)
        self._collections[collection] = handle
        return handle

    def _names(self) -> set[str]:
        names = set()
        for item in self._client.list_collections():
            names.add(item if isinstance(item, str) else item.name)
        return names

    def collections(self) -> list[str]:
        with self._errors("list collections"):
            names = self._names()
        return sorted(
            name[len(CHROMA_PREFIX) : -len(CHROMA_SUFFIX)]
            for name in names
            if name.startswith(CHROMA_PREFIX) and name.endswith(CHROMA_SUFFIX)
        )

    def metadatas(self, collection: str, *, article_id: str | None = None) -> dict[str, dict[str, Any]]:
        """chunk id -> metadata, for the whole collection or one article."""
        handle = self._collection(collection, create=False)
        if handle is None:
            return {}
        where: Where | None = {"article_id": article_id} if article_id is not None else None
        result = self._call("get", lambda: handle.get(where=where, include=["metadatas"]))
        metadatas = _included(result["metadatas"], "metadatas")
        return {chunk_id: dict(metadata) for chunk_id, metadata in zip(result["ids"], metadatas, strict=True)}

    def chunks(self, collection: str) -> list[StoredChunk]:
        """Every chunk's document and metadata (for the keyword index)."""
        handle = self._collection(collection, create=False)
        if handle is None:
            return []
        result = self._call("get", lambda: handle.get(include=["documents", "metadatas"]))
        return [
            StoredChunk(id=chunk_id, document=document or "", metadata=dict(metadata or {}))
            for chunk_id, document, metadata in zip(
                result["ids"],
                _included(result["documents"], "documents"),
                _included(result["metadatas"], "metadatas"),
                strict=True,
            )
        ]

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        embeddings: np.ndarray,
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        handle = self._collection(collection, create=True)
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            self._call(
                "upsert",
                partial(
                    handle.upsert,
                    ids=list(ids[start:end]),
                    embeddings=embeddings[start:end],
                    documents=list(documents[start:end]),
                    metadatas=list(metadatas[start:end]),
                ),
            )

    def update_metadata(self, collection: str, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        handle = self._collection(collection, create=True)
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            self._call("update", partial(handle.update, ids=list(ids[start:end]), metadatas=list(metadatas[start:end])))

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        handle = self._collection(collection, create=False)
        if handle is None:
            return
        for start in range(0, len(ids), self._max_batch):
            batch = list(ids[start : start + self._max_batch])
            self._call("delete", partial(handle.delete, ids=batch))

    def query(self, collection: str, embedding: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``n`` nearest chunks, best first."""
        handle = self._collection(collection, create=False)
        if handle is None or n <= 0:
            return []
        result = self._call(
            "query",
            lambda: handle.query(query_embeddings=embedding.reshape(1, -1), n_results=n, include=["distances"]),
        )
        return [
            (chunk_id, 1.0 - float(distance))
            for chunk_id, distance in zip(result["ids"][0], _included(result["distances"], "distances")[0], strict=True)
        ]

    def nearest(self, collection: str, embeddings: np.ndarray) -> list[float]:
        """Each row's cosine similarity to its nearest chunk (0.0 in an empty collection), in one query."""
        handle = self._collection(collection, create=False)
        if handle is None or not len(embeddings):
            return [0.0] * len(embeddings)
        result = self._call(
            "query", lambda: handle.query(query_embeddings=embeddings, n_results=1, include=["distances"])
        )
        return [1.0 - float(found[0]) if found else 0.0 for found in _included(result["distances"], "distances")]

    def handle(self, collection: str) -> Collection | None:
        """The raw Chroma collection, for benchmarks and diagnostics only."""
        return self._collection(collection, create=False)

    def count(self, collection: str) -> int:
        handle = self._collection(collection, create=False)
        return 0 if handle is None else int(self._call("count", handle.count))

    def drop(self, collection: str) -> None:
        self._collections.pop(collection, None)
        if chroma_name(collection) in self._call("list collections", self._names):
            self._call("delete collection", lambda: self._client.delete_collection(chroma_name(collection)))

    def close(self) -> None:
        self._collections.clear()
        close = getattr(self._client, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.debug("closing the Chroma client failed", exc_info=True)
