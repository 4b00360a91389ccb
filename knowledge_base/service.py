"""The knowledge base's public async facade.

Storage layout under ``data_dir``::

    articles/<collection>/<article_id>.md   the source of truth (``articles_dir`` overrides the root)
    chroma/                                 the embedded Chroma store (unless ``chroma_url`` is given)

The article folder of a collection is what the index mirrors. Articles written
through :meth:`KnowledgeBase.upsert_article` are saved there as Markdown with
front matter. :meth:`KnowledgeBase.ingest_dir` first copies a source folder's
files (byte for byte) into it - removing articles the source no longer has,
unless ``delete_missing=False`` - and then brings the index in line with the
folder. So a team may keep articles in git and ingest them, write them
through the API, or both; the folder under ``data_dir`` always shows what
the help centre serves, and :meth:`KnowledgeBase.reindex` re-syncs the index
after the folder was edited by hand.

Index sync: each chunk's Chroma metadata carries the article's hash (its
content, the embedder name and the chunker settings) and the chunk's own hash
(the embedded text and the embedder name). An article whose hash is unchanged
is skipped; a changed one has new or changed chunks embedded and upserted,
unchanged chunks relabelled without re-embedding, and chunks that no longer
exist deleted; an article that is gone has all its chunks deleted.

Concurrency: Chroma, sentence-transformers and file I/O run in the
knowledge base's own thread pool. Writes to one collection are serialised by
an asyncio lock; searches never wait for writes - they see the collection as
it was before the write until the write has finished. The BM25 index of a
collection lives in memory, is built on the first search and is rebuilt after
each write made through this object. Writes made by another process to a
shared Chroma server are not seen by this process' keyword index until
:meth:`KnowledgeBase.reindex`, a restart, or :meth:`KnowledgeBase.forget_keyword_index`:
a host running several processes sets ``before_search`` (awaited with the
collection before each search; it calls ``forget_keyword_index`` when another
process wrote) and ``after_write`` (awaited with the collection after each
finished write, still under the collection's write lock, so that it can tell
the other processes).

Warming (``warm=True``, the hub's ``HUB_KB_WARM``): after each write, each
load of a collection's index, and at a host's start-up (``start_warming``), a
background task embeds what the collection's first searches would - every
article's sentences and token vectors, into the caches the search reads - one
article at a time in the thread pool, and starting an article only while no
search (nor an embedding asked for a customer's message) is in flight: a warm
gives way to customers rather than competing with them for the CPU. Only a
collection that fits in half of each cache is warmed. ``warmed`` waits for it.

Why this module runs past ~400 lines: ``KnowledgeBase`` is the package's one
public facade, and its index bookkeeping (``_CollectionIndex``, the write lock
per collection, the keyword index kept in step with Chroma) is private to it;
splitting it would turn that private state into a second public surface.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import numpy as np

from knowledge_base import focus as focusing
from knowledge_base import messages
from knowledge_base.articles import (
    ArticleFolder,
    build_article,
    markdown_files,
    parse_article,
    validate_article_id,
    validate_article_id_for_file,
    validate_collection,
)
from knowledge_base.chunking import (
    CHUNKER_VERSION,
    DEFAULT_MAX_CHARS,
    HEADING_SEPARATOR,
    TEXT,
    Chunk,
    compose_embed_text,
    index_chunks,
)
from knowledge_base.coverage import TOKEN_CACHE_TOKENS, Idf, cached_query_tokens, cached_tokens
from knowledge_base.coverage import scorer as coverage_scorer
from knowledge_base.embeddings import Embedder, SentenceTransformerEmbedder, TokenEmbedder
from knowledge_base.errors import ArticleFormatError, IndexMismatch, InvalidInput, KnowledgeBaseError
from knowledge_base.excerpt import excerpt as best_excerpt
from knowledge_base.keyword import KeywordIndex, tokenize
from knowledge_base.models import Article, IngestReport, SearchResult
from knowledge_base.search import ChunkRecord, rank, sentence_texts
from knowledge_base.spelling import Speller, english, words_of
from knowledge_base.store import ChromaStore
from knowledge_base.urls import DEFAULT_COLLECTION
from knowledge_base.vector_cache import CACHE_SIZE, cached_embed, cached_query_embed

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_K = 50
MAX_QUERY_CHARS = 1000
EMBED_BATCH = 256
MIN_CANDIDATES = 60


@dataclass(frozen=True, slots=True)
class _IndexChange:
    upserted: list[ChunkRecord] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _CollectionIndex:
    """A collection's chunks in memory and their BM25 index; replaced, never mutated."""

    records: dict[str, ChunkRecord]
    tokens: dict[str, list[str]]
    order: list[str]
    keyword: KeywordIndex
    embedders: frozenset[str]
    # article id -> its text chunks in reading order: what a hit through a probe shows.
    texts: dict[str, list[ChunkRecord]]
    # article id -> its sentences (``sentence_texts``), split at its first search as a top
    # hit: a memo, not state (a new index starts empty), so a search does not split again.
    sentences: dict[str, list[str]] = field(default_factory=dict)
    # The collection's speller (its words and English): made by the write or load that built the
    # index (``KnowledgeBase._with_speller``), else at its first search; a memo too.
    spellers: list[Speller] = field(default_factory=list)
    # BM25's idf over the chunks' stems (``knowledge_base.coverage``): a memo made like the speller.
    idfs: list[Idf] = field(default_factory=list)

    def idf(self) -> Idf:
        if not self.idfs:
            self.idfs.append(Idf(self.tokens.values()))
        return self.idfs[0]

    def speller(self) -> Speller:
        if not self.spellers:
            self.spellers.append(Speller(words_of(_keyword_text(record) for record in self.records.values())))
        return self.spellers[0]

    def keyword_texts(self, article_id: str) -> list[str]:
        """The article's text chunks as BM25 and coverage read them (title, heading trail, text)."""
        return [_keyword_text(record) for record in self.texts.get(article_id) or ()]

    def sentences_of(self, article_id: str) -> list[str]:
        found = self.sentences.get(article_id)
        if found is None:
            found = self.sentences[article_id] = sentence_texts(self.texts.get(article_id) or ())
        return found

    @classmethod
    def build(
        cls, records: Mapping[str, ChunkRecord], tokens: Mapping[str, list[str]] | None = None
    ) -> _CollectionIndex:
        known = tokens or {}
        all_tokens = {
            chunk_id: known[chunk_id] if chunk_id in known else tokenize(_keyword_text(record))
            for chunk_id, record in records.items()
        }
        order = sorted(records)
        texts: dict[str, list[ChunkRecord]] = defaultdict(list)
        for record in records.values():
            if record.kind == TEXT:
                texts[record.article_id].append(record)
        for chunks in texts.values():
            chunks.sort(key=lambda record: record.position)
        return cls(
            records=dict(records),
            tokens=all_tokens,
            order=order,
            keyword=KeywordIndex.from_tokens([all_tokens[chunk_id] for chunk_id in order]),
            embedders=frozenset(record.embedder for record in records.values()),
            texts=dict(texts),
        )

    def apply(self, change: _IndexChange) -> _CollectionIndex:
        """A new index with the change applied; only changed chunks are tokenized again."""
        replaced = change.removed | {record.id for record in change.upserted}
        records = {chunk_id: record for chunk_id, record in self.records.items() if chunk_id not in change.removed}
        records.update((record.id, record) for record in change.upserted)
        tokens = {chunk_id: words for chunk_id, words in self.tokens.items() if chunk_id not in replaced}
        return _CollectionIndex.build(records, tokens)


def _keyword_text(record: ChunkRecord) -> str:
    if record.kind != TEXT:
        return record.text  # a probe's text already is its title, heading trail or question
    return compose_embed_text(record.title, (record.heading_path,), record.text)


# A warm (``KnowledgeBase.warm``) fills at most this share of each cache, and a collection
# that would need more is not warmed. A word piece is about four characters of English.
WARM_SHARE = 2
CHARS_PER_TOKEN = 4


def warm_plan(index: _CollectionIndex, tokens: bool) -> list[str] | None:
    """The articles a warm embeds, in order; None when the collection does not fit."""
    articles = sorted(index.texts)
    if tokens:
        chars = sum(len(text) for article_id in articles for text in index.keyword_texts(article_id))
        if chars > TOKEN_CACHE_TOKENS // WARM_SHARE * CHARS_PER_TOKEN:
            return None
    sentences = 0
    for article_id in articles:
        sentences += len(index.sentences_of(article_id))
        if sentences > CACHE_SIZE // WARM_SHARE:
            return None
    return articles


def _record_from(chunk_id: str, document: str, metadata: Mapping[str, Any]) -> ChunkRecord:
    return ChunkRecord(
        id=chunk_id,
        article_id=str(metadata.get("article_id", "")),
        title=str(metadata.get("title", "")),
        heading=str(metadata.get("heading", "")),
        anchor=str(metadata.get("anchor", "")),
        text=document,
        position=int(metadata.get("position", 0) or 0),
        heading_path=str(metadata.get("heading_path", "")),
        embedder=str(metadata.get("embedder", "")),
        kind=str(metadata.get("kind") or TEXT),
    )


class KnowledgeBase:
    """Articles in folders, chunks in Chroma, hybrid search over both."""

    def __init__(
        self,
        *,
        data_dir: Path,
        chroma_url: str | None = None,
        embedder: Embedder | None = None,
        articles_dir: Path | None = None,
        model_path: Path | None = None,
        chunk_max_chars: int = DEFAULT_MAX_CHARS,
        workers: int = 4,
        spelling: bool = True,
        focus: bool = True,
        coverage: bool = True,
        warm: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.chroma_url = chroma_url or None
        self.embedder: Embedder = embedder or SentenceTransformerEmbedder(model_path)
        self.articles = ArticleFolder(Path(articles_dir) if articles_dir else self.data_dir / "articles")
        self.chunk_max_chars = chunk_max_chars
        self._workers = workers
        # Correct a query's misspelt words before searching (``knowledge_base.spelling``).
        self.spelling = spelling
        # Leave out a message's greetings, thanks and sign-offs (``knowledge_base.focus``).
        self.focus = focus
        # Read how much of a question each of the first articles covers (``knowledge_base.coverage``),
        # when the embedder gives token vectors (checked once here, not at every search).
        self.coverage = coverage
        self._token_embedder = self.embedder if isinstance(self.embedder, TokenEmbedder) else None
        # Embed what a first search would, in the background, after each write or load of a
        # collection's index, and when the host asks (``start_warming``).
        self.warm = warm
        self._warming: dict[str, asyncio.Task[None]] = {}
        # Searches and embeddings for customers in flight; a warm waits for none (``_foreground``).
        self._in_flight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._executor: ThreadPoolExecutor | None = None
        self._store: ChromaStore | None = None
        self._indexes: dict[str, _CollectionIndex] = {}
        # Writes to a collection take its write lock; loading its keyword index
        # takes the load lock, so a first search never waits for a long ingest.
        # Each finished write bumps the version; a load that overlapped one is redone.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._load_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._versions: defaultdict[str, int] = defaultdict(int)
        # Hooks for a host that shares the index with other processes (see the module docstring).
        self.before_search: Callable[[str], Awaitable[None]] | None = None
        self.after_write: Callable[[str], Awaitable[None]] | None = None

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and load the embedding model (both in worker threads)."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="kb")
        self._in_flight = 0
        self._quiet = asyncio.Event()  # of this event loop, should a closed knowledge base start again in another
        self._quiet.set()
        try:
            self._store = await self._run(
                ChromaStore.open,
                path=None if self.chroma_url else self.data_dir / "chroma",
                url=self.chroma_url,
            )
            await self._run(self.embedder.load)
            if self.spelling:
                # The English dictionary loads (~1 s) while the first requests come in; a
                # search before it is ready waits for it.
                self._executor.submit(english)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        warming = list(self._warming.values())
        for task in warming:
            task.cancel()
        await asyncio.gather(*warming, return_exceptions=True)
        executor, self._executor = self._executor, None
        store, self._store = self._store, None
        self._indexes.clear()
        if executor is None:
            return
        if store is not None:
            await asyncio.get_running_loop().run_in_executor(executor, store.close)
        await asyncio.get_running_loop().run_in_executor(None, functools.partial(executor.shutdown, wait=True))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            raise KnowledgeBaseError(messages.NOT_STARTED)
        call = functools.partial(func, *args, **kwargs) if args or kwargs else func
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _foreground(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``_run`` for work a customer waits on: a warm embeds nothing new until none is in flight."""
        self._in_flight += 1
        self._quiet.clear()
        try:
            return await self._run(func, *args, **kwargs)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._quiet.set()

    @property
    def store(self) -> ChromaStore:
        if self._store is None:
            raise KnowledgeBaseError(messages.NOT_STARTED)
        return self._store

    # -- articles -------------------------------------------------------------------

    async def ingest_dir(
        self, path: Path, collection: str = DEFAULT_COLLECTION, *, delete_missing: bool = True
    ) -> IngestReport:
        """Copy ``path/*.md`` into the collection's folder and index the folder.

        With ``delete_missing`` (the default) articles absent from ``path`` are
        removed from the collection, so an empty folder empties it. Files that
        cannot be read are listed in ``report.skipped`` and leave the article
        they name as it was.
        """
        collection = validate_collection(collection)
        source = Path(path)
        if not source.is_dir():
            raise InvalidInput(messages.NOT_A_DIRECTORY.format(path=source))
        async with self._writing(collection):
            started = time.perf_counter()
            skipped = await self._run(self._mirror_sync, source, collection, delete_missing)
            report = await self._sync_collection(collection, skipped)
            report.seconds = time.perf_counter() - started
        log.info(
            "ingested %s into %r: %d added, %d updated, %d deleted, %d unchanged, %d chunks written",
            source,
            collection,
            len(report.added),
            len(report.updated),
            len(report.deleted),
            len(report.unchanged),
            report.chunks_written,
        )
        return report

    async def reindex(self, collection: str = DEFAULT_COLLECTION) -> IngestReport:
        """Bring the index in line with the collection's folder (after edits by hand)."""
        collection = validate_collection(collection)
        async with self._writing(collection):
            started = time.perf_counter()
            self._indexes.pop(collection, None)
            report = await self._sync_collection(collection, [])
            report.seconds = time.perf_counter() - started
        return report

    async def upsert_article(
        self,
        collection: str,
        article_id: str,
        *,
        title: str,
        body_markdown: str,
        tags: Sequence[str] = (),
        locale: str | None = None,
        product: str | None = None,
        category: str | None = None,
        questions: Sequence[str] = (),
    ) -> Article:
        """Write ``<article_id>.md`` into the collection's folder and index it."""
        collection = validate_collection(collection)
        article_id = validate_article_id(article_id)
        if isinstance(tags, str):
            raise InvalidInput(
                messages.BAD_FIELD.format(article_id=article_id, field="tags", expected="a list of words")
            )
        article = build_article(
            collection,
            article_id,
            title=title,
            body_markdown=body_markdown,
            tags=list(tags),
            locale=locale,
            product=product,
            category=category,
            questions=list(questions) if not isinstance(questions, str) else questions,
        )
        async with self._writing(collection):
            stored = await self._run(self.articles.write, article)
            _report, change = await self._run(self._index_sync, collection, [stored], only_article=article_id)
            await self._apply(collection, change)
        return stored

    async def delete_article(self, collection: str, article_id: str) -> bool:
        """Remove the article's file and chunks; False when there was neither."""
        collection = validate_collection(collection)
        article_id = validate_article_id(article_id)
        async with self._writing(collection):
            existed = await self._run(self.articles.delete, collection, article_id)
            report, change = await self._run(self._index_sync, collection, [], only_article=article_id)
            await self._apply(collection, change)
        return existed or bool(report.deleted)

    async def get_article(self, collection: str, article_id: str) -> Article | None:
        collection = validate_collection(collection)
        article_id = validate_article_id(article_id)
        try:
            return await self._run(self.articles.read, collection, article_id)
        except ArticleFormatError:
            log.warning("article %s/%s cannot be read", collection, article_id, exc_info=True)
            return None

    async def list_articles(self, collection: str) -> list[Article]:
        """The readable articles of a collection, by title."""
        collection = validate_collection(collection)
        articles, _ = await self._run(self.articles.read_all, collection)
        return sorted(articles, key=lambda article: (article.title.casefold(), article.id))

    async def list_collections(self) -> list[str]:
        folders = await self._run(self.articles.collections)
        indexed = await self._run(self.store.collections)
        return sorted(set(folders) | set(indexed))

    async def embed(self, texts: Sequence[str]) -> Any:
        """The knowledge base's embeddings of ``texts`` (normalised rows), computed in its thread pool."""
        return await self._foreground(self.embedder.embed_documents, list(texts))

    async def embed_query(self, text: str) -> Any:
        """The vector :meth:`search` uses for ``text`` as a query, from the same cache: embedding a
        customer's message for something else first (the hub's triage) costs the search nothing."""
        return await self._foreground(self._query_vector, " ".join(text.split()))

    def _query_vector(self, query: str) -> Any:
        queries = cached_query_embed(self.embedder)
        tokens = self._token_embedder if self.coverage else None
        if tokens is None or query in queries:
            return queries([query])[0]
        # Coverage will read its tokens: one forward pass gives both (``embed_query_tokens``).
        vector, token_vectors = tokens.embed_query_tokens(query)
        queries.put({query: np.asarray(vector, dtype=np.float32)})
        cached_query_tokens(tokens).put({query: token_vectors})
        return vector

    # -- search ---------------------------------------------------------------------

    async def search(
        self, query: str, k: int = 5, collection: str = DEFAULT_COLLECTION, *, excerpt: bool = False
    ) -> SearchResult:
        """The ``k`` best articles for ``query``, one hit each, and a confidence in [0, 1].

        With ``excerpt`` the top hit also carries the part of its text that
        answers (``knowledge_base.excerpt``), at the cost of embedding that
        chunk's sentences (kept in a cache by text).
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput(messages.EMPTY_QUERY)
        typed = query  # its sentences and lines are the focus's (knowledge_base.focus)
        query = " ".join(query.split())
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput(messages.QUERY_TOO_LONG.format(limit=MAX_QUERY_CHARS))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidInput(messages.INVALID_K.format(limit=MAX_K, value=k))
        collection = validate_collection(collection)
        if self.before_search is not None:
            await self.before_search(collection)
        index = self._indexes.get(collection) or await self._load_index(collection)
        if not index.records:
            return SearchResult(query=query, collection=collection, hits=[], confidence=0.0)
        if index.embedders - {self.embedder.name}:
            raise IndexMismatch(
                messages.EMBEDDER_MISMATCH.format(
                    collection=collection, indexed=", ".join(sorted(index.embedders)), current=self.embedder.name
                )
            )
        return await self._foreground(self._search_sync, typed, k, collection, index, excerpt)

    def _search_sync(
        self, typed: str, k: int, collection: str, index: _CollectionIndex, excerpt: bool = False
    ) -> SearchResult:
        candidates = min(max(MIN_CANDIDATES, 4 * k), len(index.records))
        asked = " ".join(typed.split())
        query = self._as_searched_sync(typed, collection, index)
        vector = self._query_vector(query)
        semantic = self.store.query(collection, vector, candidates)
        keyword = [(index.order[position], score) for position, score in index.keyword.search(query, candidates)]
        hits, confidence = rank(
            collection=collection,
            semantic=semantic,
            keyword=keyword,
            records=index.records,
            k=k,
            texts=index.texts,
            sentence_similarity=self._sentence_scorer(index, vector),
            coverage=self._coverage_scorer(index, query),
        )
        if excerpt and hits:
            top = hits[0]
            quote = best_excerpt(
                query,
                top.text,
                embed=cached_embed(self.embedder),
                query_vector=vector,
                context=f"{top.title}. {top.heading}" if top.heading != top.title else top.title,
            )
            hits[0] = dataclasses.replace(hits[0], excerpt=quote.text)
        return SearchResult(
            query=asked,
            collection=collection,
            hits=hits,
            confidence=confidence,
            corrected=query if query != asked else None,
        )

    async def as_searched(self, text: str, collection: str = DEFAULT_COLLECTION, *, edges: bool = True) -> str:
        """What a search for ``text`` searches: its misspelt words corrected, its greetings, thanks
        and sign-offs left out, whitespace collapsed; a message longer than a query may be
        (``MAX_QUERY_CHARS``: a long e-mail) read within that limit. The hub's urgency triage reads
        it too (``edges=False``: without splitting off an opening or closing typed onto the
        question unpunctuated, ``focus.edge_runs``), and the hub's bot searches it."""
        collection = validate_collection(collection)
        index = self._indexes.get(collection) or await self._load_index(collection)
        if not index.records:
            return focusing.clip(text, MAX_QUERY_CHARS)
        return await self._foreground(self._as_searched_sync, text, collection, index, edges)

    def _as_searched_sync(self, text: str, collection: str, index: _CollectionIndex, edges: bool = True) -> str:
        corrected = index.speller().correct(text) if self.spelling else text
        if self.focus:
            return self._focus(corrected, collection, edges=edges)
        return focusing.clip(corrected, MAX_QUERY_CHARS)

    def _focus(self, text: str, collection: str, *, edges: bool = True) -> str:
        """``text`` without its pleasantries and, when longer than a query may be, only the sentences
        closest to the articles that fit (``knowledge_base.focus``)."""
        sentences = focusing.parts(text)[: focusing.MAX_PARTS]
        pleasantries = np.asarray(cached_embed(self.embedder)(list(focusing.PLEASANTRIES)), dtype=np.float32)
        if edges:
            sentences = self._split_edges(sentences, collection, pleasantries)
        if len(sentences) < 2:
            return focusing.clip(" ".join(sentences), MAX_QUERY_CHARS)
        vectors = np.asarray(cached_query_embed(self.embedder)(sentences), dtype=np.float32)
        to_pleasantry = [float(v) for v in (vectors @ pleasantries.T).max(axis=1)]
        to_article = self.store.nearest(collection, vectors)
        kept = focusing.kept(sentences, to_pleasantry, to_article)
        return focusing.within([sentences[at] for at in kept], [to_article[at] for at in kept], MAX_QUERY_CHARS)

    def _split_edges(self, sentences: list[str], collection: str, pleasantries: np.ndarray) -> list[str]:
        """``sentences`` with an opening or closing that runs onto the question unpunctuated split
        off (``focus.edge_runs``): at each end, of the runs that are pleasantries (``SIMILAR``, and
        closer to one than to every chunk) and whose rest is about as close to the articles as the
        whole sentence was or closer (``REST_SLACK``), the longest."""
        runs = focusing.edge_runs(sentences)
        if not runs:
            return sentences
        texts = [focusing.run_text(sentences, run) for run in runs]
        vectors = np.asarray(cached_embed(self.embedder)([words for words, _ in texts]), dtype=np.float32)
        to_pleasantry = (vectors @ pleasantries.T).max(axis=1)
        likely = [i for i, similar in enumerate(to_pleasantry) if similar >= focusing.SIMILAR]
        if not likely:
            return sentences
        rests = np.asarray(cached_embed(self.embedder)([texts[i][1] for i in likely]), dtype=np.float32)
        whole = sorted({run[0] for run in runs})
        # The edge sentences as _focus (and, for one alone, the search) embeds them: from the query cache.
        wholes = np.asarray(cached_query_embed(self.embedder)([sentences[at] for at in whole]), dtype=np.float32)
        near = self.store.nearest(collection, np.vstack([vectors[likely], rests, wholes]))
        to_article, to_rest = near[: len(likely)], near[len(likely) : 2 * len(likely)]
        to_whole = dict(zip(whole, near[2 * len(likely) :], strict=True))
        found = [
            (abs(runs[i][1]), runs[i])
            for n, i in enumerate(likely)
            if to_pleasantry[i] > to_article[n] and to_rest[n] > to_whole[runs[i][0]] - focusing.REST_SLACK
        ]
        # At each end the longest ("Good evening team", not "Good evening"; "many thanks", not "thanks").
        chosen = [
            max(at_end)[1]
            for at_end in ([f for f in found if f[1][1] > 0], [f for f in found if f[1][1] < 0])
            if at_end
        ]
        return focusing.split_runs(sentences, chosen) if chosen else sentences

    def _sentence_scorer(self, index: _CollectionIndex, vector: Any) -> Callable[[str], float | None]:
        """An article's best sentence cosine to the query (the confidence's ``sentence``), its
        sentences' vectors cached by text like the excerpt's (which embeds the same texts)."""

        def best(article_id: str) -> float | None:
            sentences = index.sentences_of(article_id)
            if not sentences:
                return None
            vectors = cached_embed(self.embedder)(sentences)
            return float(np.max(vectors @ np.asarray(vector, dtype=np.float32)))

        return best

    def _coverage_scorer(
        self, index: _CollectionIndex, query: str
    ) -> Callable[[Sequence[ChunkRecord]], float | None] | None:
        """An article's coverage of the query (``knowledge_base.coverage``), None when off or the
        embedder gives no token vectors (the search then ranks and scores as without it)."""
        if not self.coverage or self._token_embedder is None:
            return None

        covered = coverage_scorer(self._token_embedder, query, index.idf())

        def scorer(chunks: Sequence[ChunkRecord]) -> float | None:
            return covered([_keyword_text(record) for record in chunks])

        return scorer

    # -- warming ----------------------------------------------------------------------

    def _warm_later(self, collection: str) -> None:
        """Start warming the collection (``warm``), in place of a warm of it still under way."""
        if not self.warm or self._executor is None:
            return
        previous = self._warming.pop(collection, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.get_running_loop().create_task(self._warm(collection), name=f"kb-warm:{collection}")
        self._warming[collection] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._warming.get(collection) is done:
                del self._warming[collection]

        task.add_done_callback(forget)

    def start_warming(self, collection: str = DEFAULT_COLLECTION) -> None:
        """Warm the collection in the background (with ``warm``), unless a warm of it is under way:
        what a host does at start-up for the collections it already has."""
        collection = validate_collection(collection)
        if collection not in self._warming:
            self._warm_later(collection)

    async def warmed(self, collection: str = DEFAULT_COLLECTION) -> None:
        """Wait for the collection's warm under way, if any (``warm``)."""
        collection = validate_collection(collection)
        # A warm that loads the index hands over to the warm that load starts: wait for that one too.
        while (task := self._warming.get(collection)) is not None:
            await asyncio.gather(task, return_exceptions=True)
            if self._warming.get(collection) is task:
                break

    async def _warm(self, collection: str) -> None:
        """Embed, one article at a time, what a search landing on it first would: its sentences
        (the confidence's sentence feature, the excerpt) and its chunks' token vectors (coverage),
        into the same caches; and first the focus's pleasantries, which every search reads.
        Only when the whole collection fits in half of each cache (``warm_plan``): a larger help
        centre would push out what its searches keep using. A newer index of the collection, or
        ``close``, stops it."""
        started = time.perf_counter()
        try:
            index = self._indexes.get(collection)
            if index is None:  # a write before any search: loading it starts the warm of what it loads
                await self._load_index(collection)
                return
            tokens = self._token_embedder if self.coverage else None
            plan = await self._run(warm_plan, index, tokens is not None)
            if plan is None:
                log.info("collection %r is too large to warm: its first searches embed as they go", collection)
                return
            if self.focus:  # what the focus compares every message's sentences with
                await self._run(cached_embed(self.embedder), list(focusing.PLEASANTRIES))
            for article_id in plan:
                # Customers first: under load (the bot's searches, the hub's triage) an article
                # warmed alongside them slowed searches past the bot's timeout.
                await self._quiet.wait()
                if self._indexes.get(collection) is not index or self._executor is None:
                    return
                await self._run(self._warm_article, index, article_id, tokens)
        except asyncio.CancelledError:
            raise
        except Exception:  # a warm is an optimisation: a search embeds what it finds missing
            log.warning("warming collection %r failed", collection, exc_info=True)
            return
        log.info("warmed collection %r: %d articles in %.1f s", collection, len(plan), time.perf_counter() - started)

    def _warm_article(self, index: _CollectionIndex, article_id: str, tokens: TokenEmbedder | None) -> None:
        sentences = index.sentences_of(article_id)
        if sentences:
            cached_embed(self.embedder)(sentences)
        if tokens is not None:
            texts = index.keyword_texts(article_id)
            if texts:
                cached_tokens(tokens)(texts)

    def forget_keyword_index(self, collection: str) -> None:
        """Drop the collection's keyword index (another process wrote to the
        shared store): the next search loads it again from the store."""
        self._indexes.pop(collection, None)
        self._versions[collection] += 1  # a load under way may predate that write: it loads again

    async def _load_index(self, collection: str) -> _CollectionIndex:
        async with self._load_locks[collection]:
            while (index := self._indexes.get(collection)) is None:
                version = self._versions[collection]
                loaded = await self._run(self._load_index_sync, collection)
                # A write still under way will patch this snapshot when it ends;
                # one that ended while we loaded may be missing from it: load again.
                if self._versions[collection] == version:
                    self._indexes[collection] = loaded
                    self._warm_later(collection)
            return index

    def _load_index_sync(self, collection: str) -> _CollectionIndex:
        records = {
            stored.id: _record_from(stored.id, stored.document, stored.metadata)
            for stored in self.store.chunks(collection)
        }
        log.debug("loaded %d chunks of %r into the keyword index", len(records), collection)
        return self._with_speller(_CollectionIndex.build(records))

    def _with_speller(self, index: _CollectionIndex) -> _CollectionIndex:
        """``index`` with its speller made (its words, ~0.1 s for a large help centre): a write or a
        load pays for it, in the thread pool, not the first search after it."""
        if self.spelling:
            index.speller()
        if self.coverage and self._token_embedder is not None:
            index.idf()
        return index

    # -- index sync (worker threads) ------------------------------------------------

    def _mirror_sync(self, source: Path, collection: str, delete_missing: bool) -> list[tuple[str, str]]:
        """Copy the source folder's articles into the collection's folder."""
        target = self.articles.ensure(collection)
        if source.resolve() == target.resolve():
            return []
        skipped: list[tuple[str, str]] = []
        present: set[str] = set()
        for path in markdown_files(source):
            try:
                article_id = validate_article_id_for_file(path.name)
            except ArticleFormatError as err:
                skipped.append((path.name, err.message))
                continue
            present.add(article_id)
            data = path.read_bytes()
            try:
                parse_article(data.decode("utf-8-sig"), collection=collection, article_id=article_id)
            except UnicodeDecodeError:
                skipped.append((path.name, messages.NOT_UTF8.format(path=path.name)))
                continue
            except ArticleFormatError as err:
                skipped.append((path.name, err.message))
                continue
            self.articles.write_bytes(collection, article_id, data)
        if delete_missing:
            for path in markdown_files(target):
                article_id = path.name.removesuffix(".md")
                if article_id not in present:
                    self.articles.delete(collection, article_id)
        return skipped

    async def _sync_collection(self, collection: str, skipped: list[tuple[str, str]]) -> IngestReport:
        articles, unreadable = await self._run(self.articles.read_all, collection)
        keep: set[str] = set()
        for name, _ in unreadable:
            try:
                keep.add(validate_article_id_for_file(name))
            except ArticleFormatError:
                pass
        report, change = await self._run(self._index_sync, collection, articles, keep=keep)
        known = {name for name, _ in skipped}
        report.skipped = skipped + [(name, reason) for name, reason in unreadable if name not in known]
        await self._apply(collection, change)
        return report

    @asynccontextmanager
    async def _writing(self, collection: str) -> AsyncIterator[None]:
        """The collection's write lock; a failed write drops the keyword index to reload it."""
        async with self._locks[collection]:
            try:
                yield
            except BaseException:
                self._indexes.pop(collection, None)
                self._versions[collection] += 1
                raise
            if self.after_write is not None:
                await self.after_write(collection)
        self._warm_later(collection)

    async def _apply(self, collection: str, change: _IndexChange) -> None:
        self._versions[collection] += 1
        index = self._indexes.get(collection)
        if index is None or (not change.upserted and not change.removed):
            return
        self._indexes[collection] = await self._run(lambda: self._with_speller(index.apply(change)))

    def _article_hash(self, article: Article) -> str:
        key = f"{self.embedder.name}|{CHUNKER_VERSION}|{self.chunk_max_chars}|{article.content_hash}"
        return hashlib.sha256(key.encode()).hexdigest()

    def _metadata(self, article: Article, chunk: Chunk, article_hash: str) -> dict[str, Any]:
        return {
            "article_id": article.id,
            "article_hash": article_hash,
            "chunk_hash": chunk.digest(self.embedder.name),
            "embedder": self.embedder.name,
            "title": article.title,
            "heading": chunk.heading,
            "heading_path": HEADING_SEPARATOR.join(chunk.heading_path),
            "anchor": chunk.anchor,
            "position": chunk.position,
            "kind": chunk.kind,
            "tags": ",".join(article.tags),
            "locale": article.locale or "",
            "product": article.product or "",
            "category": article.category or "",
        }

    def _index_sync(
        self,
        collection: str,
        articles: Sequence[Article],
        *,
        only_article: str | None = None,
        keep: Iterable[str] = (),
    ) -> tuple[IngestReport, _IndexChange]:
        """Make the index hold exactly ``articles`` (of the collection, or of one id)."""
        report = IngestReport(collection=collection)
        existing: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for chunk_id, metadata in self.store.metadatas(collection, article_id=only_article).items():
            existing[str(metadata.get("article_id", ""))][chunk_id] = metadata

        to_embed: list[tuple[Chunk, dict[str, Any]]] = []
        to_relabel: list[tuple[Chunk, dict[str, Any]]] = []
        to_delete: list[str] = []
        for article in articles:
            article_hash = self._article_hash(article)
            old = existing.pop(article.id, {})
            if old and all(meta.get("article_hash") == article_hash for meta in old.values()):
                report.unchanged.append(article.id)
                continue
            (report.updated if old else report.added).append(article.id)
            chunks = index_chunks(article, max_chars=self.chunk_max_chars)
            new_ids = set()
            for chunk in chunks:
                new_ids.add(chunk.id)
                metadata = self._metadata(article, chunk, article_hash)
                previous = old.get(chunk.id)
                if previous is not None and previous.get("chunk_hash") == metadata["chunk_hash"]:
                    to_relabel.append((chunk, metadata))
                else:
                    to_embed.append((chunk, metadata))
            to_delete.extend(chunk_id for chunk_id in old if chunk_id not in new_ids)
        keep = set(keep)
        for article_id, old in existing.items():
            if article_id in keep:
                continue
            report.deleted.append(article_id)
            to_delete.extend(old)

        change = _IndexChange()
        for start in range(0, len(to_embed), EMBED_BATCH):
            batch = to_embed[start : start + EMBED_BATCH]
            vectors = self.embedder.embed_documents([chunk.embed_text for chunk, _ in batch])
            self.store.upsert(
                collection,
                [chunk.id for chunk, _ in batch],
                vectors,
                [chunk.text for chunk, _ in batch],
                [metadata for _, metadata in batch],
            )
            report.chunks_written += len(batch)
            log.debug("embedded %d/%d chunks of %r", report.chunks_written, len(to_embed), collection)
        if to_relabel:
            self.store.update_metadata(
                collection, [chunk.id for chunk, _ in to_relabel], [metadata for _, metadata in to_relabel]
            )
            report.chunks_relabelled = len(to_relabel)
        # Stale chunks go last: an interrupted sync leaves mixed hashes and is redone next time.
        self.store.delete(collection, to_delete)
        report.chunks_deleted = len(to_delete)
        change.removed.update(to_delete)
        change.upserted.extend(
            _record_from(chunk.id, chunk.text, metadata) for chunk, metadata in [*to_embed, *to_relabel]
        )
        return report, change
