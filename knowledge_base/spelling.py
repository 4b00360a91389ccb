"""A customer's misspellings, corrected before the knowledge base is searched.

Customers type fast: "how do i cancle my subscripton", "my acount was
hackd". The embedding model reads a misspelt word as different word pieces
and BM25 does not find it at all, so a typo costs an answer. Measured on the
seven development help centres (``bench/kb_search.py --typos``: one letter
dropped, added, changed or two swapped in about a quarter of the words of
five letters or more), answerable questions answered right at the bot's
threshold: 0.661 as written, 0.555 misspelt, 0.636 misspelt and corrected;
wrong answers 0.097, 0.092 and 0.100 (of all questions). On the questions as
written the correction turned one of 688 questions into a wrong answer
(resolution 0.661 either way, wrong 0.097 -> 0.099).

Words come from symspellpy's English frequency dictionary (82,765 words,
shipped in its wheel: nothing is downloaded) and from the collection's own
articles (titles, headings, text, listed questions), so a product's own
terms are known and a misspelling of one is corrected to it. A word is
corrected only when all of these hold, and left as typed otherwise:

- it is unknown to both lists;
- it has at least ``MIN_LENGTH`` letters, all of them ASCII: short unknown
  words are mostly abbreviations ("appt", "meds", "mins"), and a word with
  other letters is another language or a name;
- it is not capitalised inside a sentence, nor written in capitals (a name,
  a brand, an acronym);
- it is not a contraction written without its apostrophe ("dont",
  "theres": both known);
- a known word is one edit away (SymSpell's Damerau-Levenshtein distance 1:
  a letter dropped, added, changed or two swapped), and that word is the
  articles' own or a common English one (``COMMON``, occurrences in the
  dictionary's corpus: "bloodwork" is not turned into "bloodworm"). The
  articles' words come first, then the most common.

The English dictionary takes ~2.5 s and ~60 MB to load, once per process
(``english()``, which ``KnowledgeBase.start`` begins in the background);
a correction then costs microseconds a word.
"""

from __future__ import annotations

import importlib.resources
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from symspellpy import SymSpell, Verbosity

MIN_LENGTH = 5
# A suggestion from the English dictionary must occur at least this often in its corpus (Google Books
# n-gram counts: "account" 2e8, "refund" 1.3e7, "bloodworm" 1.8e4).
COMMON = 1_000_000
EDIT_DISTANCE = 1
PREFIX_LENGTH = 7
DICTIONARY = "frequency_dictionary_en_82_765.txt"
# A letters-only word, with its apostrophe part if any ("don't", "customer's").
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)?")
_SENTENCE_END = re.compile(r"[.!?:\n]\s*$")
_APOSTROPHES = re.compile(r"['\u2019]")

_english: tuple[SymSpell, frozenset[str]] | None = None
_english_lock = threading.Lock()


def english() -> tuple[SymSpell, frozenset[str]]:
    """symspellpy's English dictionary and every word it knows (contractions also without their
    apostrophe), loaded once per process; thread-safe."""
    global _english
    with _english_lock:
        if _english is None:
            speller = SymSpell(max_dictionary_edit_distance=EDIT_DISTANCE, prefix_length=PREFIX_LENGTH)
            path = importlib.resources.files("symspellpy") / DICTIONARY
            with importlib.resources.as_file(path) as file:
                if not speller.load_dictionary(str(file), term_index=0, count_index=1, encoding="utf-8"):
                    raise RuntimeError(f"symspellpy's dictionary {DICTIONARY} did not load")
            words = set(speller.words)
            words.update(_APOSTROPHES.sub("", word) for word in speller.words if "'" in word)
            _english = speller, frozenset(words)
        return _english


def words_of(texts: Iterable[str]) -> frozenset[str]:
    """The lower-cased words (three letters or more) of ``texts``: a collection's vocabulary."""
    return frozenset(word.lower() for text in texts for word in _WORD.findall(text) if len(word) >= 3)


@dataclass(frozen=True)
class Speller:
    """Corrects misspelt words against English and ``vocabulary`` (a collection's words)."""

    vocabulary: frozenset[str]
    _own: SymSpell = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = SymSpell(max_dictionary_edit_distance=EDIT_DISTANCE, prefix_length=PREFIX_LENGTH)
        for word in self.vocabulary:
            own.create_dictionary_entry(word, 1)
        object.__setattr__(self, "_own", own)

    def correct(self, text: str) -> str:
        """``text`` with each misspelt word replaced (see the module docstring); the rest as typed."""
        speller, known = english()

        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            lower = word.lower()
            if len(word) < MIN_LENGTH or not word.isascii() or not word.isalpha():
                return word
            if lower in known or lower in self.vocabulary:
                return word
            starts_sentence = match.start() == 0 or bool(_SENTENCE_END.search(text, 0, match.start()))
            if word.isupper() or (word[0].isupper() and not starts_sentence) or not word[1:].islower():
                return word
            suggestion = self._suggest(lower, speller)
            if suggestion is None:
                return word
            return suggestion.capitalize() if word[0].isupper() else suggestion

        return _WORD.sub(fix, text)

    def _suggest(self, word: str, speller: SymSpell) -> str | None:
        own = self._own.lookup(word, Verbosity.TOP, max_edit_distance=EDIT_DISTANCE)
        if own:
            return str(own[0].term)
        common = [s for s in speller.lookup(word, Verbosity.TOP, max_edit_distance=EDIT_DISTANCE) if s.count >= COMMON]
        return str(common[0].term) if common else None
