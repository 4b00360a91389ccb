"""NPS: "how likely are you to recommend us" (0-10, ``hub.nps``): the score
(the share of promoters, 9-10, minus the share of detractors, 0-6, over the
answers, from -100 to 100), promoters, passives (7-8) and detractors, the
distribution 0-10 and the response rate (answered / sent), per bucket and
channel, by when each question was sent (``survey_report``, as CSAT).
"""

from __future__ import annotations

from hub.reports.base import Row
from hub.reports.csat import survey_report

RATINGS = tuple(range(11))
GROUPS = {"promoters": range(9, 11), "passives": range(7, 9), "detractors": range(0, 7)}


def _score(row: Row) -> Row:
    for group, ratings in GROUPS.items():
        row[group] = sum(row[f"rating_{rating}"] for rating in ratings)
    answered = row["answered"]
    row["nps"] = round(100 * (row["promoters"] - row["detractors"]) / answered, 1) if answered else None
    return row


REPORT = survey_report(
    kind="nps",
    summary="NPS: promoters minus detractors (-100 to 100), distribution 0-10 and response rate, by channel",
    ratings=RATINGS,
    finish=_score,
)
