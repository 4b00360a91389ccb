"""The CSAT report (issue #17) on surveys whose figures are known by
construction, over every storage backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.storage import open_database
from tests.hub.report_timeline import Records, TimelineWriter
from tests.hub.test_reports import BERLIN, report

# (channel, sent at UTC, rating or None: unanswered)
SURVEYS = [
    ("webchat", datetime(2026, 5, 10, 9, 0, tzinfo=UTC), 5),
    ("webchat", datetime(2026, 5, 10, 10, 0, tzinfo=UTC), 4),
    ("webchat", datetime(2026, 5, 10, 11, 0, tzinfo=UTC), None),
    ("webchat", datetime(2026, 5, 10, 22, 30, tzinfo=UTC), 2),  # 00:30 on the 11th in Berlin
    ("sms", datetime(2026, 5, 10, 12, 0, tzinfo=UTC), 5),
    ("sms", datetime(2026, 5, 10, 13, 0, tzinfo=UTC), None),
    ("sms", datetime(2026, 5, 12, 13, 0, tzinfo=UTC), 1),  # outside the range
]


@pytest.mark.asyncio
async def test_csat_average_distribution_and_response_rate(database_url: str) -> None:
    records = Records(BERLIN)

    def write(conn: Any) -> None:
        w = TimelineWriter(conn, records)
        for n, (channel, sent, rating) in enumerate(SURVEYS):
            conversation = w.conversation(w.contact(f"C{n}"), channel, sent - timedelta(hours=1))
            w.survey(conversation, None, channel, sent, rating)

    db = open_database(database_url)
    try:
        await db.write(write)
        result = await report(db, "csat", "2026-05-10", "2026-05-12", "Europe/Berlin")
        totals = {row["channel"]: row for row in result["totals"]}
        assert totals["all"] == {
            "channel": "all",
            "sent": 6,
            "answered": 4,
            "rating_1": 0,
            "rating_2": 1,
            "rating_3": 0,
            "rating_4": 1,
            "rating_5": 2,
            "average": 4.0,
            "response_rate": round(4 / 6, 4),
        }
        assert (totals["webchat"]["average"], totals["webchat"]["response_rate"]) == (round(11 / 3, 2), 0.75)
        assert (totals["sms"]["sent"], totals["sms"]["average"], totals["sms"]["response_rate"]) == (2, 5.0, 0.5)
        days = {(r["bucket"], r["channel"]): r for r in result["series"]}
        assert days[("2026-05-10", "all")]["sent"] == 5 and days[("2026-05-10", "all")]["average"] == round(14 / 3, 2)
        assert days[("2026-05-11", "webchat")]["rating_2"] == 1 and days[("2026-05-11", "sms")]["sent"] == 0
        assert days[("2026-05-11", "sms")]["average"] is None and days[("2026-05-11", "sms")]["response_rate"] is None

        only_sms = await report(db, "csat", "2026-05-10", "2026-05-13", "Europe/Berlin", channel="sms")
        sms = {row["channel"]: row for row in only_sms["totals"]}
        assert sms["all"]["sent"] == 3 and sms["all"]["rating_1"] == 1 and sms["all"]["average"] == round(6 / 2, 2)
    finally:
        await db.close()
