"""SMS segments and splitting (hub/segments.py): examples, then properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_BODY_CHARS,
    encoding,
    is_link,
    segment_count,
    size,
    split_message,
)


# --- encoding and counting ------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Your refund is on its way.", "GSM-7"),
        ("Prix: 12€ [TVA] {ok} ~ ^ | \\", "GSM-7"),  # extension characters are still GSM-7
        ("Ça coûte 5 £, à bientôt", "UCS-2"),  # ç and û are not in GSM 03.38 (Ç and ù are)
        ("Ç ù è é à ñ ü Ø Å ß Δ", "GSM-7"),
        ("Thanks 🙂", "UCS-2"),
        ("Привет", "UCS-2"),
        ("smart “quotes”", "UCS-2"),
    ],
)
def test_encoding(text: str, expected: str) -> None:
    assert encoding(text) == expected


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # 160 septets
        ("€" * 81, 2),
        ("a" * 152 + "€", 1),  # 154 septets still fit a single segment
        ("a" * 159 + "€", 2),  # 161 septets
        ("é" * 160, 1),  # é is GSM-7
        ("ç" * 70, 1),
        ("ç" * 71, 2),
        ("ç" * 134, 2),
        ("ç" * 135, 3),
        ("🙂" * 35, 1),  # 70 UTF-16 code units
        ("🙂" * 36, 2),
        ("a" * 152 + "€" + "a" * 10, 2),
    ],
)
def test_segment_count(text: str, segments: int) -> None:
    assert segment_count(text) == segments


def test_a_two_septet_character_is_not_cut_between_segments() -> None:
    # 152 septets, then € (2 septets) would straddle 153: it opens segment 2,
    # so 153 + 153 + 1 septets of 'a' and '€' need three segments, not two.
    text = "a" * 152 + "€" + "a" * 152
    assert size(text).septets == 306
    assert segment_count(text) == 3


def test_links() -> None:
    assert is_link("https://help.example.com/a/refunds?x=1")
    assert is_link("(www.example.com/refunds).")
    assert not is_link("example")


# --- splitting -------------------------------------------------------------------------
def test_a_short_reply_is_one_part_as_written() -> None:
    assert split_message("  Hello,\n\nyour refund is on its way.  ", max_segments=1) == [
        "Hello,\n\nyour refund is on its way."
    ]
    assert split_message("   ", max_segments=3) == []


def test_a_long_reply_is_cut_on_word_boundaries() -> None:
    words = [f"word{n}" for n in range(300)]
    parts = split_message(" ".join(words), max_segments=2)
    assert len(parts) > 1
    assert " ".join(parts).split() == words
    assert all(segment_count(part) <= 2 for part in parts)


def test_a_link_is_never_cut() -> None:
    link = "https://help.example.com/articles/refunds-and-returns?utm_source=sms&utm_medium=reply"
    text = ("Please read " * 12) + link + " and tell us if that helps."
    parts = split_message(text, max_segments=1)
    assert any(link in part for part in parts)
    assert all(segment_count(part) <= 1 for part in parts)


def test_a_link_longer_than_a_part_goes_whole_into_its_own() -> None:
    link = "https://help.example.com/" + "a" * 400
    parts = split_message(f"See {link} for details", max_segments=1)
    assert parts == ["See", link, "for details"]


def test_a_word_longer_than_a_part_that_is_no_link_is_cut() -> None:
    parts = split_message("x" * 400, max_segments=1)
    assert parts == ["x" * 160, "x" * 160, "x" * 80]


def test_one_emoji_makes_its_part_ucs2() -> None:
    text = "a " * 100 + "🙂"
    parts = split_message(text, max_segments=1)
    assert [encoding(part) for part in parts] == ["GSM-7", "UCS-2"]
    assert all(segment_count(part) == 1 for part in parts)


def test_without_segments_parts_are_bounded_by_twilio_body_limit() -> None:
    # WhatsApp: no segments, but 1600 characters per message.
    text = "🙂 word " * 500
    parts = split_message(text, max_segments=None)
    assert all(len(part.encode("utf-16-le")) // 2 <= MAX_BODY_CHARS for part in parts)
    assert " ".join(parts).split() == text.split()


def test_ten_segments_stay_under_twilio_body_limit() -> None:
    text = "a" * 5000
    assert all(
        len(part) <= MAX_BODY_CHARS and segment_count(part) <= 10 for part in split_message(text, max_segments=10)
    )


# --- properties -------------------------------------------------------------------------
GSM_CHARS = "".join(sorted(GSM7_BASIC | GSM7_EXTENSION))
words = st.one_of(
    st.text(alphabet=GSM_CHARS.replace(" ", "").replace("\n", "").replace("\r", "").replace("\f", ""), min_size=1),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=12),
    st.sampled_from(["🙂", "€", "ç", "https://example.com/" + "p" * 200, "https://ex.co/a?b=c", "www.example.com/x"]),
)
separators = st.sampled_from([" ", "  ", "\n", " \n\n"])


@st.composite
def replies(draw: st.DrawFn) -> str:
    items = draw(st.lists(words, min_size=1, max_size=80))
    return "".join(word + draw(separators) for word in items)


@settings(max_examples=300, deadline=None)
@given(text=replies(), max_segments=st.integers(min_value=1, max_value=10))
def test_parts_rejoin_to_the_words_fit_their_budget_and_keep_links(text: str, max_segments: int) -> None:
    parts = split_message(text, max_segments=max_segments)
    links = [word for word in text.split() if is_link(word)]
    # Words are kept in order; only an over-long word that is no link may be cut.
    rejoined = " ".join(parts).split()
    if all(segment_count(word) <= max_segments for word in text.split()):
        assert rejoined == text.split()
    else:
        assert "".join(rejoined) == "".join(text.split())
    for part in parts:
        assert part == part.strip() and part
        assert segment_count(part) <= max_segments or (is_link(part) and not re.search(r"\s", part)), part
        assert len(part) <= MAX_BODY_CHARS or is_link(part)
    for link in links:
        assert any(link in part.split() for part in parts), link


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=600))
def test_any_text_splits_into_parts_within_budget(text: str) -> None:
    # Anything at all (control characters, surrogate-free Unicode): parts fit, and nothing is lost but whitespace.
    parts = split_message(text, max_segments=1)
    assert "".join("".join(parts).split()) == "".join(text.split())
    for part in parts:
        assert segment_count(part) <= 1 or is_link(part)
