"""Every message text the knowledge base raises or logs, in one place."""

from __future__ import annotations

INVALID_ARTICLE_ID = (
    "article id {value!r} is invalid: use 1-100 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)
INVALID_COLLECTION = "collection name {value!r} is invalid: use 1-100 lowercase letters, digits, '-' or '_', starting with a letter or digit"
RESERVED_COLLECTION = "collection name {value!r} is reserved (it is a path of the help portal)"
EMPTY_QUERY = "the search query is empty"
QUERY_TOO_LONG = "the search query is longer than {limit} characters"
INVALID_K = "k must be an integer from 1 to {limit}, not {value!r}"
EMPTY_TITLE = "article {article_id!r} has no title"
TITLE_TOO_LONG = "article {article_id!r}: the title is longer than {limit} characters"
BODY_TOO_LONG = "article {article_id!r}: the body is longer than {limit} characters"
BAD_FRONT_MATTER = "article {article_id!r}: the front matter is not valid YAML: {reason}"
BAD_FIELD = "article {article_id!r}: front matter field {field!r} must be {expected}"
TOO_MANY_TAGS = "article {article_id!r}: at most {limit} tags"
TOO_MANY_QUESTIONS = "article {article_id!r}: at most {limit} questions"
NOT_A_DIRECTORY = "{path} is not a directory"
BAD_FILE_NAME = "file name {name!r} is not a valid article id"
NOT_UTF8 = "{path} is not UTF-8 text"
BAD_CHROMA_URL = "chroma_url {url!r} must look like http://host:port"
CHROMA_UNAVAILABLE = "the Chroma server at {url} cannot be reached: {reason}"
CHROMA_FAILED = "the vector store failed during {operation}: {reason}"
EMBEDDER_MISMATCH = (
    "collection {collection!r} was indexed with embedder {indexed}, but this knowledge base uses {current}: "
    "re-ingest the collection"
)
NOT_STARTED = "the knowledge base is not started: await kb.start() or use 'async with'"
MODEL_MISSING = "no sentence-transformers model at {path}"
