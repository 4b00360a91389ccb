"""The kinds of survey and what each asks and takes: CSAT (1-5, on resolve,
``hub.csat``) and NPS (0-10, "would you recommend us", ``hub.nps``).

The numbers come from ``hub.conversations.consent.SURVEY_RATINGS``, which a
text channel's bare-number answers follow too; the texts are what each
channel sends, and the labels what the e-mail page, the widget and the
dashboard show.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.conversations.consent import SURVEY_RATINGS

QUESTION = "How did we do? Please rate this conversation from 1 (poor) to 5 (great)."
QUESTION_SMS = "How did we do? Reply 1-5 (5 = great)."


@dataclass(frozen=True, slots=True)
class Scale:
    """A kind of survey: its question and the answers it takes (``low`` to ``high``)."""

    kind: str  # csat_surveys.kind, and the timeline events' prefix (csat-rated, nps-rated)
    low: int
    high: int
    question: str  # the form's legend (e-mail page)
    text: str  # the message on web chat and e-mail
    text_sms: str
    low_label: str
    high_label: str

    def __contains__(self, rating: object) -> bool:
        return isinstance(rating, int) and not isinstance(rating, bool) and self.low <= rating <= self.high

    def labels(self) -> list[tuple[int, str]]:
        """Each answer with its words at the ends: ``[(1, "1 (poor)"), (2, "2"), ...]``."""
        ends = {self.low: f" ({self.low_label})", self.high: f" ({self.high_label})"}
        return [(rating, f"{rating}{ends.get(rating, '')}") for rating in range(self.low, self.high + 1)]


def _bounds(kind: str) -> tuple[int, int]:
    ratings = SURVEY_RATINGS[kind]  # the one list, which a text channel's digits follow too
    return ratings[0], ratings[-1]


CSAT = Scale("csat", *_bounds("csat"), "How would you rate this conversation?", QUESTION, QUESTION_SMS, "poor", "great")
NPS = Scale(
    "nps",
    *_bounds("nps"),
    "How likely are you to recommend us to a friend or colleague?",
    "One more question: how likely are you to recommend us to a friend or colleague? "
    "From 0 (not at all likely) to 10 (extremely likely).",
    "How likely are you to recommend us? Reply 0-10 (10 = extremely likely).",
    "not at all likely",
    "extremely likely",
)
SCALES = {scale.kind: scale for scale in (CSAT, NPS)}


def nps_group(rating: int) -> str:
    """NPS's reading of a 0-10 answer: 9-10 promoter, 7-8 passive, 0-6 detractor."""
    return "promoter" if rating >= 9 else "passive" if rating >= 7 else "detractor"
