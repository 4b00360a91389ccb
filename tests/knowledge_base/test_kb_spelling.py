"""Misspelt words in a query, corrected before the search (``knowledge_base.spelling``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base import HashingEmbedder, KnowledgeBase
from knowledge_base.spelling import Speller, words_of

from .conftest import write_article

ARTICLE_WORDS = words_of(["Pausing your Streamflix membership", "Download episodes to watch offline on a tablet"])


@pytest.mark.parametrize(
    ("typed", "corrected"),
    [
        ("how do i cancle my subscripton", "how do i cancel my subscription"),
        ("someone got into my acount", "someone got into my account"),
        # A word one letter from the articles' own term becomes that term.
        ("can i pause my streamflx membrship", "can i pause my streamflix membership"),
        ("Recieve a refund", "Receive a refund"),  # a capital at the start of a sentence is kept
        ("It broke. Recieve it back?", "It broke. Receive it back?"),
        ("dowload to my tablte", "download to my tablet"),
    ],
)
def test_misspelt_words_are_corrected(typed: str, corrected: str) -> None:
    assert Speller(ARTICLE_WORDS).correct(typed) == corrected


@pytest.mark.parametrize(
    "typed",
    [
        "i dont know why theres a fee and it isnt shown",  # contractions without their apostrophe
        "my appt and meds and mins",  # short words: abbreviations more often than typos
        "Priya from Walgreens said so",  # capitalised inside a sentence: a name
        "the MFA code and the BRCAX test",  # capitals: an acronym
        "my bloodwork results",  # the English word one letter away (bloodworm) is rare
        "mi cumpleaños y el número",  # other letters: another language
        "order A1234567 and code x9y8z",
        "streamflix membership download",  # known words, whatever case
    ],
)
def test_words_that_are_not_typos_are_left_as_typed(typed: str) -> None:
    assert Speller(ARTICLE_WORDS).correct(typed) == typed


@pytest.mark.asyncio
async def test_a_misspelt_query_finds_what_the_spelt_one_finds(tmp_path: Path) -> None:
    articles = tmp_path / "articles"
    write_article(articles, "cancel", "Cancelling a subscription", "Cancel your subscription from Settings, Billing.")
    write_article(articles, "address", "Changing your delivery address", "Edit the address before the parcel ships.")
    write_article(articles, "vouchers", "Gift vouchers", "Vouchers are valid for a year from purchase.")
    async with KnowledgeBase(data_dir=tmp_path / "data", embedder=HashingEmbedder()) as kb:
        await kb.ingest_dir(articles)
        spelt = await kb.search("cancel subscription", k=3)
        typed = await kb.search("cancle subscripton", k=3)
        assert typed.query == "cancle subscripton" and typed.corrected == "cancel subscription"
        assert [h.article_id for h in typed.hits] == [h.article_id for h in spelt.hits]
        assert typed.hits[0].article_id == "cancel"
        assert typed.confidence == pytest.approx(spelt.confidence)
        assert spelt.corrected is None
        # Without the correction, the hashed words of the typed query match no article's.
        kb.spelling = False
        uncorrected = await kb.search("cancle subscripton", k=3)
        assert uncorrected.corrected is None
        assert uncorrected.confidence < spelt.confidence
        assert uncorrected.hits[0].score < spelt.hits[0].score
