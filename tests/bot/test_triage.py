"""Urgency by example (bot/triage.py) and the hub's triage of a message (hub/bot/triage.py).

Unit tests use the deterministic hashing embedder (texts that share words are
close); the shipped examples are checked with the real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot import urgency
from bot.triage import DEFAULT_EXAMPLES, ExamplesError, UrgentExamples, load_examples
from hub.bot.triage import Triage
from hub.models import Priority
from hub.tickets.routing import Rule
from knowledge_base import HashingEmbedder
from knowledge_base.focus import parts

EMBEDDER = HashingEmbedder(dimension=512)

URGENT = [
    "someone stole my card and is buying things right now",
    "my card was stolen this morning and there are charges",
    "my account was hacked and the password changed",
    "a stranger logged into my account and changed my email",
    "i was charged twice for the same order today",
    "there is a payment on my card i never made",
    "your service is down and my whole team cannot work",
    "the app is down and we are losing sales",
]
NOT_URGENT = [
    "how do i order a new card",
    "what are the card fees abroad",
    "how do i change my password",
    "how do i change the email on my account",
    "how long does a refund take",
    "which payment methods do you take",
    "is there a status page for planned maintenance",
    "can i add a team member to my plan",
]


def test_calibration_keeps_false_urgent_within_the_allowance() -> None:
    examples = UrgentExamples(URGENT, NOT_URGENT, EMBEDDER.embed_documents, min_similarity=0.0, max_false_urgent=0.0)
    calibration = examples.calibration
    assert calibration.loo_false_urgent == 0.0  # no not-urgent example passes, scored against the others
    assert calibration.urgent_examples == len(URGENT) and calibration.not_urgent_examples == len(NOT_URGENT)


def test_a_new_message_is_judged_by_its_nearest_examples() -> None:
    examples = UrgentExamples(URGENT, NOT_URGENT, EMBEDDER.embed_documents, min_similarity=0.0, max_false_urgent=0.0)
    urgent = examples.match(EMBEDDER.embed_query("help my card was stolen and someone is buying things"))
    assert urgent.urgent and urgent.margin > 0
    assert urgent.nearest in URGENT
    near_miss = examples.match(EMBEDDER.embed_query("how do i order a new card and what are the fees"))
    assert not near_miss.urgent and near_miss.margin < urgent.margin
    assert set(urgent.as_dict()) == {"urgent", "clearly_not_urgent", "margin", "similarity", "nearest"}
    assert not urgent.clearly_not_urgent


def test_the_not_urgent_floor_lies_below_the_urgent_examples() -> None:
    examples = UrgentExamples(URGENT, NOT_URGENT, EMBEDDER.embed_documents, min_similarity=0.0, max_false_urgent=0.0)
    floor = examples.calibration.not_urgent_below
    assert floor <= examples.calibration.threshold
    # Scored against the others, (almost) every urgent example stays above the floor...
    kept = [examples.match(EMBEDDER.embed_query(text)).margin >= floor for text in URGENT]
    assert all(kept)
    # ...while a message made of a not-urgent example's words falls below it.
    calm = examples.match(EMBEDDER.embed_query("what are the card fees abroad"))
    assert calm.clearly_not_urgent and not calm.urgent and calm.as_dict()["clearly_not_urgent"] is True


def test_a_stricter_allowance_never_lowers_the_threshold() -> None:
    loose = UrgentExamples(
        URGENT, NOT_URGENT, EMBEDDER.embed_documents, min_similarity=0.0, max_false_urgent=0.5
    ).calibration
    strict = UrgentExamples(
        URGENT, NOT_URGENT, EMBEDDER.embed_documents, min_similarity=0.0, max_false_urgent=0.0
    ).calibration
    assert strict.threshold >= loose.threshold
    assert strict.loo_recall <= loose.loo_recall
    assert loose.loo_recall > 0.0 and loose.loo_false_urgent <= 0.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("urgent: [a, b]\nnot_urgent: [c, d, e, f, g]\n", "'urgent' needs at least"),
        ("just a string", "'urgent' needs at least"),
        ("urgent: [\n", "cannot read"),
    ],
)
def test_a_bad_examples_file_says_what_is_wrong(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "examples.yml"
    path.write_text(text)
    with pytest.raises(ExamplesError, match=match):
        load_examples(path)


def test_the_shipped_examples_are_broad_and_disjoint() -> None:
    urgent, not_urgent = load_examples(DEFAULT_EXAMPLES)
    assert len(urgent) >= 200 and len(not_urgent) >= 200
    assert not {u.casefold() for u in urgent} & {n.casefold() for n in not_urgent}
    text = DEFAULT_EXAMPLES.read_text().lower()
    for shop_word in ("tent", "trail club", "northwind", "jacket"):
        assert shop_word not in text


@pytest.mark.asyncio
async def test_the_hubs_triage_reports_both_signals(tmp_path: Path) -> None:
    path = tmp_path / "examples.yml"
    import yaml

    path.write_text(yaml.safe_dump({"urgent": URGENT, "not_urgent": NOT_URGENT}))
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return EMBEDDER.embed_documents(texts)

    rules = [
        Rule(id=7, kind="keyword", params={"words": ["stolen"]}, priority=Priority.URGENT),
        Rule(id=8, kind="keyword", params={"words": ["card"]}, priority=Priority.HIGH),
        Rule(id=9, kind="keyword", params={"words": ["stolen"]}, priority=Priority.URGENT, enabled=False),
    ]

    async def current_rules() -> list[Rule]:
        return rules

    triage = Triage(embed=embed, rules=current_rules, examples_path=path, max_false_urgent=0.0)
    assert await triage("my card was stolen") == {"rules": [7]}  # examples not loaded yet: rules only
    await triage.load()
    result = await triage("help my card was stolen and someone is buying things")
    assert result["examples"]["urgent"] is True
    assert result["rules"] == [7]  # only enabled urgent rules
    calm = await triage("how do i change my password")
    assert calm["examples"]["urgent"] is False and "rules" not in calm


@pytest.mark.asyncio
async def test_a_broken_examples_file_leaves_the_signal_off(tmp_path: Path) -> None:
    path = tmp_path / "examples.yml"
    path.write_text("urgent: []\n")

    async def embed(texts: list[str]) -> np.ndarray:
        return EMBEDDER.embed_documents(texts)

    triage = Triage(embed=embed, rules=None, examples_path=path)
    await triage.load()
    assert triage.examples is None
    assert await triage("my card was stolen") == {}


class KeywordClassifier:
    """Stands in for the fine-tuned classifier (trained for real in tests/bot/test_urgency.py): urgent
    when the text names a theft, or is the fragment ``fragment`` a classifier may misread."""

    def __init__(self, fragment: str = "") -> None:
        self.fragment = fragment
        self.read_texts: list[str] = []

    def read(self, text: str) -> dict[str, object]:
        self.read_texts.append(text)
        probability = 0.99 if "stole" in text or text == self.fragment else 0.01
        return {"probability": probability, "urgent": probability >= 0.95, "not_urgent": probability < 0.1}


async def _wrapped_triage(tmp_path: Path, **options: object) -> Triage:
    import yaml

    path = tmp_path / "examples.yml"
    path.write_text(yaml.safe_dump({"urgent": URGENT, "not_urgent": NOT_URGENT}))

    async def embed(texts: list[str]) -> np.ndarray:
        return EMBEDDER.embed_documents(texts)

    triage = Triage(embed=embed, rules=None, examples_path=path, max_false_urgent=0.0, **options)  # type: ignore[arg-type]
    await triage.load()
    return triage


WRAPPED = (
    "Hello there, first time writing in so apologies if this is the wrong place, I hope you are all well.\n"
    "someone stole my card and is buying things right now\n"
    "Thanks so much for reading this, have a lovely evening, Sam"
)


async def without_first_and_last_lines(text: str) -> str:
    """As the knowledge base leaves out an opening and a closing line (``KnowledgeBase.as_searched``)."""
    lines = text.split("\n")
    return " ".join(lines[1:-1]) if len(lines) > 2 else " ".join(text.split())


async def without_a_first_hello(text: str) -> str:
    return " ".join(text.removeprefix("Hello. ").split())


@pytest.mark.asyncio
async def test_a_sentence_both_models_call_urgent_makes_a_wrapped_message_urgent(tmp_path: Path) -> None:
    triage = await _wrapped_triage(tmp_path, as_searched=without_first_and_last_lines)
    triage.classifier = classifier = KeywordClassifier()  # type: ignore[assignment]
    result = await triage(WRAPPED)
    line = "someone stole my card and is buying things right now"
    assert result["searched"] == line and result["sentence"] == line
    assert result["examples"]["urgent"] is True and result["classifier"]["urgent"] is True
    assert result["examples"]["nearest"] == line
    # The whole message, the message as searched, then the one sentence the examples found urgent.
    assert classifier.read_texts == [WRAPPED, line, line]
    # A message of one sentence, searched as typed, is read whole, once.
    triage.classifier = classifier = KeywordClassifier()  # type: ignore[assignment]
    single = await triage("how do i change my password")
    assert "sentence" not in single and "searched" not in single
    assert classifier.read_texts == ["how do i change my password"]


@pytest.mark.asyncio
async def test_a_sentence_only_one_model_calls_urgent_does_not_count(tmp_path: Path) -> None:
    triage = await _wrapped_triage(tmp_path, as_searched=without_a_first_hello)
    # The classifier misreads a fragment; the examples do not find it urgent: not enough.
    triage.classifier = KeywordClassifier(fragment="my daughter is 3.")  # type: ignore[assignment]
    result = await triage("Hello. Can i add a team member to my plan? my daughter is 3.")
    assert result["searched"] == "Can i add a team member to my plan? my daughter is 3."
    assert "sentence" not in result
    assert result["classifier"]["urgent"] is False
    # The examples find a sentence urgent; the classifier does not: not enough either.
    triage.classifier = KeywordClassifier()  # type: ignore[assignment]
    result = await triage("Hello. there is a payment on my card i never made")
    assert "sentence" not in result and result["classifier"]["urgent"] is False


class ShortIsUrgent(KeywordClassifier):
    """Reads a theft as urgent only without much else around it (as wrapping dilutes a model's reading)."""

    def read(self, text: str) -> dict[str, object]:
        self.read_texts.append(text)
        probability = (0.99 if len(text.split()) <= 12 else 0.5) if "stole" in text else 0.01
        return {"probability": probability, "urgent": probability >= 0.95, "not_urgent": probability < 0.1}


@pytest.mark.asyncio
async def test_the_message_as_searched_is_read_too_and_the_more_urgent_reading_counts(tmp_path: Path) -> None:
    searched: list[str] = []

    async def as_searched(text: str) -> str:
        searched.append(text)
        lines = text.split("\n")
        return lines[1] if len(lines) == 3 else text  # as the knowledge base leaves out the opening and the closing

    triage = await _wrapped_triage(tmp_path, as_searched=as_searched)
    triage.examples = None  # the classifier's readings only: no sentence of its own counts without the examples
    triage.classifier = classifier = ShortIsUrgent()  # type: ignore[assignment]
    result = await triage(WRAPPED)
    assert searched == [WRAPPED]
    assert classifier.read_texts == [WRAPPED, "someone stole my card and is buying things right now"]
    # The message whole reads 0.5, as searched 0.99: the more urgent reading is the one passed on.
    assert result["classifier"] == {"probability": 0.99, "urgent": True, "not_urgent": False}
    # A message the search searches as typed is read once.
    classifier.read_texts.clear()
    await triage("someone stole my card")
    assert classifier.read_texts == ["someone stole my card"]


@pytest.mark.asyncio
async def test_a_misspelt_message_is_read_as_corrected(tmp_path: Path) -> None:
    async def as_searched(text: str) -> str:
        return text.replace("stoel", "stole")  # as the knowledge base corrects it

    triage = await _wrapped_triage(tmp_path, as_searched=as_searched)
    triage.classifier = classifier = KeywordClassifier()  # type: ignore[assignment]
    result = await triage("somone stoel my card and is buying things right now")
    assert result["searched"] == "somone stole my card and is buying things right now"
    assert classifier.read_texts == ["somone stoel my card and is buying things right now", result["searched"]]
    assert result["classifier"]["urgent"] is True and "sentence" not in result
    # Corrected, not wrapped: the corrected reading replaces the typed one, even when it is calmer.
    calm = await triage("how do i change my pasword stoel")
    assert calm["classifier"]["probability"] == 0.99  # "stoel" -> "stole": the stand-in reads a theft
    triage.classifier = KeywordClassifier()  # type: ignore[assignment]

    async def calmer(text: str) -> str:
        return text.replace("stole", "stone")

    triage.as_searched = calmer
    assert (await triage("my card stole at the shop"))["classifier"]["urgent"] is False


@pytest.mark.asyncio
async def test_triage_goes_on_when_the_message_as_searched_is_unavailable(tmp_path: Path) -> None:
    async def broken(text: str) -> str:
        raise RuntimeError("knowledge base closed")

    triage = await _wrapped_triage(tmp_path, as_searched=broken)
    result = await triage("my card was stolen this morning and there are charges")
    assert result["examples"]["urgent"] is True


@pytest.mark.asyncio
async def test_a_wrapped_messages_sentences_come_from_the_searchs_vector_cache(tmp_path: Path) -> None:
    queried: list[str] = []
    documents: list[list[str]] = []

    async def embed_query(text: str) -> np.ndarray:
        queried.append(text)
        return EMBEDDER.embed_query(text)

    triage = await _wrapped_triage(tmp_path, as_searched=without_first_and_last_lines, embed_query=embed_query)
    original = triage.embed
    assert original is not None

    async def embed(texts: list[str]) -> np.ndarray:
        documents.append(list(texts))
        return await original(texts)

    triage.embed = embed
    triage.classifier = KeywordClassifier()  # type: ignore[assignment]
    result = await triage(WRAPPED)
    assert result["sentence"] == "someone stole my card and is buying things right now"
    # Each sentence as a query (the cache the search's focus filled), none embedded a second way.
    assert set(parts(WRAPPED)) <= set(queried) and documents == []


class SureOfLongMessages(KeywordClassifier):
    """Calls every long text urgent, as the real classifier does with texts far longer than it learnt from."""

    def read(self, text: str) -> dict[str, object]:
        if len(text.split()) > 30:
            self.read_texts.append(text)
            return {"probability": 0.99, "urgent": True, "not_urgent": False}
        return super().read(text)


CALM_STORY = (
    " ".join(f"On day {day} we looked at the plans and the prices again." for day in range(1, 8))
    + " Can i add a team member to my plan?"
)


@pytest.mark.asyncio
async def test_a_long_message_is_read_by_the_classifier_sentence_by_sentence(tmp_path: Path) -> None:
    async def as_typed(text: str) -> str:
        return " ".join(text.split())  # nothing left out: not wrapped

    triage = await _wrapped_triage(tmp_path, as_searched=as_typed)
    triage.classifier = classifier = SureOfLongMessages()  # type: ignore[assignment]
    assert len(CALM_STORY.split()) > urgency.MAX_WORDS
    calm = await triage(CALM_STORY)
    # Not read whole (it would be "urgent"), and no sentence of it is urgent to both models, or leans so.
    assert "classifier" not in calm and "sentence" not in calm
    assert calm["long_leans_urgent"] is False
    assert all(len(text.split()) <= urgency.MAX_WORDS for text in classifier.read_texts)

    line = "someone stole my card and is buying things right now."
    urgent = await triage(f"{CALM_STORY} {line}")
    assert urgent["sentence"] == line and urgent["classifier"]["urgent"] is True
    assert urgent["examples"]["urgent"] is True and urgent["long_leans_urgent"] is True
    # A sentence only leaning urgent to the examples (closer to their urgent side, not past the
    # threshold), urgent to the classifier: the message leans urgent, without an urgent sentence.
    leaning = "someone stole my card and is buying things, how long does a refund take."
    assert triage.examples is not None
    match = triage.examples.match(EMBEDDER.embed_query(leaning))
    assert match.margin >= 0 and not match.urgent
    leans = await triage(f"{CALM_STORY} {leaning}")
    assert "sentence" not in leans and leans["long_leans_urgent"] is True
    # A message as short as the classifier's own data is read whole, as before, and not marked.
    classifier.read_texts.clear()
    short = await triage("how do i change my password")
    assert classifier.read_texts == ["how do i change my password"] and short["classifier"]["urgent"] is False
    assert "long_leans_urgent" not in short


@pytest.mark.asyncio
async def test_a_long_message_leans_urgent_only_if_rasa_reads_a_leaning_sentence_as_urgent(tmp_path: Path) -> None:
    """Rasa's /model/parse (``parse``) reads each sentence that leans urgent to the examples and the
    classifier; the message leans urgent when it reads one as ``urgent_issue``, and when it cannot
    be asked. The sentences asked and its readings are recorded."""

    async def as_typed(text: str) -> str:
        return " ".join(text.split())

    asked: list[str] = []
    urgent_to_rasa: set[str] = set()
    down = False

    ranked_urgent: dict[str, float] = {}

    async def parse(text: str) -> dict[str, object]:
        asked.append(text)
        if down:
            raise ConnectionError("Rasa is restarting")
        urgent = text in urgent_to_rasa
        return {
            "intent": {"name": "urgent_issue" if urgent else "ask_question", "confidence": 0.9},
            "intent_ranking": [
                {"name": "urgent_issue", "confidence": 0.9 if urgent else ranked_urgent.get(text, 0.05)}
            ],
        }

    triage = await _wrapped_triage(tmp_path, as_searched=as_typed, parse=parse)
    triage.classifier = SureOfLongMessages()  # type: ignore[assignment]
    leaning = "someone stole my card and is buying things, how long does a refund take."
    message = f"{CALM_STORY} {leaning}"

    read = await triage(message)
    assert asked == [leaning], "only the sentence leaning urgent to both models is asked about"
    assert read["long_leans_urgent"] is False
    assert read["rasa_read"] == [{"sentence": leaning, "intent": "ask_question", "urgent_issue": 0.05}]

    # Not the top intent, but urgent_issue ranked at HUB_BOT_URGENT_ESCALATION (0.3) or more: urgent,
    # as Rasa's ``nlu`` signal reads a whole message (bot.actions.routing.reads_urgent).
    ranked_urgent[leaning] = 0.3
    read = await triage(message)
    assert read["long_leans_urgent"] is True
    assert read["rasa_read"] == [{"sentence": leaning, "intent": "ask_question", "urgent_issue": 0.3}]
    ranked_urgent[leaning] = 0.29
    assert (await triage(message))["long_leans_urgent"] is False

    urgent_to_rasa.add(leaning)
    read = await triage(message)
    assert read["long_leans_urgent"] is True
    assert read["rasa_read"] == [{"sentence": leaning, "intent": "urgent_issue", "urgent_issue": 0.9}]

    # The bridge holds Rasa (restarting, a stranger on its port): not asked, the sentence leans.
    asked.clear()
    read = await triage(message, rasa=False)
    assert asked == [] and read["long_leans_urgent"] is True and "rasa_read" not in read
    urgent_to_rasa.clear()
    assert (await triage(message, rasa=False))["long_leans_urgent"] is True and asked == []

    down = True
    read = await triage(message)
    assert read["long_leans_urgent"] is True and "rasa_read" not in read
    # A calm story has no leaning sentence: Rasa is not asked.
    asked.clear()
    down = False
    assert (await triage(CALM_STORY))["long_leans_urgent"] is False and asked == []
