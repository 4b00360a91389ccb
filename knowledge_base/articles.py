"""Markdown article files: validation, parsing, writing, and one folder per collection.

An article is ``<id>.md``: YAML front matter (``title`` required; ``tags``,
``locale``, ``product``, ``category`` and ``questions`` - example questions
the article answers - optional; other keys are ignored and kept in the file)
followed by the Markdown body. Everything here is
synchronous file work; the service runs it in its executor.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from knowledge_base import messages
from knowledge_base.errors import ArticleFormatError, InvalidInput
from knowledge_base.models import Article
from knowledge_base.urls import RESERVED_COLLECTION_NAMES

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 200_000
MAX_TAGS = 30
MAX_FIELD_CHARS = 100
MAX_QUESTIONS = 50
MAX_QUESTION_CHARS = 300
ARTICLE_SUFFIX = ".md"


def validate_article_id(value: object) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(messages.INVALID_ARTICLE_ID.format(value=value))
    return value


def validate_collection(value: object) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(messages.INVALID_COLLECTION.format(value=value))
    if value in RESERVED_COLLECTION_NAMES:
        raise InvalidInput(messages.RESERVED_COLLECTION.format(value=value))
    return value


def content_hash(
    *,
    title: str,
    body_markdown: str,
    tags: Iterable[str],
    locale: str | None,
    product: str | None,
    category: str | None,
    questions: Iterable[str] = (),
) -> str:
    """A stable digest of everything that is indexed about an article."""
    fields: list[Any] = [title, body_markdown, list(tags), locale, product, category]
    questions = list(questions)
    if questions:  # articles without questions keep the digest they had before
        fields.append(questions)
    canonical = json.dumps(
        fields,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_article(
    collection: str,
    article_id: str,
    *,
    title: object,
    body_markdown: object,
    tags: object = (),
    locale: object = None,
    product: object = None,
    category: object = None,
    questions: object = (),
    updated_at: datetime | None = None,
) -> Article:
    """Validate and normalise the fields of one article; raise ArticleFormatError."""
    if isinstance(title, (int, float)) and not isinstance(title, bool):
        title = str(title)
    if not isinstance(title, str) or not title.strip():
        raise ArticleFormatError(messages.EMPTY_TITLE.format(article_id=article_id))
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_CHARS:
        raise ArticleFormatError(messages.TITLE_TOO_LONG.format(article_id=article_id, limit=MAX_TITLE_CHARS))
    if not isinstance(body_markdown, str):
        raise ArticleFormatError(
            messages.BAD_FIELD.format(article_id=article_id, field="body_markdown", expected="text")
        )
    body = body_markdown.replace("\r\n", "\n").strip("\n") + "\n"
    if len(body) > MAX_BODY_CHARS:
        raise ArticleFormatError(messages.BODY_TOO_LONG.format(article_id=article_id, limit=MAX_BODY_CHARS))
    normalised_tags = _normalise_tags(article_id, tags)
    normalised_questions = _normalise_questions(article_id, questions)
    extra = {
        "locale": _optional_text(article_id, "locale", locale),
        "product": _optional_text(article_id, "product", product),
        "category": _optional_text(article_id, "category", category),
    }
    return Article(
        id=article_id,
        collection=collection,
        title=title,
        body_markdown=body,
        tags=normalised_tags,
        **extra,
        questions=normalised_questions,
        content_hash=content_hash(
            title=title, body_markdown=body, tags=normalised_tags, questions=normalised_questions, **extra
        ),
        updated_at=updated_at,
    )


def _normalise_questions(article_id: str, questions: object) -> tuple[str, ...]:
    if questions is None:
        return ()
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, (list, tuple)):
        raise ArticleFormatError(
            messages.BAD_FIELD.format(article_id=article_id, field="questions", expected="a list of questions")
        )
    result: list[str] = []
    seen: set[str] = set()
    for question in questions:
        if not isinstance(question, str) or len(question.strip()) > MAX_QUESTION_CHARS:
            raise ArticleFormatError(
                messages.BAD_FIELD.format(
                    article_id=article_id,
                    field="questions",
                    expected=f"a list of questions of at most {MAX_QUESTION_CHARS} characters",
                )
            )
        question = " ".join(question.split())
        if question and question.casefold() not in seen:
            seen.add(question.casefold())
            result.append(question)
    if len(result) > MAX_QUESTIONS:
        raise ArticleFormatError(messages.TOO_MANY_QUESTIONS.format(article_id=article_id, limit=MAX_QUESTIONS))
    return tuple(result)


def _normalise_tags(article_id: str, tags: object) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, (list, tuple)):
        raise ArticleFormatError(
            messages.BAD_FIELD.format(article_id=article_id, field="tags", expected="a list of words")
        )
    result: list[str] = []
    for tag in tags:
        if isinstance(tag, (int, float)) and not isinstance(tag, bool):
            tag = str(tag)
        if not isinstance(tag, str) or len(tag.strip()) > MAX_FIELD_CHARS:
            raise ArticleFormatError(
                messages.BAD_FIELD.format(article_id=article_id, field="tags", expected="a list of short words")
            )
        tag = " ".join(tag.split())
        if tag and tag not in result:
            result.append(tag)
    if len(result) > MAX_TAGS:
        raise ArticleFormatError(messages.TOO_MANY_TAGS.format(article_id=article_id, limit=MAX_TAGS))
    return tuple(result)


def _optional_text(article_id: str, field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise ArticleFormatError(
            messages.BAD_FIELD.format(
                article_id=article_id, field=field, expected=f"text of at most {MAX_FIELD_CHARS} characters"
            )
        )
    value = " ".join(value.split())
    return value or None


def parse_article(text: str, *, collection: str, article_id: str, updated_at: datetime | None = None) -> Article:
    """Parse the text of ``<article_id>.md``; raise ArticleFormatError."""
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArticleFormatError(messages.BAD_FRONT_MATTER.format(article_id=article_id, reason=reason)) from err
    meta: dict[str, Any] = dict(post.metadata)
    return build_article(
        collection,
        article_id,
        title=meta.get("title"),
        body_markdown=post.content,
        tags=meta.get("tags", ()),
        locale=meta.get("locale"),
        product=meta.get("product"),
        category=meta.get("category"),
        questions=meta.get("questions", ()),
        updated_at=updated_at,
    )


def render_article_file(article: Article) -> str:
    """The text of ``<id>.md`` for an article written through the API."""
    meta: dict[str, Any] = {"title": article.title}
    if article.tags:
        meta["tags"] = list(article.tags)
    for key in ("category", "locale", "product"):
        value = getattr(article, key)
        if value is not None:
            meta[key] = value
    if article.questions:
        meta["questions"] = list(article.questions)
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n\n{article.body_markdown}"


def read_article_file(path: Path, *, collection: str) -> Article:
    article_id = path.name.removesuffix(ARTICLE_SUFFIX)
    validate_article_id_for_file(path.name)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ArticleFormatError(messages.NOT_UTF8.format(path=path)) from err
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return parse_article(text, collection=collection, article_id=article_id, updated_at=mtime)


def validate_article_id_for_file(name: str) -> str:
    article_id = name.removesuffix(ARTICLE_SUFFIX)
    if not name.endswith(ARTICLE_SUFFIX) or not NAME_PATTERN.fullmatch(article_id):
        raise ArticleFormatError(messages.BAD_FILE_NAME.format(name=name))
    return article_id


def markdown_files(folder: Path) -> list[Path]:
    """The ``*.md`` files directly in ``folder``, by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        (entry for entry in folder.iterdir() if entry.suffix == ARTICLE_SUFFIX and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class ArticleFolder:
    """``<root>/<collection>/<id>.md``: the source of truth for what is indexed.

    Parsed articles are cached by (mtime, size) so listing a large collection
    for every portal page does not re-parse every file. Thread-safe.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[Path, tuple[tuple[int, int], Article]] = {}
        self._lock = threading.Lock()

    def folder(self, collection: str) -> Path:
        return self.root / collection

    def path(self, collection: str, article_id: str) -> Path:
        return self.folder(collection) / f"{article_id}{ARTICLE_SUFFIX}"

    def collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and NAME_PATTERN.fullmatch(entry.name) and entry.name not in RESERVED_COLLECTION_NAMES
        )

    def read(self, collection: str, article_id: str) -> Article | None:
        path = self.path(collection, article_id)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return self._read_cached(path, collection, (stat.st_mtime_ns, stat.st_size))

    def read_all(self, collection: str) -> tuple[list[Article], list[tuple[str, str]]]:
        """Every readable article of a collection, and (file, reason) for the others."""
        articles: list[Article] = []
        skipped: list[tuple[str, str]] = []
        for path in markdown_files(self.folder(collection)):
            try:
                stat = path.stat()
                articles.append(self._read_cached(path, collection, (stat.st_mtime_ns, stat.st_size)))
            except (ArticleFormatError, OSError) as err:
                skipped.append((path.name, getattr(err, "message", str(err))))
        return articles, skipped

    def _read_cached(self, path: Path, collection: str, key: tuple[int, int]) -> Article:
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        article = read_article_file(path, collection=collection)
        with self._lock:
            self._cache[path] = (key, article)
        return article

    def write(self, article: Article) -> Article:
        path = self.path(article.collection, article.id)
        write_atomically(path, render_article_file(article).encode())
        return self.read(article.collection, article.id) or article

    def write_bytes(self, collection: str, article_id: str, data: bytes) -> bool:
        """Write a copied source file; False when the same bytes are already there."""
        path = self.path(collection, article_id)
        try:
            if path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        write_atomically(path, data)
        return True

    def delete(self, collection: str, article_id: str) -> bool:
        path = self.path(collection, article_id)
        with self._lock:
            self._cache.pop(path, None)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def ensure(self, collection: str) -> Path:
        folder = self.folder(collection)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
