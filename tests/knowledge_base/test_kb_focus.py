"""A message's greetings, thanks and sign-offs, left out of the search (``knowledge_base.focus``)."""

from __future__ import annotations

import pytest

from knowledge_base import KnowledgeBase
from knowledge_base.focus import (
    EDGE_WORDS,
    MAX_PARTS,
    SIMILAR,
    SIMILAR_AT_EDGES,
    clip,
    edge_runs,
    kept,
    parts,
    run_text,
    split_runs,
    within,
)
from knowledge_base.service import MAX_QUERY_CHARS


def test_a_message_is_split_into_sentences_and_lines() -> None:
    text = "Hi there,\n\nhow do I cancel?   It renews tomorrow! Is that ok?\nThanks, Sam\n"
    assert parts(text) == ["Hi there,", "how do I cancel?", "It renews tomorrow!", "Is that ok?", "Thanks, Sam"]
    assert parts("one line, no stop") == ["one line, no stop"]
    assert parts(" \n ") == []


def focused(sentences: list[str], pleasantry: list[float], article: list[float]) -> str:
    """The sentences ``kept`` leaves, joined in order: what the search reads of a short message."""
    return " ".join(sentences[at] for at in kept(sentences, pleasantry, article))


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
async def test_a_greeting_or_sign_off_run_onto_the_question_without_punctuation_is_left_out(
    sample_kb: KnowledgeBase,
) -> None:
    asked = "can I change the address on my order"
    for typed in (
        f"Good evening team {asked}",
        f"{asked} Have a nice day :)",
        f"Hello there, I hope you are well.\n{asked} thanks so much",
        "hey where is my parcel",
    ):
        read = await sample_kb.as_searched(typed)
        assert read in (asked, "where is my parcel"), typed
        assert not any(word in read for word in ("evening", "nice day", "thanks", "hey")), typed
    # The hub's urgency triage (and Rasa after it) reads the message without these runs split off.
    assert await sample_kb.as_searched(f"{asked} Have a nice day :)", edges=False) == f"{asked} Have a nice day :)"
    # The longest run like a pleasantry whose rest sits no farther from the articles: "hey can I" is
    # one (as like "can someone help me please"), and the search finds the same article without it.
    assert await sample_kb.as_searched(f"hey {asked}") == "change the address on my order"
    plain, read = await sample_kb.search(asked, k=3), await sample_kb.search(f"hey {asked}", k=3)
    assert read.hits[0].article_id == plain.hits[0].article_id
    # Words at the edges that belong to the question stay: the rest would be farther from the articles.
    for typed in ("where is my parcel", "help me change my address", "how long do refunds take"):
        assert await sample_kb.as_searched(typed) == typed
    # A thanks is split off though the sentence goes on about a refund: the rest is closer to the articles.
    assert await sample_kb.as_searched("Thanks for the refund when does it arrive") == (
        "for the refund when does it arrive"
    )


@pytest.mark.asyncio
async def test_sentences_that_carry_the_question_are_kept(sample_kb: KnowledgeBase) -> None:
    for question in (
        "My parcel says delivered. But it is not here. What do I do?",
        "I ordered boots last week. When will they arrive?",
    ):
        assert (await sample_kb.search(question, k=3)).corrected is None


def test_an_opening_or_closing_run_onto_the_question_is_looked_for_at_the_edges() -> None:
    sentences = ["hey could you tell me where my parcel is", "It left on Monday", "ok thanks so much"]
    runs = edge_runs(sentences)
    # The first sentence's first words, the last one's last words, leaving two words of each.
    assert [run for run in runs if run[0] == 0] == [(0, words) for words in range(1, EDGE_WORDS + 1)]
    assert [run for run in runs if run[0] == 2] == [(2, -1), (2, -2)]
    assert run_text(sentences, (0, 1)) == ("hey", "could you tell me where my parcel is")
    assert run_text(sentences, (2, -2)) == ("so much", "ok thanks")
    # One sentence alone: its opening and its closing leave two words between them.
    assert edge_runs(["hey where is my parcel"]) == [(0, 1), (0, -1)]
    assert edge_runs(["where is it"]) == []
    assert edge_runs([]) == []
    # A chosen run becomes a sentence of its own.
    alone = ["hey there where is my parcel have a nice day"]
    assert split_runs(alone, [(0, 2), (0, -4)]) == ["hey there", "where is my parcel", "have a nice day"]
    assert split_runs(sentences, [(2, -2)]) == [*sentences[:2], "ok thanks", "so much"]
    assert split_runs(sentences, []) == sentences
    with pytest.raises(ValueError, match="at most one"):
        split_runs(alone, [(0, 1), (0, 2)])


def test_a_message_longer_than_the_limit_keeps_the_sentences_closest_to_the_articles_in_order() -> None:
    sentences = ["We moved house.", "How do I change my address?", "My son has one too.", "Is it free?"]
    article = [0.3, 0.8, 0.1, 0.5]
    assert within(sentences, article, 200) == " ".join(sentences)  # fits: all of it
    # 38 characters: the closest (27) and the next closest that still fits (11), in the message's order.
    assert within(sentences, article, 40) == "How do I change my address? Is it free?"
    # A closer sentence too long to fit does not stop a shorter, farther one from filling the room.
    assert within(["x" * 50, "Short one?", "Far away."], [0.9, 0.5, 0.1], 25) == "Short one? Far away."
    # Not even the closest fits: it alone, cut at a word.
    assert within(["one two three four", "five"], [0.9, 0.1], 2) == "on"
    assert within(["one two three four", "five six seven eight"], [0.9, 0.1], 10) == "one two"


def test_clip_cuts_at_a_word_and_collapses_whitespace() -> None:
    assert clip("  a  b\n c ", 10) == "a b c"
    assert clip("alpha beta gamma", 11) == "alpha beta"
    assert clip("alpha beta gamma", 10) == "alpha beta"
    assert clip("alphabetagamma", 5) == "alpha"


LONG_EMAIL = """Hello,

I have shopped with you for years, mostly boots and the odd rain jacket for the children.
On Thursday night I ordered a two-person tent, a camping stove and two sleeping mats for a trip to the lakes.
The order number is 48213 and it came to just over two hundred pounds, which I paid by card.
The confirmation email arrived straight away and it says the parcel will be dispatched on Monday.
The trouble is that we moved house on Saturday and I only noticed afterwards that the old address was used.
The old flat is empty now and the new tenants do not move in until the end of the month.
My partner thinks the website kept the address from my last order and I did not check it at the checkout.
Can I change the address on my order?
The new address is 12 Mill Lane, in the same town, only about two miles from the old one.
I would much rather change it now than have the tent sent back to you and wait for a refund.
We are going away on the 14th, so the timing is quite tight for us.

Many thanks,
Helen
07700 900123
"""


@pytest.mark.asyncio
async def test_a_long_email_is_read_within_the_query_limit_from_the_sentences_that_ask(
    sample_kb: KnowledgeBase,
) -> None:
    assert len(" ".join(LONG_EMAIL.split())) > MAX_QUERY_CHARS
    with pytest.raises(Exception, match="longer than"):
        await sample_kb.search(LONG_EMAIL, k=3)  # as a query typed into the search: too long
    read = await sample_kb.as_searched(LONG_EMAIL)
    assert len(read) <= MAX_QUERY_CHARS
    assert "Can I change the address on my order?" in read and "old address was used" in read
    assert "Many thanks" not in read and "Hello" not in read
    # In the message's order.
    assert read.index("Can I change the address") < read.index("The new address is 12 Mill Lane")
    plain = await sample_kb.search("Can I change the address on my order?", k=3)
    result = await sample_kb.search(read, k=3)
    # The question alone lies between the order and the account (saved addresses) articles, and
    # coverage puts the account first; read with its story, the e-mail finds the order's.
    assert "change-or-cancel-an-order" in [hit.article_id for hit in plain.hits]
    assert result.hits[0].article_id == "change-or-cancel-an-order"
    # Without the focus, the message's first characters within the limit, cut at a word.
    sample_kb.focus = False
    try:
        start = await sample_kb.as_searched(LONG_EMAIL)
    finally:
        sample_kb.focus = True
    assert len(start) > MAX_QUERY_CHARS - 20 and " ".join(LONG_EMAIL.split()).startswith(start)
    assert start.startswith("Hello,") and start.endswith(" Many")


@pytest.mark.asyncio
async def test_a_message_of_many_lines_is_read_up_to_max_parts(sample_kb: KnowledgeBase) -> None:
    lines = [f"Line {n} about tents." for n in range(MAX_PARTS)] + ["Can I change the address on my order?"]
    read = await sample_kb.as_searched("\n".join(lines))
    assert "address" not in read and "Line 0 about tents." in read
