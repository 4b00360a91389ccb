from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base import SAMPLE_DIR
from knowledge_base.articles import (
    ArticleFolder,
    build_article,
    parse_article,
    render_article_file,
    validate_article_id,
    validate_collection,
)
from knowledge_base.errors import ArticleFormatError, InvalidInput


@pytest.mark.parametrize("value", ["a", "refunds", "2fa-setup", "a_b-c", "x" * 100])
def test_valid_ids(value: str) -> None:
    assert validate_article_id(value) == value
    assert validate_collection(value) == value


@pytest.mark.parametrize("value", ["", "-a", "_a", "A", "a b", "a/b", "../etc", "a.md", "x" * 101, "é", None, 3])
def test_invalid_ids(value: object) -> None:
    with pytest.raises(InvalidInput):
        validate_article_id(value)
    with pytest.raises(InvalidInput):
        validate_collection(value)


@pytest.mark.parametrize("name", ["articles", "search", "static", "categories"])
def test_portal_paths_are_reserved_collection_names(name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        validate_collection(name)


def test_parse_front_matter() -> None:
    text = "---\ntitle: '  Refunds   and returns '\ntags: billing, refunds, billing\nlocale: en-GB\n---\n\n## Hi\n\nBody.\n"
    article = parse_article(text, collection="default", article_id="refunds")
    assert article.title == "Refunds and returns"
    assert article.tags == ("billing", "refunds")
    assert article.locale == "en-GB"
    assert article.category is None
    assert article.body_markdown == "## Hi\n\nBody.\n"
    assert len(article.content_hash) == 64


def test_hash_changes_with_any_indexed_field() -> None:
    base = {"title": "T", "body_markdown": "Body", "tags": ["a"], "category": "C"}
    first = build_article("default", "a", **base)
    assert build_article("default", "a", **base).content_hash == first.content_hash
    changes = [("title", "T2"), ("body_markdown", "Body2"), ("tags", ["b"]), ("category", "D"), ("questions", ["q?"])]
    for field, value in changes:
        assert build_article("default", "a", **{**base, field: value}).content_hash != first.content_hash


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("---\ntags: [a]\n---\nbody", "no title"),
        ("no front matter at all", "no title"),
        ("---\ntitle: [unclosed\n---\nbody", "not valid YAML"),
        ("---\ntitle: T\ntags: {a: 1}\n---\nbody", "tags"),
        ("---\ntitle: T\ncategory: [x]\n---\nbody", "category"),
        ("---\ntitle: T\nquestions: {a: 1}\n---\nbody", "questions"),
        ("---\ntitle: T\nquestions: [[nested]]\n---\nbody", "questions"),
    ],
)
def test_bad_articles_are_rejected(text: str, match: str) -> None:
    with pytest.raises(ArticleFormatError, match=match):
        parse_article(text, collection="default", article_id="bad")


def test_render_then_parse_round_trips() -> None:
    article = build_article(
        "help",
        "a-b",
        title="Title: with colon & 'quotes'",
        body_markdown="# Heading\n\nText with --- dashes\n",
        tags=["x", "y z"],
        locale="fr",
        product="app",
        category="Cat",
        questions=["How do I: colons?", "  and   spaces  ", "AND SPACES"],
    )
    assert article.questions == ("How do I: colons?", "and spaces")  # normalised, case-insensitive duplicates dropped
    again = parse_article(render_article_file(article), collection="help", article_id="a-b")
    assert again == article


def test_listed_questions_are_optional_and_keep_old_hashes() -> None:
    without = build_article("default", "a", title="T", body_markdown="Body")
    assert without.questions == ()
    assert (
        without.content_hash
        == build_article("default", "a", title="T", body_markdown="Body", questions=[]).content_hash
    )


def test_folder_read_write_delete(tmp_path: Path) -> None:
    folder = ArticleFolder(tmp_path)
    article = build_article("kb1", "one", title="One", body_markdown="Body")
    stored = folder.write(article)
    assert stored.updated_at is not None
    assert (tmp_path / "kb1" / "one.md").is_file()
    assert folder.read("kb1", "one") == stored
    (tmp_path / "kb1" / "broken.md").write_text("---\ntitle: [\n---\n")
    (tmp_path / "kb1" / "Bad Name.md").write_text("---\ntitle: x\n---\n")
    articles, skipped = folder.read_all("kb1")
    assert [a.id for a in articles] == ["one"]
    assert sorted(name for name, _ in skipped) == ["Bad Name.md", "broken.md"]
    assert folder.collections() == ["kb1"]
    assert folder.delete("kb1", "one") is True
    assert folder.delete("kb1", "one") is False
    assert folder.read("kb1", "one") is None


def test_sample_knowledge_base_is_complete() -> None:
    articles, skipped = ArticleFolder(SAMPLE_DIR.parent).read_all(SAMPLE_DIR.name)
    assert not skipped
    assert len(articles) >= 20
    for article in articles:
        assert article.category, article.id
        assert article.tags, article.id
        assert article.body_markdown.count("\n## ") >= 2, f"{article.id} needs several headed sections"
        assert len(article.body_markdown.split()) >= 200, f"{article.id} is too short to be useful"


def test_bench_questions_are_labelled_with_sample_articles() -> None:
    import yaml

    path = Path(__file__).resolve().parents[2] / "bench" / "data" / "kb_questions.yml"
    questions = yaml.safe_load(path.read_text())["questions"]
    sample_ids = {path.stem for path in SAMPLE_DIR.glob("*.md")}
    answerable = [q for q in questions if q["expected"] is not None]
    assert len(answerable) >= 60
    assert {q["expected"] for q in answerable} <= sample_ids
    assert {q["expected"] for q in answerable} == sample_ids  # every article is asked about
    texts = [q["q"].strip().lower() for q in questions]
    assert len(set(texts)) == len(texts)
    titles = {article.title.lower() for article in ArticleFolder(SAMPLE_DIR.parent).read_all(SAMPLE_DIR.name)[0]}
    assert not set(texts) & titles, "questions must not copy article titles"
