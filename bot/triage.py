"""Urgency by example: a second signal that does not depend on Rasa's training data.

A team keeps a list of urgent messages and of near misses that are not urgent
(``bot/urgent_examples.yml`` ships a multi-industry default;
``HUB_BOT_URGENT_EXAMPLES`` points at a team's own). Each customer message is
embedded with the knowledge base's sentence-transformer and compared with
both lists by cosine similarity; its score is the margin

    margin = mean of the k best cosines to urgent examples
           - mean of the k best cosines to not-urgent examples

and it is urgent when the margin reaches the threshold and its best urgent
cosine reaches ``MIN_SIMILARITY`` (nonsense is close to nothing).

The threshold is calibrated on the team's own lists, whatever they hold:
every example is scored leave-one-out against the others, and the threshold
is the smallest margin that keeps the share of not-urgent examples called
urgent at or below ``max_false_urgent``. ``Calibration`` reports the
threshold and the leave-one-out recall on the urgent examples, so a team
that edits the lists sees what the edit did (``hub`` logs it at start-up).

The same scores give a floor the other way: ``clearly_not_urgent`` is a
margin below all but ``MAX_MISSED_URGENT`` (1 %) of the urgent examples'
own leave-one-out margins - a message that reads less urgent than 99 % of
the team's urgent examples. The bot lets it overrule Rasa's ``urgent_issue``
(``bot.actions.routing``): on development help centres (bench/data/domains_dev)
Rasa called ordinary questions urgent with full confidence ("are your doctors
board certified?", "my bill nearly doubled") far more often than a message
this far from every urgent example was really urgent (false urgent 10.3 % ->
7.8 % of 282 questions, urgent recall unchanged at 57 of 63).

Pure: numpy and the embed function the caller passes; no model is loaded here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import ArrayLike

DEFAULT_EXAMPLES = Path(__file__).resolve().parent / "urgent_examples.yml"
NEIGHBOURS = 3
MIN_SIMILARITY = 0.35
MAX_FALSE_URGENT = 0.02
MAX_MISSED_URGENT = 0.01

Embed = Callable[[Sequence[str]], ArrayLike]


class ExamplesError(ValueError):
    """The examples file is missing, unreadable or has too few examples."""


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float
    not_urgent_below: float
    loo_recall: float
    loo_false_urgent: float
    urgent_examples: int
    not_urgent_examples: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": round(self.threshold, 4),
            "not_urgent_below": round(self.not_urgent_below, 4),
            "loo_recall": round(self.loo_recall, 4),
            "loo_false_urgent": round(self.loo_false_urgent, 4),
            "urgent_examples": self.urgent_examples,
            "not_urgent_examples": self.not_urgent_examples,
        }


@dataclass(frozen=True, slots=True)
class ExampleMatch:
    urgent: bool
    margin: float
    similarity: float
    nearest: str
    clearly_not_urgent: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "urgent": self.urgent,
            "clearly_not_urgent": self.clearly_not_urgent,
            "margin": round(self.margin, 4),
            "similarity": round(self.similarity, 4),
            "nearest": self.nearest,
        }


def example_lists(path: Path) -> dict[str, list[str]]:
    """Every list of the examples file by key, each line's spaces collapsed, blank lines dropped."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ExamplesError(f"cannot read urgent examples {path}: {err}") from err
    if not isinstance(data, dict):
        return {}
    return {
        str(key): [" ".join(str(item).split()) for item in items if str(item).strip()]
        for key, items in data.items()
        if isinstance(items, list)
    }


def load_examples(path: Path = DEFAULT_EXAMPLES) -> tuple[list[str], list[str]]:
    """(urgent, not urgent) from a YAML file with those two lists."""
    found = example_lists(path)
    lists = []
    for key in ("urgent", "not_urgent"):
        texts = found.get(key, [])
        if len(texts) < NEIGHBOURS + 2:
            raise ExamplesError(f"{path}: '{key}' needs at least {NEIGHBOURS + 2} examples, has {len(texts)}")
        lists.append(list(dict.fromkeys(texts)))
    return lists[0], lists[1]


def _top_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values of each row."""
    k = min(k, similarities.shape[1])
    return np.asarray(np.sort(similarities, axis=1)[:, -k:].mean(axis=1))


class UrgentExamples:
    """Nearest-neighbour urgency over embedded examples (see the module docstring)."""

    def __init__(
        self,
        urgent: Sequence[str],
        not_urgent: Sequence[str],
        embed: Embed,
        *,
        neighbours: int = NEIGHBOURS,
        max_false_urgent: float = MAX_FALSE_URGENT,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self.urgent_texts = list(urgent)
        self.not_urgent_texts = list(not_urgent)
        self.neighbours = neighbours
        self.min_similarity = min_similarity  # a cosine that depends on the model (MiniLM: 0.35)
        vectors = np.asarray(embed([*self.urgent_texts, *self.not_urgent_texts]), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.urgent = vectors[: len(self.urgent_texts)]
        self.not_urgent = vectors[len(self.urgent_texts) :]
        self.calibration = self._calibrate(max_false_urgent)

    @classmethod
    def from_file(cls, path: Path, embed: Embed, **options: Any) -> UrgentExamples:
        urgent, not_urgent = load_examples(path)
        return cls(urgent, not_urgent, embed, **options)

    def _calibrate(self, max_false_urgent: float) -> Calibration:
        # Leave-one-out: an example is never its own neighbour.
        to_urgent = self.urgent @ self.urgent.T
        np.fill_diagonal(to_urgent, -1.0)
        to_not = self.not_urgent @ self.not_urgent.T
        np.fill_diagonal(to_not, -1.0)
        cross = self.urgent @ self.not_urgent.T
        k = self.neighbours
        urgent_margin = _top_mean(to_urgent, k) - _top_mean(cross, k)
        not_margin = _top_mean(cross.T, k) - _top_mean(to_not, k)
        urgent_best = to_urgent.max(axis=1)
        # The smallest threshold that calls at most max_false_urgent of the near misses urgent.
        allowed = int(np.floor(max_false_urgent * len(not_margin)))
        ordered = np.sort(not_margin)[::-1]
        threshold = float(ordered[allowed] + 1e-6) if allowed < len(ordered) else float(ordered[-1])
        threshold = max(threshold, 0.0)
        # Below this margin lie only MAX_MISSED_URGENT of the urgent examples themselves.
        not_urgent_below = min(float(np.quantile(urgent_margin, MAX_MISSED_URGENT)), threshold)
        caught = (urgent_margin >= threshold) & (urgent_best >= self.min_similarity)
        return Calibration(
            threshold=threshold,
            not_urgent_below=not_urgent_below,
            loo_recall=float(caught.mean()),
            loo_false_urgent=float((not_margin >= threshold).mean()),
            urgent_examples=len(self.urgent_texts),
            not_urgent_examples=len(self.not_urgent_texts),
        )

    def match(self, vector: np.ndarray) -> ExampleMatch:
        """Score one embedded message."""
        vector = np.asarray(vector, dtype=np.float32)
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        to_urgent = self.urgent @ vector
        to_not = self.not_urgent @ vector
        k = min(self.neighbours, len(to_urgent), len(to_not))
        margin = float(np.sort(to_urgent)[-k:].mean() - np.sort(to_not)[-k:].mean())
        best = int(np.argmax(to_urgent))
        similarity = float(to_urgent[best])
        return ExampleMatch(
            urgent=margin >= self.calibration.threshold and similarity >= self.min_similarity,
            margin=margin,
            similarity=similarity,
            nearest=self.urgent_texts[best],
            clearly_not_urgent=margin < self.calibration.not_urgent_below,
        )
