from __future__ import annotations

from knowledge_base.articles import build_article
from knowledge_base.chunking import chunk_article
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
