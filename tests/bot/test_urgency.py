"""The fine-tuned urgency classifier (bot/urgency.py) and the hub training and using it (hub/bot/triage.py).

Real training with the real model, on a small set and a few steps so it takes
seconds: what is checked is the mechanics (training data, fingerprint, the
child process, loading, reading a message, a restart reusing the folder), not
the classifier's quality, which bench/bot_domains.py measures.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot import urgency
from bot.triage import DEFAULT_EXAMPLES
from hub.bot.triage import Triage

URGENT = [
    "someone stole my card and is buying things right now",
    "my account was hacked and the password changed",
    "there is a payment on my card i never made",
    "your service is down and my whole team cannot work",
    "i smell gas in the kitchen",
    "my phone was stolen and my banking app is on it",
]
NOT_URGENT = [
    "how do i order a new card",
    "how do i change my password",
    "which payment methods do you take",
    "is there planned maintenance this weekend",
    "how long does a refund take",
    "can i add a team member to my plan",
]


def _examples(tmp_path: Path, urgent: list[str] = URGENT, not_urgent: list[str] = NOT_URGENT) -> Path:
    path = tmp_path / "urgent.yml"
    lines = ["urgent:", *[f'  - "{t}"' for t in urgent], "not_urgent:", *[f'  - "{t}"' for t in not_urgent]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _nlu(tmp_path: Path) -> Path:
    path = tmp_path / "nlu.yml"
    path.write_text(
        textwrap.dedent(
            """\
            version: "3.1"
            nlu:
            - intent: greet
              examples: |
                - hello
            - intent: urgent_issue
              examples: |
                - my account has been hacked
                - i smell gas in the kitchen
            - intent: ask_question
              examples: |
                - what are your opening hours
            - intent: complaint
              examples: |
                - the parcel came late again
            """
        ),
        encoding="utf-8",
    )
    return path


def test_the_training_set_takes_the_teams_examples_and_the_nlus_urgent_and_other_intents(tmp_path: Path) -> None:
    texts, labels = urgency.training_set(_examples(tmp_path), _nlu(tmp_path))
    labelled = dict(zip(texts, labels, strict=True))
    assert labelled["my account has been hacked"] == 1
    assert labelled["what are your opening hours"] == 0 and labelled["the parcel came late again"] == 0
    assert "hello" not in labelled  # small talk is neither
    # A text in both lists is kept once, with the team's label.
    assert texts.count("i smell gas in the kitchen") == 1 and labelled["i smell gas in the kitchen"] == 1
    assert sum(labels) == len(URGENT) + 1


def test_the_fingerprint_changes_with_the_examples_the_model_and_the_steps(tmp_path: Path) -> None:
    texts, labels = urgency.training_set(_examples(tmp_path), _nlu(tmp_path))
    first = urgency.fingerprint(texts, labels, "default")
    assert first == urgency.fingerprint(texts, labels, "default")
    assert first != urgency.fingerprint([*texts, "my car was stolen"], [*labels, 1], "default")
    assert first != urgency.fingerprint(texts, [1 - labels[0], *labels[1:]], "default")
    assert first != urgency.fingerprint(texts, labels, "/models/other")
    assert first != urgency.fingerprint(texts, labels, "default", steps=10)


def test_the_shipped_examples_and_nlu_data_make_a_balanced_enough_training_set() -> None:
    texts, labels = urgency.training_set(DEFAULT_EXAMPLES)
    assert len(texts) == len(set(texts)) > 1000
    assert 0.25 < sum(labels) / len(labels) < 0.5


@pytest.mark.asyncio
async def test_the_hub_trains_the_classifier_once_and_reads_messages_with_it(tmp_path: Path) -> None:
    examples, nlu = _examples(tmp_path), _nlu(tmp_path)
    folder = tmp_path / "urgency"
    options = {"classifier_dir": folder, "classifier_steps": 4, "classifier_nlu": nlu}
    triage = Triage(embed=None, rules=None, examples_path=examples, **options)
    assert triage.classifier_state["state"] == "pending"
    assert "classifier" not in await triage("someone stole my card")  # not trained yet: absent
    await triage.run_classifier()
    assert triage.classifier_state["state"] == "ready", triage.classifier_state
    assert triage.classifier_state["steps"] == 4
    [trained] = [p for p in folder.iterdir() if p.is_dir()]
    assert urgency.is_trained(trained) and not list(folder.glob("*.partial*"))
    assert not (trained / "checkpoints").exists() and not (urgency.NLU_FILE.parents[2] / "checkpoints").exists()
    read = (await triage("someone stole my card and is buying things right now"))["classifier"]
    assert 0.0 <= read["probability"] <= 1.0
    assert read["urgent"] == (read["probability"] >= urgency.URGENT_FROM)
    assert read["not_urgent"] == (read["probability"] < urgency.NOT_URGENT_BELOW)
    assert "classifier" not in await triage("   ")
    # A message seen before is not run through the model again.
    assert triage.classifier is not None
    hits = triage.classifier._probability.cache_info().hits
    assert (await triage(" someone stole my card  and is buying things right now"))["classifier"] == read
    assert triage.classifier._probability.cache_info().hits == hits + 1

    # A restart with the same examples loads it without training again.
    stamp = (trained / urgency.DONE).stat().st_mtime_ns
    again = Triage(embed=None, rules=None, examples_path=examples, **options)
    await again.run_classifier()
    assert again.classifier_state["state"] == "ready"
    assert (trained / urgency.DONE).stat().st_mtime_ns == stamp
    # Edited examples are another training set: another folder, and the old one goes once it is ready.
    edited = _examples(tmp_path, urgent=[*URGENT, "a man is threatening me at the door"])
    changed = Triage(embed=None, rules=None, examples_path=edited, **options)
    assert changed._classifier_folder() != trained
    leftover = folder / f"{trained.name}.partial-999999999"  # an interrupted training (no such process)
    leftover.mkdir()
    await changed.run_classifier()
    assert changed.classifier_state["state"] == "ready"
    assert [p.name for p in folder.iterdir()] == [changed._classifier_folder().name]


@pytest.mark.asyncio
async def test_a_training_that_fails_leaves_the_classifier_off_and_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    triage = Triage(
        embed=None,
        rules=None,
        examples_path=_examples(tmp_path),
        classifier_dir=tmp_path / "urgency",
        classifier_model=broken,
        classifier_steps=2,
        classifier_nlu=_nlu(tmp_path),
    )
    await triage.run_classifier()
    assert triage.classifier_state["state"] == "failed"
    assert "training failed" in triage.classifier_state["error"]
    assert triage.classifier is None
    assert "classifier" not in await triage("someone stole my card")


@pytest.mark.asyncio
async def test_the_classifier_is_off_without_a_folder(tmp_path: Path) -> None:
    triage = Triage(embed=None, rules=None, examples_path=_examples(tmp_path))
    await triage.run_classifier()
    assert triage.classifier_state == {"state": "off"} and triage.classifier is None
