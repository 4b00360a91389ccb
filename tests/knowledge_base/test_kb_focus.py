"""A message's greetings, thanks and sign-offs, left out of the search (``knowledge_base.focus``)."""

from __future__ import annotations

import pytest

from knowledge_base import KnowledgeBase
from knowledge_base.focus import SIMILAR, SIMILAR_AT_EDGES, focused, parts


def test_a_message_is_split_into_sentences_and_lines() -> None:
    text = "Hi there,\n\nhow do I cancel?   It renews tomorrow! Is that ok?\nThanks, Sam\n"
    assert parts(text) == ["Hi there,", "how do I cancel?", "It renews tomorrow!", "Is that ok?", "Thanks, Sam"]
    assert parts("one line, no stop") == ["one line, no stop"]
    assert parts(" \n ") == []


def test_a_sentence_is_left_out_only_when_it_is_a_pleasantry_more_than_anything_the_articles_say() -> None:
    sentences = ["Hello!", "How do I cancel?", "But it is not here.", "Cheers"]
    pleasantry = [0.9, 0.2, 0.3, SIMILAR]
    article = [0.1, 0.6, 0.1, 0.2]
    assert focused(sentences, pleasantry, article) == "How do I cancel? But it is not here."
    # Like a pleasantry, but closer still to an article: a question after all.
    assert focused(["Thanks for the refund", "when does it arrive?"], [0.7, 0.1], [0.8, 0.5]) == (
        "Thanks for the refund when does it arrive?"
    )
    # The first and the last sentence are left out from SIMILAR_AT_EDGES, one in the middle from SIMILAR.
    edge = (SIMILAR_AT_EDGES + SIMILAR) / 2
    assert (
        focused(["Bit stuck", "How do I cancel?", "Bit stuck"], [edge, 0.1, edge], [0.2, 0.6, 0.2])
        == "How do I cancel?"
    )
    middle = ["How do I cancel?", "Bit stuck", "Is it free?"]
    assert focused(middle, [0.1, edge, 0.1], [0.6, 0.2, 0.5]) == "How do I cancel? Bit stuck Is it free?"
    # Nothing but pleasantries: searched whole rather than not at all.
    assert focused(["Hi", "Thanks"], [0.9, 0.9], [0.1, 0.1]) == "Hi Thanks"


@pytest.mark.asyncio
async def test_a_wrapped_question_is_searched_as_asked(sample_kb: KnowledgeBase) -> None:
    asked = "Can I change the address on my order?"
    wrapped = (
        f"Hello! I have been a loyal customer for years and never had to write before. {asked}\nSent from my iPhone"
    )
    plain = await sample_kb.search(asked, k=3)
    result = await sample_kb.search(wrapped, k=3)
    assert result.query == " ".join(wrapped.split())
    assert result.corrected == asked
    assert [hit.article_id for hit in result.hits] == [hit.article_id for hit in plain.hits]
    assert result.confidence == pytest.approx(plain.confidence)
    sample_kb.focus = False
    try:
        whole = await sample_kb.search(wrapped, k=3)
    finally:
        sample_kb.focus = True
    assert whole.corrected is None
    assert whole.confidence < result.confidence


@pytest.mark.asyncio
async def test_sentences_that_carry_the_question_are_kept(sample_kb: KnowledgeBase) -> None:
    for question in (
        "My parcel says delivered. But it is not here. What do I do?",
        "I ordered boots last week. When will they arrive?",
    ):
        assert (await sample_kb.search(question, k=3)).corrected is None
