"""Coverage: how much of a question an article covers, word by word (knowledge_base/coverage.py)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge_base import HashingEmbedder, KnowledgeBase, SentenceTransformerEmbedder
from knowledge_base import search as ranking
from knowledge_base.coverage import Idf, TokenCache, content_words, coverage
from knowledge_base.embeddings import TokenEmbedder, TokenVectors
from knowledge_base.search import ChunkRecord, rank_with_evidence


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _tokens(pieces: list[str], rows: list[np.ndarray]) -> TokenVectors:
    """Pieces marked as WordPiece marks them: "##co" continues the word before it."""
    return TokenVectors(
        tuple(piece.removeprefix("##") for piece in pieces),
        tuple(not piece.startswith("##") for piece in pieces),
        np.stack(rows).astype(np.float16),
    )


def test_idf_weighs_a_rare_stem_more_and_an_unseen_one_most() -> None:
    idf = Idf([["refund", "card"], ["refund", "deliveri"], ["refund", "bitcoin"], ["refund"]])
    assert idf.size == 4
    assert idf("refund") < idf("card") == idf("bitcoin") < idf("never-seen")
    assert idf("refund") == pytest.approx(math.log(1 + 0.5 / 4.5))


def test_content_words_join_a_word_s_pieces_and_leave_out_stop_words() -> None:
    pieces = ["can", "i", "pay", "with", "bit", "##co", "##in", "?"]
    words = content_words(_tokens(pieces, [_unit(1, 0)] * len(pieces)))
    assert words == [("pay", [2]), ("bitcoin", [4, 5, 6])]


def test_coverage_is_the_idf_weighted_mean_of_each_word_s_best_cosine() -> None:
    pay, coin, other = _unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)
    question = _tokens(["pay", "bitcoin"], [pay, coin])
    weights = {"pay": 1.0, "bitcoin": 3.0}
    both = coverage(question, [_tokens(["pay"], [pay]), _tokens(["bitcoin", "x"], [coin, other])], weights.__getitem__)
    assert both == pytest.approx(1.0, abs=1e-3)
    # The article only says "pay": bitcoin's best cosine is 0, and bitcoin weighs three times as much.
    only_pay = coverage(question, [_tokens(["pay", "x"], [pay, other])], weights.__getitem__)
    assert only_pay == pytest.approx(0.25, abs=1e-3)
    halfway = _unit(1, 1, 0)  # cosine 0.707 to both words
    assert coverage(question, [_tokens(["y"], [halfway])], weights.__getitem__) == pytest.approx(0.707, abs=1e-3)
    # Nothing to read: a question of stop words only, or an article without tokens.
    assert coverage(_tokens(["with", "?"], [pay, coin]), [_tokens(["pay"], [pay])], weights.__getitem__) is None
    assert coverage(question, [], weights.__getitem__) is None


def test_the_token_cache_embeds_each_text_once_and_keeps_at_most_its_budget() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> list[TokenVectors]:
        calls.append(list(texts))
        return [_tokens(text.split(), [_unit(1, 0)] * len(text.split())) for text in texts]

    cache = TokenCache(embed, max_tokens=5)
    first = cache(["a b", "c d e"])
    assert [t.pieces for t in first] == [("a", "b"), ("c", "d", "e")]
    assert cache(["c d e", "a b"])[0].pieces == ("c", "d", "e")
    assert calls == [["a b", "c d e"]]
    cache(["f g"])  # 7 tokens > 5: the least recently used ("c d e" was read after "a b") goes
    assert len(cache) == 2
    cache(["a b"])
    cache(["c d e"])
    assert calls == [["a b", "c d e"], ["f g"], ["c d e"]]


def _records() -> dict[str, ChunkRecord]:
    return {
        f"{a}#0": ChunkRecord(id=f"{a}#0", article_id=a, title=a, heading=a, anchor="", text=f"{a} text", position=0)
        for a in ("first", "second", "third", "fourth")
    }


def test_coverage_reorders_the_first_three_articles_and_feeds_the_confidence() -> None:
    records = _records()
    semantic = [("first#0", 0.80), ("second#0", 0.78), ("third#0", 0.70), ("fourth#0", 0.69)]
    covered = {"first": 0.40, "second": 0.70, "third": 0.55, "fourth": 0.99}
    asked: list[str] = []

    def scorer(chunks: Sequence[ChunkRecord]) -> float | None:
        (article_id,) = {chunk.article_id for chunk in chunks}
        asked.append(article_id)
        return covered[article_id]

    hits, evidence = rank_with_evidence(
        collection="c", semantic=semantic, keyword=[], records=records, k=4, coverage=scorer
    )
    # At COVERAGE_WEIGHT 0.25: second 0.78/1.2 + 0.175 beats first 0.80/1.2 + 0.10 and third
    # 0.70/1.2 + 0.1375; fourth is beyond the first three and stays last.
    assert ranking.COVERAGE_WEIGHT == 0.25
    assert [hit.article_id for hit in hits] == ["second", "first", "third", "fourth"]
    assert sorted(asked) == ["first", "second", "third"]
    assert evidence is not None
    assert evidence.coverage == pytest.approx(0.70)
    assert evidence.coverage_lead == pytest.approx(0.15)
    assert evidence.similarity == pytest.approx(0.78)
    assert not evidence.agreement  # the vectors put "first" first
    # The confidence model is the one without coverage: the new top's share of the fused scores is low.
    assert evidence.share < 0.5
    expected = ranking.confidence(0.78, share=evidence.share, agreement=False, sentence=None)
    assert evidence.confidence() == pytest.approx(expected)

    plain_hits, plain = rank_with_evidence(collection="c", semantic=semantic, keyword=[], records=records, k=4)
    assert [hit.article_id for hit in plain_hits] == ["first", "second", "third", "fourth"]
    assert plain is not None and plain.coverage is None and plain.coverage_lead is None
    assert plain.confidence() == pytest.approx(
        ranking.confidence(plain.similarity, share=plain.share, agreement=plain.agreement)
    )
    # An article among the first three without text: the fused order and the model before stand.
    covered["third"] = None  # type: ignore[assignment]
    kept, unread = rank_with_evidence(
        collection="c", semantic=semantic, keyword=[], records=records, k=4, coverage=scorer
    )
    assert [hit.article_id for hit in kept] == ["first", "second", "third", "fourth"]
    assert unread is not None and unread.coverage_lead is None


def test_coverage_reads_an_article_through_the_chunks_the_rankers_returned() -> None:
    def chunk(article_id: str, n: int, kind: str = ranking.TEXT) -> ChunkRecord:
        suffix = "~q" if kind == ranking.QUESTION else ""
        return ChunkRecord(
            id=f"{article_id}#{suffix}{n}", article_id=article_id, title=article_id, heading="", anchor="",
            text=f"{article_id} part {n}", position=n, kind=kind,
        )  # fmt: skip

    records = {
        r.id: r
        for r in [
            chunk("long", 0),
            chunk("long", 1),
            chunk("long", 2),
            chunk("faq", 0),
            chunk("faq", 0, ranking.QUESTION),
        ]
    }
    texts = {"long": [records["long#0"], records["long#1"], records["long#2"]], "faq": [records["faq#0"]]}
    read: dict[str, list[str]] = {}

    def scorer(chunks: Sequence[ChunkRecord]) -> float | None:
        read[chunks[0].article_id] = [c.id for c in chunks]
        return 0.5

    rank_with_evidence(
        collection="c",
        semantic=[("faq#~q0", 0.9), ("long#2", 0.8)],
        keyword=[("long#0", 3.0)],
        records=records,
        k=2,
        texts=texts,
        coverage=scorer,
    )
    # "long#1" was returned by neither ranker; "faq" was found through its listed question only.
    assert read == {"long": ["long#0", "long#2"], "faq": ["faq#0"]}


def test_an_embedder_without_token_vectors_searches_as_before(tmp_path: Path) -> None:
    assert not isinstance(HashingEmbedder(), TokenEmbedder)
    assert isinstance(SentenceTransformerEmbedder(), TokenEmbedder)
    kb = KnowledgeBase(data_dir=tmp_path, embedder=HashingEmbedder())
    assert kb.coverage
    assert KnowledgeBase(data_dir=tmp_path, embedder=HashingEmbedder(), coverage=False).coverage is False


def test_pool_threads_never_tokenize_at_once(
    real_embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sentence vectors (padded batches) and token vectors (unpadded) from four threads at once:
    the one fast tokenizer is never in two calls together, and every answer is the one a
    single thread gets. Unserialised, a call that set padding raced one that unset it, and a
    burst of searches once failed with "Unable to create tensor" (an unpadded batch)."""
    texts = [["where is my parcel", "it never arrived and the tracking has not moved since Monday"],
             ["can I pay with Bitcoin?"], ["refund", "my card was declined twice at checkout today"]]  # fmt: skip
    expected = [(real_embedder.embed_documents(batch), real_embedder.embed_tokens(batch)) for batch in texts]
    tokenizer = real_embedder._loaded().tokenizer
    encode_plus = type(tokenizer)._encode_plus
    inside: list[int] = []
    most = [0]
    guard = threading.Lock()

    def watched(self: Any, *args: Any, **kwargs: Any) -> Any:
        with guard:
            inside.append(1)
            most[0] = max(most[0], len(inside))
        try:
            time.sleep(0.002)  # widen the window an unserialised caller would race in
            return encode_plus(self, *args, **kwargs)
        finally:
            with guard:
                inside.pop()

    monkeypatch.setattr(type(tokenizer), "_encode_plus", watched)

    def work(seed: int) -> list[tuple[np.ndarray, list[TokenVectors]]]:
        return [
            (real_embedder.embed_documents(texts[(seed + n) % 3]), real_embedder.embed_tokens(texts[(seed + n) % 3]))
            for n in range(6)
        ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))
    assert most[0] == 1
    for seed, answers in enumerate(results):
        for n, (vectors, tokens) in enumerate(answers):
            want_vectors, want_tokens = expected[(seed + n) % 3]
            assert np.allclose(vectors, want_vectors, atol=1e-5)
            assert [t.pieces for t in tokens] == [t.pieces for t in want_tokens]
            assert all(np.allclose(a.vectors, b.vectors, atol=1e-2) for a, b in zip(tokens, want_tokens, strict=True))


def test_the_model_s_token_vectors_leave_out_special_tokens(real_embedder: SentenceTransformerEmbedder) -> None:
    [tokens, empty] = real_embedder.embed_tokens(["Can I pay with Bitcoin? By e-mail", ""])
    # The pieces' texts as typed, the tokenizer's word boundaries ("Bitcoin" is three pieces).
    assert tokens.pieces == ("Can", "I", "pay", "with", "Bit", "co", "in", "?", "By", "e", "-", "mail")
    assert tokens.starts == (True, True, True, True, True, False, False, True, True, True, True, True)
    assert [stem for stem, _ in content_words(tokens)] == ["pay", "bitcoin", "e", "mail"]
    assert tokens.vectors.shape == (len(tokens.pieces), real_embedder.dimension)
    assert np.allclose(np.linalg.norm(tokens.vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)
    assert empty.pieces == () and empty.vectors.shape[0] == 0


def test_an_article_naming_what_is_asked_covers_it_more(real_embedder: SentenceTransformerEmbedder) -> None:
    article = real_embedder.embed_tokens(
        ["Payment methods. We accept Visa, Mastercard and PayPal. Pay at checkout with any of them."]
    )
    idf = Idf([["pay"], ["paypal"], ["bitcoin"], ["card"]])
    [paypal, bitcoin] = real_embedder.embed_tokens(["Can I pay with PayPal?", "Can I pay with bitcoin?"])
    named = coverage(paypal, article, idf)
    unnamed = coverage(bitcoin, article, idf)
    assert named is not None and unnamed is not None
    # Contextual vectors: the same word in two sentences lies near 0.8-0.9, not 1.
    assert named > 0.75
    assert unnamed < named - 0.2


@pytest.mark.asyncio
async def test_the_search_reads_coverage_with_the_real_model(
    sample_data_dir: Path, real_embedder: SentenceTransformerEmbedder
) -> None:
    async with KnowledgeBase(data_dir=sample_data_dir, embedder=real_embedder) as kb:
        found = await kb.search("How do I get my money back for a jacket I returned?")
        index = kb._indexes["default"]
        scorer = kb._coverage_scorer(index, "How do I get my money back for a jacket I returned?")
        assert scorer is not None
        assert 0.0 < (scorer(index.texts[found.hits[0].article_id]) or 0.0) <= 1.0
        assert index.idfs  # made once, with the index
    async with KnowledgeBase(data_dir=sample_data_dir, embedder=real_embedder, coverage=False) as off:
        await off.search("refund")
        assert off._coverage_scorer(off._indexes["default"], "refund") is None
    assert found.hits and 0.0 <= found.confidence <= 1.0


def test_a_question_s_vector_and_tokens_come_from_one_pass_as_apart(real_embedder: SentenceTransformerEmbedder) -> None:
    text = "Can I pay for my order with Bitcoin?"
    vector, tokens = real_embedder.embed_query_tokens(text)
    (apart,) = real_embedder.embed_tokens([text])
    assert vector.dtype == np.float32
    np.testing.assert_allclose(vector, real_embedder.embed_query(text), atol=1e-5)
    assert tokens.pieces == apart.pieces and tokens.starts == apart.starts
    np.testing.assert_allclose(tokens.vectors.astype(np.float32), apart.vectors.astype(np.float32), atol=2e-3)
