"""NLU examples derived from the team's knowledge base: what it says it answers.

A team brings its own help centre and will not hand-write Rasa training data,
yet Rasa's intents decide before the knowledge base is consulted: a product
question that sounds like nothing in the general examples (data/nlu.yml) may
be read as a request for a person. So the knowledge base teaches the NLU its
domain: every article's title, its section headings and the questions its
front matter lists become ``ask_question`` examples, written to one extra
training file (``--extra-data`` of ``bot.rasa.model``) that the hub keeps in
step with the knowledge base (``hub.bot.model``).

Examples that are already examples of another intent in the static data are
left out (the general data wins: "talk to a person" stays a request for a
person even if an article is called so), and so are those that match one of
the static data's regex features (lost or stolen cards, fraud, outages,
medical danger...): a help centre's "Report a lost or stolen card" must not
teach the NLU that a stolen card is a mere question (measured: without this
filter, adapting to a knowledge base cost urgent recall). Rasa's annotation
characters (``[]{}()``) are dropped. At most ``MAX_EXAMPLES``: listed questions first,
then titles, then headings, so training time stays bounded for a big help
centre.

    .venv/bin/python -m bot.rasa.kb_nlu ARTICLES_DIR [...] [--out FILE]

writes the file for Markdown article folders (``make rasa-model`` does it for
the sample knowledge base). Articles are read and their headings found by
``knowledge_base`` itself (its article parser and chunker), so the files and
the running hub's articles give the same examples: it runs in the hub's venv.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.rasa.model import PROJECT_DIR, REPO_ROOT

FILE_NAME = "kb_nlu.yml"
SAMPLE_ARTICLES = REPO_ROOT / "knowledge_base" / "sample"
MAX_EXAMPLES = 600
MAX_EXAMPLE_CHARS = 200
_ANNOTATION = re.compile(r"[\[\]{}()]")
HEADER = (
    'version: "3.1"\n'
    "# Generated from the knowledge base by bot/rasa/kb_nlu.py: what the team's help centre\n"
    "# says it answers (titles, headings, listed questions). Regenerated when it changes.\n"
)


@dataclass(frozen=True)
class ArticleOutline:
    """What an article says it answers."""

    title: str
    headings: tuple[str, ...] = ()
    questions: tuple[str, ...] = field(default=())


def _clean(text: str) -> str:
    text = " ".join(_ANNOTATION.sub(" ", text).split())
    return text[:MAX_EXAMPLE_CHARS].strip(" -:#")


def intent_examples(path: Path) -> dict[str, list[str]]:
    """Each intent's examples in one Rasa NLU file, as written (annotations kept)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: dict[str, list[str]] = {}
    for item in data.get("nlu") or []:
        intent = item.get("intent") if isinstance(item, dict) else None
        if not intent:
            continue
        for line in str(item.get("examples") or "").splitlines():
            line = line.strip()
            if line.startswith("- "):
                found.setdefault(intent, []).append(line[2:].strip())
    return found


def static_examples(project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """Every example of the static NLU data, case-folded, with its intent."""
    found: dict[str, str] = {}
    for path in sorted((project_dir / "data").rglob("*.yml")):
        for intent, examples in intent_examples(path).items():
            for example in examples:
                found.setdefault(example.casefold(), intent)
    return found


def urgency_patterns(project_dir: Path = PROJECT_DIR) -> list[re.Pattern[str]]:
    """The static data's regex features (``- regex:`` entries), compiled case-insensitively."""
    found: list[re.Pattern[str]] = []
    for path in sorted((project_dir / "data").rglob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for item in data.get("nlu") or []:
            if isinstance(item, dict) and item.get("regex"):
                for line in str(item.get("examples") or "").splitlines():
                    line = line.strip()
                    if line.startswith("- "):
                        found.append(re.compile(line[2:].strip(), re.IGNORECASE))
    return found


def examples(
    outlines: Iterable[ArticleOutline],
    *,
    taken: dict[str, str] | None = None,
    patterns: Sequence[re.Pattern[str]] | None = None,
) -> list[str]:
    """``ask_question`` examples for the outlines, deduplicated, within ``MAX_EXAMPLES``."""
    outlines = list(outlines)
    taken = static_examples() if taken is None else taken
    patterns = urgency_patterns() if patterns is None else patterns
    ordered: list[str] = []
    seen: set[str] = set()
    for group in (
        [q for o in outlines for q in o.questions],
        [o.title for o in outlines],
        [h for o in outlines for h in o.headings],
    ):
        # Sorted: the same articles give the same file (and model), in whatever order they come.
        for text in sorted(group, key=lambda t: (_clean(t).casefold(), t)):
            example = _clean(text)
            key = example.casefold()
            if len(example) < 3 or key in seen or taken.get(key, "ask_question") != "ask_question":
                continue
            if any(pattern.search(example) for pattern in patterns):
                continue
            seen.add(key)
            ordered.append(example)
    return ordered[:MAX_EXAMPLES]


def render(found: Sequence[str]) -> str:
    """The training file: a YAML document Rasa reads with the rest of data/."""
    if not found:
        return HEADER + "nlu: []\n"
    # A literal block: Rasa reads each "- " line as it is (no YAML quoting inside).
    lines = "".join(f"    - {example}\n" for example in found)
    return HEADER + "nlu:\n- intent: ask_question\n  examples: |\n" + lines


def outline_of(article: Any) -> ArticleOutline:
    """What a ``knowledge_base.Article`` says it answers: its title, its section headings
    (as the knowledge base's own chunker reads them) and its listed questions."""
    from knowledge_base.chunking import chunk_article

    headings = tuple(dict.fromkeys(chunk.heading for chunk in chunk_article(article) if chunk.anchor))
    return ArticleOutline(title=article.title, headings=headings, questions=tuple(article.questions))


def outline_of_markdown(title: str, body: str, questions: Iterable[str] = ()) -> ArticleOutline:
    """:func:`outline_of` for an article given by its parts."""
    from knowledge_base.articles import build_article

    return outline_of(build_article("default", "article", title=title, body_markdown=body, questions=list(questions)))


def outlines_of_folders(folders: Iterable[Path]) -> list[ArticleOutline]:
    """Outlines of the articles in the folders, read as the knowledge base reads them (unreadable files skipped)."""
    from knowledge_base.articles import markdown_files, read_article_file
    from knowledge_base.errors import ArticleFormatError

    found = []
    for folder in folders:
        for path in markdown_files(folder):
            try:
                found.append(outline_of(read_article_file(path, collection="default")))
            except ArticleFormatError:
                continue
    return found


def write(folders: Iterable[Path], out: Path) -> Path:
    """Write the training file for article folders; unchanged bytes are left alone (the model's hash)."""
    text = render(examples(outlines_of_folders(folders)))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")
    return out


def sample_training_file(directory: Path) -> Path:
    """The file ``make rasa-model`` trains with on a fresh clone: the sample knowledge base's."""
    return write([SAMPLE_ARTICLES], directory / FILE_NAME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.rasa.kb_nlu", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of Markdown articles")
    parser.add_argument("--out", type=Path, help=f"write here (default: print); conventionally {FILE_NAME}")
    args = parser.parse_args(argv)
    if args.out is None:
        sys.stdout.write(render(examples(outlines_of_folders(args.folders))))
    else:
        write(args.folders, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
