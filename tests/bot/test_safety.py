"""A customer who may harm themselves, or whose life is threatened: the safety signal (bot.safety)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import safety
from bot.actions import ActionAnswerFromKB, messages
from bot.actions.routing import route
from hub.bot.triage import Triage

from .conftest import FakeKnowledgeBase
from .test_actions import parse, payloads, run, texts, tracker


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("honestly thinking about suicide, can you close my account", ["thinking about suicide"]),
        ("i'm going to hurt myself if this isn't sorted", ["hurt myself"]),
        ("I DON\u2019T want to be here anymore", ["dont want to be here anymore"]),
        ("he said he's gonna kill me if I don't pay", ["gonna kill me"]),
        ("I want to end my life", ["end my life"]),
        ("just delete it all, nobody would miss me", ["nobody would miss me"]),
        ("cancel everything, I don’t see the point of anything anymore", ["dont see the point of anything"]),
        ("honestly everyone would be better off without me", ["better off without me"]),
        ("I can't go on anymore, close the account", ["cant go on anymore"]),
    ],
)
def test_the_phrases_are_found_whatever_the_case_and_apostrophes(text: str, found: list[str]) -> None:
    assert safety.matches(text) == found


@pytest.mark.parametrize(
    "text",
    [
        "how do I kill the subscription before it renews",
        "is suicide squad on your service",
        "my phone died, can I reset my password by email",
        "the self-checkout harmed nobody but charged me twice",
        "selfharm",  # one word, not the phrase
        "I don't see the point of the premium plan if downloads don't work",
        "we can't go on with the repair until the insurer pays",
        "is the extended warranty worth it? the old one was not worth the money",
        "",
    ],
)
def test_ordinary_messages_match_nothing(text: str) -> None:
    assert safety.matches(text) == []


def test_a_teams_own_phrases_add_to_the_shipped_ones(tmp_path: Path) -> None:
    path = tmp_path / "examples.yml"
    path.write_text(yaml.safe_dump({"urgent": ["a"], "not_urgent": ["b"], "safety": ["  can't   go on "]}))
    phrases = safety.phrases_for(path)
    assert set(safety.PHRASES) < set(phrases) and "can't go on" in phrases
    assert safety.matches("I just can't go on like this", phrases) == ["can't go on"]
    assert safety.phrases_for(tmp_path / "missing.yml") == safety.PHRASES
    assert safety.phrases_for(None) == safety.PHRASES


@pytest.mark.asyncio
async def test_the_hubs_triage_reports_the_phrases_without_any_model(tmp_path: Path) -> None:
    triage = Triage(embed=None, rules=None, examples_path=tmp_path / "none.yml")
    assert await triage("nobody cares, I'm going to kill myself") == {"safety": ["kill myself"]}
    assert await triage("where is my order") == {}


def test_nothing_overrules_it() -> None:
    vetoes: dict[str, Any] = {
        "classifier": {"probability": 0.004, "urgent": False, "not_urgent": True},
        "examples": {"urgent": False, "clearly_not_urgent": True, "margin": -0.2},
        "safety": ["hurt myself"],
    }
    message = {**parse("i'm going to hurt myself if this isn't sorted", "ask_question", 1.0)}
    without = {"triage": {k: v for k, v in vetoes.items() if k != "safety"}}
    assert route({**message, "metadata": without}).priority is None
    decision = route({**message, "metadata": {"triage": vetoes}})
    assert decision.priority == "urgent" and decision.signals == ("safety",)


@pytest.mark.asyncio
async def test_the_handoff_says_where_to_get_help_now(fake_kb: FakeKnowledgeBase) -> None:
    triage = {"safety": ["thinking about suicide"], "classifier": {"probability": 0.01, "not_urgent": True}}
    state = tracker(parse("honestly thinking about suicide, can you close my account", "ask_question", 1.0),
                    metadata={"triage": triage})  # fmt: skip
    sent, _ = await run(ActionAnswerFromKB(), state)
    assert fake_kb.requests == []
    [payload] = payloads(sent)
    assert payload["priority"] == "urgent" and payload["decision"]["signals"] == ["safety"]
    assert texts(sent) == [f"{messages.HANDOFF['urgent']} {messages.SAFETY}"]

    ordinary = tracker(parse("someone took money out of my account", "ask_question", 0.9),
                       metadata={"triage": {"rules": [7]}})  # fmt: skip
    sent, _ = await run(ActionAnswerFromKB(), ordinary)
    assert texts(sent) == [messages.HANDOFF["urgent"]]
