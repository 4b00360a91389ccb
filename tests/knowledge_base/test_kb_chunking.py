from __future__ import annotations

from knowledge_base.articles import build_article
from knowledge_base.chunking import chunk_article
from knowledge_base.excerpt import ITEM, ROW, SENTENCE, split_units
from knowledge_base.rendering import render_markdown

BODY = """Intro paragraph about refunds.

## How long refunds take

Refunds take **5 business days**.

- Cards: 3-10 days
- PayPal: 1-2 days

### Card refunds

Card refunds go to the original card.

#### A detail

Detail text stays in the card section.

## Partial refunds

| Case | Result |
|---|---|
| Half returned | Half refunded |

## Empty section

## Partial refunds

Second section with the same heading.
"""


def make(body: str = BODY, title: str = "Refunds") -> list:
    return chunk_article(build_article("default", "refunds", title=title, body_markdown=body))


def test_sections_follow_headings() -> None:
    chunks = make()
    assert [(c.anchor, c.heading) for c in chunks] == [
        ("", "Refunds"),
        ("how-long-refunds-take", "How long refunds take"),
        ("card-refunds", "Card refunds"),
        ("partial-refunds", "Partial refunds"),
        ("partial-refunds-1", "Partial refunds"),
    ]
    by_anchor = {c.anchor: c for c in chunks}
    assert by_anchor["how-long-refunds-take"].text == (
        "Refunds take 5 business days.\n- Cards: 3-10 days\n- PayPal: 1-2 days"
    )
    assert "Detail text stays" in by_anchor["card-refunds"].text
    assert by_anchor["card-refunds"].heading_path == ("How long refunds take", "Card refunds")
    assert by_anchor["partial-refunds"].text == "Case | Result\nHalf returned | Half refunded"
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_anchors_are_the_rendered_heading_ids() -> None:
    rendered_ids = {heading.anchor for heading in render_markdown(BODY).headings}
    for chunk in make():
        if chunk.anchor:
            assert chunk.anchor in rendered_ids
            assert f'id="{chunk.anchor}"' in render_markdown(BODY).html


def test_ids_and_hashes_are_stable_across_unrelated_edits() -> None:
    before = {c.id: c.digest("m") for c in make()}
    edited = BODY.replace("Card refunds go to the original card.", "Card refunds go back to the card you paid with.")
    after = {c.id: c.digest("m") for c in make(edited)}
    assert before.keys() == after.keys()
    changed = [chunk_id for chunk_id in before if before[chunk_id] != after[chunk_id]]
    assert changed == ["refunds/card-refunds/0"]


def test_title_is_part_of_every_embedded_text() -> None:
    chunks = make(title="Money back")
    assert all(c.embed_text.startswith("Money back.") for c in chunks)
    assert "How long refunds take > Card refunds." in chunks[2].embed_text
    assert make(title="Other")[1].digest("m") != chunks[1].digest("m")


def test_digest_depends_on_the_embedder() -> None:
    chunk = make()[0]
    assert chunk.digest("model-a") != chunk.digest("model-b")


def test_long_sections_are_split_at_block_and_sentence_boundaries() -> None:
    paragraph = " ".join(f"Sentence {n} explains one more detail of the process." for n in range(40))
    body = f"## Long\n\n{paragraph}\n\nA short closing paragraph.\n"
    chunks = make(body)
    assert len(chunks) >= 3
    assert all(len(c.text) <= 900 for c in chunks)
    assert [c.id for c in chunks] == [f"refunds/long/{n}" for n in range(len(chunks))]
    assert all(c.text.endswith((".", "paragraph.")) for c in chunks)
    assert " ".join(c.text for c in chunks).replace("\n", " ") == f"{paragraph} A short closing paragraph."


def test_an_article_without_body_still_gets_one_chunk() -> None:
    chunks = make(body="")
    assert len(chunks) == 1
    assert chunks[0].text == "Refunds"
    assert chunks[0].anchor == ""


PLAN_ROWS = [
    (f"Plan {n}", f"{n * 5} GB of data, calls and texts included, roaming in {n} countries at no extra cost")
    for n in range(1, 16)
]
LONG_TABLE = "| Plan | What you get |\n|---|---|\n" + "\n".join(f"| {name} | {what} |" for name, what in PLAN_ROWS)
LONG_LIST = "\n".join(
    f"- Step {n}: check the router's light number {n}, then wait a minute before the next one." for n in range(1, 16)
)


def test_a_long_table_is_split_between_rows_with_its_header_on_every_piece() -> None:
    chunks = make(f"## Plans\n\nOur plans:\n\n{LONG_TABLE}\n")
    assert len(chunks) >= 2 and all(len(c.text) <= 900 for c in chunks)
    rows = [f"{name} | {what}" for name, what in PLAN_ROWS]
    for chunk in chunks:
        lines = chunk.text.split("\n")
        table = lines[1:] if lines[0] == "Our plans:" else lines
        # Each piece is a table of its own: the header row, then whole rows.
        assert table[0] == "Plan | What you get", chunk.text
        assert table[1:] and all(row in rows for row in table[1:]), chunk.text
    assert [row for c in chunks for row in c.text.split("\n") if row in rows] == rows


def test_a_long_list_is_split_between_items() -> None:
    chunks = make(f"## Troubleshooting\n\n{LONG_LIST}\n")
    assert len(chunks) >= 2 and all(len(c.text) <= 900 for c in chunks)
    assert [line for c in chunks for line in c.text.split("\n")] == LONG_LIST.split("\n")


def test_tables_and_lists_chunk_into_quotable_units() -> None:
    body = f"## Plans\n\nOur plans:\n\n{LONG_TABLE}\n\n## Troubleshooting\n\nTry these:\n\n{LONG_LIST}\n"
    units = [unit for chunk in make(body) for unit in split_units(chunk.text)]
    rows = [unit.text for unit in units if unit.kind == ROW]
    # Every row, in whichever chunk it landed, reads "Header: cell; Header: cell".
    assert rows == [f"Plan: {name}; What you get: {what}" for name, what in PLAN_ROWS]
    items = [unit.text for unit in units if unit.kind == ITEM]
    assert items == [line.removeprefix("- ") for line in LONG_LIST.split("\n")]
    assert [unit.text for unit in units if unit.kind == SENTENCE] == ["Our plans:", "Try these:"]


def test_a_row_longer_than_a_chunk_is_split_at_sentences_and_its_neighbours_keep_the_header() -> None:
    sentence = "Unlimited everything, with a named account manager."
    long_row = "| Enterprise | " + f"{sentence} " * 20 + "|"
    chunks = make(f"## Plans\n\n| Plan | What you get |\n|---|---|\n| Basic | 5 GB |\n{long_row}\n| Pro | 50 GB |\n")
    assert all(len(c.text) <= 900 for c in chunks)
    assert chunks[0].text == "Plan | What you get\nBasic | 5 GB"
    assert chunks[-1].text.endswith("\nPlan | What you get\nPro | 50 GB")
    assert " ".join(c.text for c in chunks).count(sentence) == 20
