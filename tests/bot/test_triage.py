"""Urgency by example (bot/triage.py) and the hub's triage of a message (hub/bot/triage.py).

Unit tests use the deterministic hashing embedder (texts that share words are
close); the shipped examples are checked with the real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.triage import DEFAULT_EXAMPLES, ExamplesError, UrgentExamples, load_examples
from hub.bot.triage import Triage
from hub.models import Priority
from hub.tickets.routing import Rule
from knowledge_base import HashingEmbedder

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
