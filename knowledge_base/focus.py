"""The part of a customer's message that asks: greetings, thanks and sign-offs left out.

Customers wrap their question: "Hi there, I've been with you for years and
never had to write before." before it, "Thanks so much!\\nPriya" after it.
Searched whole, the wrapping pulls the message's vector away from every
article and the search's confidence falls below the bot's threshold.

So a message of several sentences (or lines) is searched without the ones
that are pleasantries: a sentence is left out when it is at least
``SIMILAR`` (cosine) to one of ``PLEASANTRIES`` - generic greetings,
thanks, sign-offs, a phone's "Sent from my iPhone", a customer saying who
they are - and closer to it than to every chunk of the knowledge base; the
first and the last sentence, where customers put their greetings and
sign-offs, from ``SIMILAR_AT_EDGES``. A sentence that asks, or gives the
question its context ("My parcel says delivered. But it is not here."), is
unlike every pleasantry and stays, however far it is from the articles.
Never is every sentence left out. The hub's urgency triage reads the
message as searched too (``hub.bot.triage``).

Measured on the seven development help centres, each answerable and
unanswerable question wrapped in an opening and a closing drawn from
bench/data/pleasantries.yml (written for this by someone who saw neither
the questions nor the articles; ``bench/kb_search.py --wrapped``), answerable
questions answered right at the bot's threshold, and all questions answered
wrongly, on the half of the file ``SIMILAR`` was chosen on (0.5, 0.6, 0.7):
0.584 wrapped, 0.618 focused (wrong 0.092 -> 0.094); the questions as written
lost nothing (0.661, 0.099). On the other half, measured once after the
choice: 0.542 wrapped, 0.574 focused (wrong 0.102 -> 0.099). About a third of
what wrapping costs is won back; the rest is wrapping this list does not
recognise, left in rather than risk leaving out a sentence that asks.
``SIMILAR_AT_EDGES`` (0.4; 0.5 and 0.6 tried) was chosen for the urgency
triage, on the same half: urgent messages read urgent by the examples and
the classifier, wrapped, 0.791 -> 0.843; the search's figures moved by a
question (0.618 -> 0.622, wrong 0.094 -> 0.097; as written unchanged). With
it, the other half (measured a second time): 0.542 wrapped, 0.601 focused
(wrong 0.102 -> 0.099).

Tried and left out, on the same half: leaving out every sentence far (a
cosine 0.2 below) from the articles compared with the best one. It answered
more wrapped questions (0.638) but more of them wrongly (0.105), and cost
the questions as written (0.659, 0.103): short sentences that carry the
question ("But it is not here.") are far from every article too. Searching
both the whole message and its focus and keeping the more confident
answered more wrapped questions still (0.644) and wrongly more often (0.118).

An opening or a closing typed onto the question without punctuation ("hey
where is my parcel", "...i can hear hissing Have a nice day :)") is one
sentence to the splitter. So the first sentence's first words and the last
one's last words (up to ``EDGE_WORDS``, ``edge_runs``) are read too: at each
end the longest run that is a pleasantry (``SIMILAR``, and closer to one than
to every chunk) and whose rest is no farther from the articles than the whole
sentence (within ``REST_SLACK``) becomes a sentence of its own, which the rule
above then leaves out. "help me change my address" keeps its "help" (the
rest is farther from the articles). Measured on the even half, search alone
(``kb_search.py --quick --wrapped --wrapped-half even --domains bench/data/domains_dev``, the seven development
help centres, answered right / wrongly at the bot's threshold, averaged over
the industries by their questions): wrapped 0.622 / 0.091 -> 0.630 / 0.092;
as written 0.661 / 0.093 -> 0.663 / 0.093. Taking at each end the run most
like a pleasantry instead of the longest: wrapped 0.626 / 0.094. Ending
an opening before the first word that may begin the question (an
interrogative, auxiliary, pronoun or determiner: "hey | can I change my
address", not "hey can I | change my address") and a punctuated one at its
own mark: wrapped 0.620 / 0.094, as written unchanged. The question's
function words cost the search more than a cut question costs it. Only the
search splits these runs off: read by the hub's urgency triage and Rasa too
(``as_searched(edges=False)`` is what they read), they cost urgent recall on
wrapped held-out messages (0.920 -> 0.877).

A long message (an e-mail) is read up to ``MAX_PARTS`` sentences and lines,
and when what is left after its pleasantries is still longer than a query may
be (``knowledge_base.service.MAX_QUERY_CHARS``, 1,000 characters), only the
sentences closest to the articles that fit, in the message's order
(``within``). Before, such a message could not be searched at all: the bot's
search answered 400 and the customer was handed off as "kb-unavailable".
Measured on the development help centres' long e-mails
(``bench/kb_search.py --long``: 112 answerable and unanswerable questions,
each written into an e-mail of 720-1,540 characters, about half longer than
1,000), answered right at the bot's threshold / answered wrongly: 0.726 /
0.098 read this way; 0.643 / 0.107 reading the first 1,000 characters; the
same questions asked alone, 0.655 / 0.089 (the e-mail's details help).
Keeping fewer characters of the closest sentences lost: 0.714 / 0.134 at 600,
0.655 / 0.170 at 400, 0.500 / 0.205 at 150.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A sentence at least this close to a pleasantry, and closer to it than to any chunk, is left out.
SIMILAR = 0.6
# The same for the first and the last sentence, where customers put their greetings and sign-offs.
SIMILAR_AT_EDGES = 0.4
# A longer message (an e-mail) is read up to this many sentences and lines: each costs an embedding.
MAX_PARTS = 40
PLEASANTRIES = (
    # greetings
    "hi", "hello", "hey there", "hi team", "hello support", "good morning", "good afternoon", "good evening",
    "dear customer service", "greetings", "hiya", "hi all",
    # well-wishes, apologies, lead-ins with no question in them
    "I hope you are well", "hope you're having a great day", "I hope this message finds you well",
    "sorry to bother you", "apologies for the trouble", "I hope you can help me", "can someone help me please",
    "I need some help", "I have a question", "quick question", "I was wondering if you could help me",
    "I'm not sure who to ask about this", "I'm writing to ask for your help", "please help",
    # about the writer
    "I have been a customer for many years", "I've never had to contact you before", "my name is Sarah",
    "I'm a new customer", "I tried everything and I'm stuck", "I've been trying to figure this out all day",
    "this is my first time writing to you", "I'm a bit confused",
    # thanks and closings
    "thanks", "thank you", "thank you so much", "thanks in advance", "many thanks", "cheers", "much appreciated",
    "I appreciate your help", "thanks for your help", "any help would be appreciated", "thanks, have a nice day",
    "looking forward to hearing from you", "please get back to me soon", "please reply as soon as you can",
    "kind regards", "best regards", "best wishes", "regards, John", "sincerely", "thanks, Maria",
    "sent from my iPhone", "sent from my Android phone", "get Outlook for iOS", "sent from my mobile",
)  # fmt: skip
_PARTS = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
# An opening or a closing run onto the question without punctuation ("hey where is my parcel",
# "...i can hear hissing Have a nice day :)") is looked for in this many first and last words.
EDGE_WORDS = 6
# Such a run is split off only when the rest of its sentence is no farther (within this cosine) from
# the articles than the whole sentence: "help me change my address" keeps its "help". The slack lets
# the closing of a sentence that still has its opening go ("hi <question> many thanks").
REST_SLACK = 0.02


def parts(text: str) -> list[str]:
    """The message's sentences and lines, each with its whitespace collapsed, empty ones dropped."""
    found = (" ".join(part.split()) for part in _PARTS.split(text))
    return [part for part in found if part]


def edge_runs(sentences: Sequence[str]) -> list[tuple[int, int]]:
    """Where an opening or a closing may run onto the question unpunctuated: (sentence, words)
    for the first sentence's first 1..``EDGE_WORDS`` words (``words`` > 0) and the last
    sentence's last ones (``words`` < 0), always leaving two words of the sentence."""
    if not sentences:
        return []
    last = len(sentences) - 1
    runs: list[tuple[int, int]] = []
    for at, sign in ((0, 1), (last, -1)):
        count = len(sentences[at].split())
        # One sentence alone is cut at both ends: leave two words between its opening and its closing.
        room = count - 2 if at != last or last != 0 else (count - 2) // 2
        runs += [(at, sign * words) for words in range(1, min(EDGE_WORDS, room) + 1)]
    return runs


def run_text(sentences: Sequence[str], run: tuple[int, int]) -> tuple[str, str]:
    """An ``edge_runs`` run's words and the rest of its sentence."""
    at, words = run
    split = sentences[at].split()
    if words > 0:
        return " ".join(split[:words]), " ".join(split[words:])
    return " ".join(split[words:]), " ".join(split[:words])


def split_runs(sentences: Sequence[str], runs: Sequence[tuple[int, int]]) -> list[str]:
    """``sentences`` with ``runs`` (at most one opening and one closing) split off as sentences of their own."""
    out = list(sentences)
    opening = [run for run in runs if run[1] > 0]
    closing = [run for run in runs if run[1] < 0]
    if len(opening) > 1 or len(closing) > 1:
        raise ValueError(f"at most one opening and one closing run: {list(runs)}")
    if closing:
        words, rest = run_text(out, closing[0])
        out[closing[0][0] : closing[0][0] + 1] = [rest, words]
    if opening:
        words, rest = run_text(out, opening[0])
        out[0:1] = [words, rest]
    return out


def kept(sentences: Sequence[str], pleasantry: Sequence[float], article: Sequence[float]) -> list[int]:
    """The positions of the sentences that are not pleasantries (all of them when every one is).

    ``pleasantry``: each sentence's best cosine to ``PLEASANTRIES``; ``article``: to the knowledge base's chunks.
    """
    last = len(sentences) - 1
    found = [
        at
        for at, (to_pleasantry, to_article) in enumerate(zip(pleasantry, article, strict=True))
        if not (to_pleasantry >= (SIMILAR_AT_EDGES if at in (0, last) else SIMILAR) and to_pleasantry > to_article)
    ]
    return found or list(range(len(sentences)))


def within(sentences: Sequence[str], article: Sequence[float], limit: int) -> str:
    """The sentences joined in order, or, when that is longer than ``limit`` characters, those of
    them closest to the knowledge base (``article``: each one's best cosine to its chunks) that fit,
    still in order. The closest one alone, cut at a word, when none fits."""
    joined = " ".join(sentences)
    if len(joined) <= limit:
        return joined
    chosen: set[int] = set()
    room = limit + 1  # each sentence costs its length and a space
    for at in sorted(range(len(sentences)), key=lambda at: -article[at]):
        if len(sentences[at]) + 1 <= room:
            chosen.add(at)
            room -= len(sentences[at]) + 1
    if not chosen:
        return clip(sentences[max(range(len(sentences)), key=lambda at: article[at])], limit)
    return " ".join(sentences[at] for at in sorted(chosen))


def clip(text: str, limit: int) -> str:
    """``text`` with its whitespace collapsed and, past ``limit`` characters, cut at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    return cut.rsplit(" ", 1)[0] if " " in cut else text[:limit]
