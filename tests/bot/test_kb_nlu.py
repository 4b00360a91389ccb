"""What the knowledge base teaches the NLU (bot/rasa/kb_nlu.py), and the model's name for it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.rasa import kb_nlu, model
from bot.rasa.kb_nlu import ArticleOutline

PATTERNS = [re.compile(r"\b(stolen|fraud)\b", re.IGNORECASE)]


def test_titles_headings_and_listed_questions_become_question_examples() -> None:
    outlines = [
        ArticleOutline(
            title="Ride prices", headings=("Day pass", "Annual pass"), questions=("How much is a day pass?",)
        ),
        ArticleOutline(title="Unlock a bike", headings=("Unlock a bike", "Return a bike")),
    ]
    found = kb_nlu.examples(outlines, taken={}, patterns=[])
    # Listed questions first, then titles, then headings; each group sorted; duplicates once.
    assert found == [
        "How much is a day pass?", "Ride prices", "Unlock a bike", "Annual pass", "Day pass", "Return a bike",
    ]  # fmt: skip


def test_the_general_data_and_urgent_topics_win_over_the_knowledge_base() -> None:
    outlines = [
        ArticleOutline(title="Talk to a person", headings=("Report a stolen card", "Card fees")),
        ArticleOutline(title="Fraud protection [beta] {new}", questions=("(Optional) how do fees work?",)),
    ]
    found = kb_nlu.examples(outlines, taken={"talk to a person": "request_human"}, patterns=PATTERNS)
    assert found == ["Optional how do fees work?", "Card fees"]


def test_the_shipped_regex_features_keep_danger_topics_out() -> None:
    patterns = kb_nlu.urgency_patterns()
    assert patterns, "bot/rasa/data/nlu.yml has regex features"
    found = kb_nlu.examples(
        [ArticleOutline(title="Report a lost or stolen card"), ArticleOutline(title="Change your plan")],
        patterns=patterns,
    )
    assert found == ["Change your plan"]


def test_the_file_is_rasa_training_data(tmp_path: Path) -> None:
    text = kb_nlu.render(["How much is a day pass?", "Ride prices: what's included"])
    data = yaml.safe_load(text)
    assert data["version"] == "3.1"
    [block] = data["nlu"]
    assert block["intent"] == "ask_question"
    assert block["examples"].splitlines() == ["- How much is a day pass?", "- Ride prices: what's included"]
    assert yaml.safe_load(kb_nlu.render([]))["nlu"] == []


def test_at_most_max_examples_listed_questions_kept_first() -> None:
    outlines = [ArticleOutline(title=f"Title {n}", questions=(f"Question {n}?",)) for n in range(kb_nlu.MAX_EXAMPLES)]
    found = kb_nlu.examples(outlines, taken={}, patterns=[])
    assert len(found) == kb_nlu.MAX_EXAMPLES and all(example.startswith("Question") for example in found)


def test_folders_and_the_hubs_articles_give_the_same_model_name(tmp_path: Path) -> None:
    """`make rasa-model` reads files; the running hub reads its knowledge base: both must name the same model."""
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "b.md").write_text(
        "---\ntitle: Ride  prices\nquestions:\n  - How much is a day pass?\n---\n\n## Day pass\n\nNine euros.\n"
    )
    (folder / "a.md").write_text("---\ntitle: Unlock a bike\n---\n\nScan the code.\n\n## Return a bike\n\nDock it.\n")
    written = kb_nlu.write([folder], tmp_path / "out" / kb_nlu.FILE_NAME)
    from_hub = kb_nlu.render(
        kb_nlu.examples(
            [
                kb_nlu.outline_of_markdown("Unlock a bike", "Scan the code.\n\n## Return a bike\n\nDock it.\n"),
                kb_nlu.outline_of_markdown("Ride prices", "## Day pass\n\nNine euros.\n", ["How much is a day pass?"]),
            ]
        )
    )
    assert written.read_text() == from_hub
    assert model.training_hash(extra_data=[written]) == model.training_hash(
        extra_data=[tmp_path / "elsewhere" / kb_nlu.FILE_NAME],
        contents={f"extra/{kb_nlu.FILE_NAME}": from_hub.encode()},
    )
    assert model.training_hash(extra_data=[written]) != model.training_hash()
