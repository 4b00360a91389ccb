"""The excerpt: the part of a search hit's chunk that answers the question.

Pure tests of ``excerpt()`` use the deterministic HashingEmbedder (texts
sharing words get similar vectors); the semantic test uses the real model.
Then one test through ``KnowledgeBase.search(excerpt=True)`` and one through
the hub's ``GET /api/v1/kb/search?excerpt=1``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase, SentenceTransformerEmbedder
from knowledge_base.articles import build_article
from knowledge_base.chunking import chunk_article
from knowledge_base.excerpt import ELLIPSIS, FLAT_MARGIN, excerpt, split_units
from knowledge_base.vector_cache import CachedEmbed
from tests.knowledge_base.conftest import write_article

REFUND_TIMES = """\
- Your return travels to us: usually 3-7 business days after you drop it off.
- We inspect it: within 2 business days of it arriving. We email you the moment the refund is issued.
- Your bank processes it: this part depends on the payment method:
Payment method | Time to appear after we issue the refund
Credit or debit card | 3-10 business days
PayPal | 1-2 business days
Klarna | Your payment plan is reduced within 2 business days
Gift card | Instantly
If 10 business days have passed and you still cannot see the money, ask your bank using the reference number \
in our email - they can trace it. If they cannot find it, contact us."""

TWO_STEP_SETUP = """\
1. Open **Account** and select [Security](https://example.test/account/security).
2. Select *Turn on two-step verification* and scan the QR code with your authenticator app.
3. Enter the 6-digit code the app shows to confirm.
4. Save your backup codes somewhere safe."""

SHIPPING = (
    "Our warehouse ships orders placed before 2 pm Eastern Time on the same business day. "
    "Personalised items need two extra business days before dispatch. "
    "Parcels to Alaska and Hawaii travel by air. "
    "You can change the delivery address until the label is printed."
)


class CountingEmbed:
    """An embed function that records each call's texts."""

    def __init__(self, embed: Any) -> None:
        self.embed = embed
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.asarray(self.embed(texts))


@pytest.fixture
def embed() -> CountingEmbed:
    return CountingEmbed(HashingEmbedder().embed_documents)


def test_a_table_row_is_quoted_with_its_header(embed: CountingEmbed) -> None:
    quote = excerpt("how long does a refund take to PayPal?", REFUND_TIMES, embed=embed)
    assert quote.text == "Payment method: PayPal; Time to appear after we issue the refund: 1-2 business days"
    units = split_units(REFUND_TIMES)
    assert [units[i].text for i in quote.units] == [quote.text]
    # The header row is no unit of its own; the other rows carry it too.
    assert not any(unit.text.startswith("Payment method | ") for unit in units)
    assert "Payment method: Gift card; Time to appear after we issue the refund: Instantly" in [u.text for u in units]
    assert quote.score >= FLAT_MARGIN


def test_units_are_embedded_in_one_call_with_the_query_vector_reused(embed: CountingEmbed) -> None:
    units = [unit.text for unit in split_units(REFUND_TIMES)]
    vector = HashingEmbedder().embed_query("refund to klarna")
    excerpt("refund to klarna", REFUND_TIMES, embed=embed, query_vector=vector)
    assert embed.calls == [units]
    # Without a query vector the query joins the same single call.
    embed.calls.clear()
    excerpt("refund to klarna", REFUND_TIMES, embed=embed)
    assert embed.calls == [["refund to klarna", *units]]


def test_a_step_comes_with_the_next_one(embed: CountingEmbed) -> None:
    quote = excerpt("scan the QR code", TWO_STEP_SETUP, embed=embed)
    assert quote.text == (
        "Select Turn on two-step verification and scan the QR code with your authenticator app.\n"
        "Enter the 6-digit code the app shows to confirm."
    )
    assert quote.units == (1, 2)


def test_a_bulleted_item_comes_alone_but_with_its_lead_in(embed: CountingEmbed) -> None:
    text = (
        "Promo codes have conditions. The usual reasons a code is rejected:\n"
        "- it has expired, or has not started yet,\n"
        "- the basket is below the minimum spend after other discounts,\n"
        "- some items are excluded, such as gift cards."
    )
    quote = excerpt("why is my basket below the minimum spend", text, embed=embed)
    assert quote.text == (
        "The usual reasons a code is rejected:\nthe basket is below the minimum spend after other discounts"
    )


def test_the_right_sentence_of_a_paragraph(embed: CountingEmbed) -> None:
    quote = excerpt("do parcels to Hawaii go by air?", SHIPPING, embed=embed)
    assert quote.text == "Parcels to Alaska and Hawaii travel by air."
    assert quote.units == (2,)


def test_the_right_sentence_by_meaning_with_the_real_model(real_embedder: SentenceTransformerEmbedder) -> None:
    # No word in common with the answer: only the model can tell.
    questions = {
        "how fast will embroidered stuff go out": "Personalised items need two extra business days before dispatch.",
        "can you get a box to honolulu": "Parcels to Alaska and Hawaii travel by air.",
    }
    for question, answer in questions.items():
        vector = real_embedder.embed_query(question)
        quote = excerpt(question, SHIPPING, embed=real_embedder.embed_documents, query_vector=vector)
        assert quote.text == answer, question


def test_a_sentence_that_refers_back_brings_the_one_before(embed: CountingEmbed) -> None:
    text = (
        "Cancelled orders are never charged. The authorisation on your card is released at once. "
        "It can take your bank 3-5 business days to remove it from your statement. "
        "Gift cards are refunded instantly."
    )
    quote = excerpt("how many business days until the bank removes it from my statement", text, embed=embed)
    assert quote.text == (
        "The authorisation on your card is released at once. "
        "It can take your bank 3-5 business days to remove it from your statement."
    )
    assert quote.units == (1, 2)
    quote = excerpt("bank cannot find my refund", REFUND_TIMES, embed=embed)
    assert quote.text.endswith("they can trace it. If they cannot find it, contact us.")


@pytest.mark.parametrize("max_chars", [20, 47, 60, 90, 119, 150])
def test_nothing_is_cut_mid_word(embed: CountingEmbed, max_chars: int) -> None:
    long_sentence = (
        "If 10 business days have passed since our refund email and you still cannot see the money, ask your "
        "bank for the refund using the reference number in the email - they can trace it."
    )
    text = f"Refunds go back to the card you paid with. {long_sentence}"
    quote = excerpt("you still cannot see the money after 10 business days", text, embed=embed, max_chars=max_chars)
    assert len(quote.text) <= max_chars
    assert quote.text.endswith(ELLIPSIS)
    kept = quote.text.removesuffix(ELLIPSIS)
    assert long_sentence.startswith(kept)
    assert long_sentence[len(kept)] in " ,-", f"cut mid-word: {quote.text!r}"


def test_a_quote_that_fits_is_never_shortened(embed: CountingEmbed) -> None:
    for question in ("PayPal", "Klarna payment plan", "email when the refund is issued", "gift card"):
        quote = excerpt(question, REFUND_TIMES, embed=embed)
        assert not quote.text.endswith(ELLIPSIS) and len(quote.text) <= 320, question
        source_words = set(re.findall(r"[\w-]+", REFUND_TIMES))
        assert set(re.findall(r"[\w-]+", quote.text)) <= source_words, question


def test_flat_scores_fall_back_to_the_first_sentences() -> None:
    def same(texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), 4), 0.5, dtype=np.float32)  # every cosine equal

    quote = excerpt("what about the weather on mars", SHIPPING, embed=same)
    assert quote.score < FLAT_MARGIN
    assert quote.units == (0, 1, 2)
    assert quote.text == (
        "Our warehouse ships orders placed before 2 pm Eastern Time on the same business day. "
        "Personalised items need two extra business days before dispatch. Parcels to Alaska and Hawaii travel by air."
    )
    # Without an embedder the words alone decide; none shared is as flat.
    assert excerpt("weather on mars", SHIPPING, embed=None).units == (0, 1, 2)
    assert excerpt("weather on mars", SHIPPING, embed=None, max_chars=100).text == (
        "Our warehouse ships orders placed before 2 pm Eastern Time on the same business day."
    )


def test_markup_is_stripped(embed: CountingEmbed) -> None:
    quote = excerpt("open the account security page", TWO_STEP_SETUP, embed=embed)
    assert quote.text.startswith("Open Account and select Security.")
    markdown = (
        "## Reaching us\n"
        "> Call **1-800-555-0199** or write to `help@example.test`.\n"
        "* See the [status page](https://status.example.test) _first_.\n"
        "| Channel | Hours |\n"
        "|---|:---:|\n"
        "| **Chat** | 7 am - 10 pm |\n"
        "| Phone | 8 am - 8 pm |"
    )
    assert [unit.text for unit in split_units(markdown)] == [
        "Reaching us",
        "Call 1-800-555-0199 or write to help@example.test.",
        "See the status page first.",
        "Channel: Chat; Hours: 7 am - 10 pm",
        "Channel: Phone; Hours: 8 am - 8 pm",
    ]
    assert excerpt("chat hours", markdown, embed=embed).text == "Channel: Chat; Hours: 7 am - 10 pm"


def test_degenerate_chunks(embed: CountingEmbed) -> None:
    assert excerpt("anything", "", embed=embed).text == ""
    one = excerpt("anything", "Gift cards never expire.", embed=embed)
    assert (one.text, one.units) == ("Gift cards never expire.", (0,))
    assert embed.calls == []  # nothing to choose from: nothing embedded
    # An abbreviation ends no sentence.
    assert [u.text for u in split_units("Bring ID, e.g. A passport. Then wait.")] == [
        "Bring ID, e.g. A passport.",
        "Then wait.",
    ]


def test_the_unit_vector_cache_embeds_each_text_once(embed: CountingEmbed) -> None:
    cached = CachedEmbed(embed, max_entries=3)
    first = cached(["a b", "c d"])
    again = cached(["c d", "a b", "e f"])
    assert embed.calls == [["a b", "c d"], ["e f"]]
    np.testing.assert_array_equal(again[:2], first[::-1])
    cached(["g h"])  # evicts the least recently used, "c d"
    cached(["c d", "a b"])
    assert embed.calls[-1] == ["c d"] and len(cached) == 3


@pytest.mark.asyncio
async def test_search_quotes_the_top_hit_only(kb: KnowledgeBase, tmp_path: Path) -> None:
    source = tmp_path / "articles"
    body = """## How long does a refund take?

1. **Your return travels to us**: usually 3-7 business days after you drop it off.
2. **We inspect it**: within 2 business days of it arriving.
3. **Your bank processes it**: this part depends on the payment method:

| Payment method | Time to appear after we issue the refund |
|---|---|
| Credit or debit card | 3-10 business days |
| PayPal | 1-2 business days |
| Gift card | Instantly |

If 10 business days have passed, ask your bank: they can trace it.
"""
    write_article(source, "refunds", "Refunds", body)
    write_article(source, "paypal", "Paying with PayPal", "Choose PayPal at checkout and sign in to PayPal to pay.")
    await kb.ingest_dir(source)

    result = await kb.search("how long does a refund take to PayPal?", k=2, excerpt=True)
    top, other = result.hits
    assert top.article_id == "refunds"
    assert top.excerpt == "Payment method: PayPal; Time to appear after we issue the refund: 1-2 business days"
    assert top.to_dict()["excerpt"] == top.excerpt
    assert other.excerpt is None and "excerpt" not in other.to_dict()

    plain = await kb.search("how long does a refund take to PayPal?", k=2)
    assert plain.hits[0].excerpt is None and "excerpt" not in plain.hits[0].to_dict()
    assert [hit.text for hit in plain.hits] == [hit.text for hit in result.hits]


@pytest_asyncio.fixture
async def kb_hub(database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    from tests.conftest import make_settings, start_hub

    settings = make_settings(
        database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, kb_search_rate_limit="100/minute"
    )
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    hub = await start_hub(settings, knowledge_base=kb)
    try:
        yield hub
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_search_api_returns_the_excerpt_on_request(kb_hub: Any) -> None:
    params = {"q": "PayPal refund time", "k": "3"}
    response = await kb_hub.client.get("/api/v1/kb/search", params={**params, "excerpt": "1"})
    body = await response.json()
    assert response.status == 200, body
    top, *others = body["hits"]
    assert top["article_id"] == "refunds"
    assert top["excerpt"] == "Payment method: PayPal; Time to appear after we issue the refund: 1-2 business days"
    assert all("excerpt" not in hit for hit in others)

    for value in ("true", "TRUE"):
        response = await kb_hub.client.get("/api/v1/kb/search", params={**params, "excerpt": value})
        assert (await response.json())["hits"][0]["excerpt"] == top["excerpt"]
    for extra in ({}, {"excerpt": "0"}, {"excerpt": "false"}):
        response = await kb_hub.client.get("/api/v1/kb/search", params={**params, **extra})
        assert all("excerpt" not in hit for hit in (await response.json())["hits"])
    bad = await kb_hub.client.get("/api/v1/kb/search", params={**params, "excerpt": "yes"})
    assert bad.status == 400 and "'excerpt'" in (await bad.json())["error"]["message"]


# A mini knowledge base of another domain (a home-internet provider), written here: the answer sits
# deep in a chunk, never in its opening sentences.
INTERNET_ARTICLES = {
    "moving-home": (
        "Moving home",
        "## Taking your service with you\n\n"
        "We can move your broadband to your new address in most of the country. "
        "Tell us your moving date at least two weeks ahead so we can book the work. "
        "An engineer visit to connect the new line costs a one-off fee of 45 dollars. "
        "Your contract and monthly price stay the same after the move.\n",
    ),
    "router-lights": (
        "What your router's lights mean",
        "## Status light colours\n\n"
        "Check the light on the front of your router.\n\n"
        "| Colour | Meaning |\n|---|---|\n"
        "| Solid white | Connected and working normally |\n"
        "| Flashing white | Starting up, wait two minutes |\n"
        "| Solid blue | Ready to pair with the WPS button |\n"
        "| Solid red | No signal on the line: check the cable in the wall socket |\n"
        "| Flashing orange | A software update is installing, do not unplug |\n",
    ),
    "plans": (
        "Broadband plans and speeds",
        "## Download speeds by plan\n\n"
        "| Plan | Download speed | Monthly price |\n|---|---|---|\n"
        + "\n".join(
            f"| {name} | {speed} | {price} |"
            for name, speed, price in [
                ("Starter fibre", "36 Mbps average, good for browsing and email on two devices", "25 dollars"),
                ("Family fibre", "74 Mbps average, good for HD streaming on several screens", "32 dollars"),
                ("Superfast fibre", "145 Mbps average, good for 4K streaming and big downloads", "39 dollars"),
                ("Gamer fibre", "300 Mbps average with low latency routing for online games", "45 dollars"),
                ("Home office fibre", "500 Mbps average with a static IP address for remote work", "52 dollars"),
                ("Gigabit fibre", "900 Mbps average for busy households with many devices", "60 dollars"),
                ("Business fibre", "900 Mbps average with a four hour fault repair promise", "75 dollars"),
                ("Student fibre", "74 Mbps average on a nine month contract for the school year", "22 dollars"),
                ("Senior fibre", "36 Mbps average with free phone support at any hour", "20 dollars"),
                ("Rural wireless", "30 Mbps average over 4G where fibre cannot reach", "28 dollars"),
                ("Satellite", "100 Mbps average anywhere in the country, a dish is fitted", "80 dollars"),
            ]
        )
        + "\n",
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("question", "article_id", "expected"),
    [
        # The third sentence of a paragraph.
        (
            "is there a charge for the engineer when I move house?",
            "moving-home",
            "An engineer visit to connect the new line costs a one-off fee of 45 dollars.",
        ),
        # The fourth row of a table.
        (
            "my router has a solid red light, what is wrong?",
            "router-lights",
            "Colour: Solid red; Meaning: No signal on the line: check the cable in the wall socket",
        ),
        # A row of a table longer than one chunk, in the piece after the first.
        (
            "how fast is the satellite plan and what does it cost?",
            "plans",
            "Plan: Satellite; Download speed: 100 Mbps average anywhere in the country, a dish is fitted; "
            "Monthly price: 80 dollars",
        ),
    ],
)
async def test_another_domains_answer_is_quoted_from_deep_in_its_chunk(
    tmp_path: Path, real_embedder: SentenceTransformerEmbedder, question: str, article_id: str, expected: str
) -> None:
    source = tmp_path / "articles"
    for name, (title, body) in INTERNET_ARTICLES.items():
        write_article(source, name, title, body)
    async with KnowledgeBase(data_dir=tmp_path / "kb", embedder=real_embedder) as kb:
        await kb.ingest_dir(source)
        result = await kb.search(question, k=3, excerpt=True)
    top = result.hits[0]
    assert top.article_id == article_id
    assert top.excerpt is not None and expected in top.excerpt.split("\n"), top.excerpt
    assert len(top.excerpt) <= 320


def test_the_long_plans_table_is_longer_than_a_chunk() -> None:
    _, body = INTERNET_ARTICLES["plans"]
    chunks = chunk_article(build_article("default", "plans", title="Plans", body_markdown=body))
    assert len(chunks) == 2
    assert "Satellite" in chunks[1].text


@pytest.mark.asyncio
async def test_the_sample_kb_quotes_the_card_row_for_a_refund_to_card(sample_kb: KnowledgeBase) -> None:
    result = await sample_kb.search("how long does a refund take to reach my card?", k=3, excerpt=True)
    top = result.hits[0]
    assert (top.article_id, top.anchor) == ("refunds", "how-long-does-a-refund-take")
    assert top.excerpt == (
        "Payment method: Credit or debit card; Time to appear after we issue the refund: 3-10 business days"
    )
