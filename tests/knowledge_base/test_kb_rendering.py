from __future__ import annotations

from html.parser import HTMLParser

import pytest

from knowledge_base.rendering import render_markdown, slugify

ATTACKS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](vbscript:msgbox(1))",
    "![x](javascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<a href="javascript:alert(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    "<svg onload=alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "## Heading <img src=x onerror=alert(1)>",
    '[link](https://ok.example "title\\" onmouseover=\\"alert(1)")',
]


class _Tags(HTMLParser):
    """Every (tag, attributes) a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def assert_inert(html: str, *, allow: frozenset[str] = frozenset()) -> None:
    """No script-capable tag, no event handler, no script or data URL."""
    parser = _Tags()
    parser.feed(html)
    banned = {"script", "iframe", "svg", "object", "embed", "style", "form", "base", "meta"} - allow
    for tag, attrs in parser.tags:
        assert tag not in banned, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name != "style" or "url(" not in value, (tag, value)
            if name in ("href", "src"):
                scheme = value.strip().lower().split(":", 1)[0] if ":" in value else ""
                assert scheme in ("", "http", "https", "mailto", "tel"), (tag, value)


@pytest.mark.parametrize("attack", ATTACKS)
def test_markdown_cannot_inject_script(attack: str) -> None:
    html = render_markdown(f"Intro\n\n{attack}\n\nOutro").html
    assert_inert(html)
    assert "Intro" in html and "Outro" in html


def test_safe_markdown_keeps_its_structure() -> None:
    html = render_markdown(
        "## Steps\n\n1. **Bold** and *em*\n2. `code`\n\n[site](https://example.com) [mail](mailto:a@b.c)\n\n"
        "![alt](https://example.com/a.png)\n\n> quote\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n"
    ).html
    for fragment in (
        '<h2 id="steps">Steps</h2>',
        "<ol>",
        "<strong>Bold</strong>",
        "<em>em</em>",
        "<code>code</code>",
        'href="https://example.com"',
        'rel="noopener noreferrer"',
        'href="mailto:a@b.c"',
        'src="https://example.com/a.png"',
        "<blockquote>",
        '<td style="text-align:right">2</td>',
    ):
        assert fragment in html


def test_heading_ids_are_unique() -> None:
    rendered = render_markdown("## FAQ\n\n## FAQ\n\n### FAQ\n\n## FAQ 1\n")
    anchors = [heading.anchor for heading in rendered.headings]
    assert anchors == ["faq", "faq-1", "faq-2", "faq-1-1"]
    assert len(set(anchors)) == len(anchors)


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("How long do refunds take?", "how-long-do-refunds-take"),
        ("  Two-step  verification (2FA) ", "two-step-verification-2fa"),
        ("Über uns", "über-uns"),
        ("C'est -- déjà   là!", "cest-déjà-là"),
        ("!!!", "section"),
        ("a_b", "a-b"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


@pytest.mark.parametrize(
    "html", ['<img src=x onerror="alert(1)">', '<a href=" JavaScript:alert(1)">x</a>', "<script>x</script>"]
)
def test_the_inertness_check_itself_catches_raw_attacks(html: str) -> None:
    with pytest.raises(AssertionError):
        assert_inert(html)
