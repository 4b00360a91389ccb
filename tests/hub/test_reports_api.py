"""``GET /api/v1/reports/{name}`` (viewer role, validated by the OpenAPI
document) and ``hub report`` print the same figures as the service."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Connection

from hub.__main__ import main
from hub.storage import open_database
from hub.storage.migrate import upgrade
from tests.conftest import Hub
from tests.hub.report_timeline import Records, TimelineWriter

BERLIN = ZoneInfo("Europe/Berlin")


def write_day(conn: Connection, records: Records) -> None:
    w = TimelineWriter(conn, records)
    agent = w.agent("Vera", team="support")
    for n, (opened, answer) in enumerate([("09:00", "09:05"), ("10:00", "10:10"), ("11:00", "11:40")]):
        conversation = w.conversation(w.contact(f"Customer {n}"), "webchat", f"2026-03-29 {opened}")
        ticket = w.handoff(conversation, f"2026-03-29 {opened}", source="agent")
        w.claim(ticket, agent, f"2026-03-29 {opened}")
        w.reply(conversation, agent, f"2026-03-29 {answer}")


@pytest.mark.asyncio
async def test_report_over_the_api(hub: Hub) -> None:
    records = Records(BERLIN)
    await hub.db.write(write_day, records)
    query = {"from": "2026-03-29", "to": "2026-03-30", "tz": "Europe/Berlin", "bucket": "hour"}
    body = await hub.api("GET", "/api/v1/reports/response-times", role="viewer", params=query)
    assert body["report"] == "response-times"
    assert body["params"] == {
        "from": "2026-03-29T00:00:00+01:00",
        "to": "2026-03-30T00:00:00+02:00",
        "tz": "Europe/Berlin",
        "bucket": "hour",
        "filters": {},
        "business_hours": False,
    }
    assert len(body["series"]) == 23  # the day the clocks go forward
    totals = body["totals"][0]
    assert (totals["tickets"], totals["first_response_median_s"]) == (3, 600)
    busy = {row["bucket"]: row["tickets"] for row in body["series"] if row["tickets"]}
    assert busy == {"2026-03-29T09:00:00+02:00": 1, "2026-03-29T10:00:00+02:00": 1, "2026-03-29T11:00:00+02:00": 1}
    volume = await hub.api(
        "GET", "/api/v1/reports/volume", role="agent", params={**query, "bucket": "day", "channel": "webchat"}
    )
    assert volume["params"]["filters"] == {"channel": "webchat"}
    assert volume["totals"][0]["new_conversations"] == 3


@pytest.mark.asyncio
async def test_bad_parameters_are_a_clear_400(sqlite_hub: Hub) -> None:
    good = {"from": "2026-03-01", "to": "2026-03-08", "tz": "Europe/Berlin"}
    cases = [
        ({**good, "tz": "Mars/Olympus"}, "tz"),
        ({**good, "tz": "../etc/passwd"}, "tz"),
        ({**good, "bucket": "month"}, "bucket"),
        ({**good, "from": "yesterday"}, "from"),
        ({**good, "to": "2026-02-01"}, "to"),
        ({**good, "from": "0001-01-01"}, "from"),
        ({"to": "2026-03-08"}, "from"),
        ({**good, "priority": "meh"}, "priority"),
        ({**good, "team": "support"}, "team"),  # volume does not filter by team
        ({**good, "from": "2020-01-01", "to": "2026-01-01"}, "to"),  # more than three years
        ({**good, "from": "2025-12-01", "bucket": "hour"}, "bucket"),  # 2,328 hour buckets: more than 2,000
    ]
    for params, field in cases:
        body = await sqlite_hub.api("GET", "/api/v1/reports/volume", role="viewer", params=params, expect=400)
        assert body["error"]["code"] == "invalid_input", (params, body)
        assert field in json.dumps(body["error"]), (params, body)
    await sqlite_hub.api("GET", "/api/v1/reports/nonsense", role="viewer", params=good, expect=404)
    response = await sqlite_hub.client.get("/api/v1/reports/volume", params=good)
    assert response.status == 401


def test_hub_report_prints_the_same_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    records = Records(BERLIN)

    async def seed() -> None:
        db = open_database(url)
        try:
            await db.write(write_day, records)
        finally:
            await db.close()

    asyncio.run(seed())
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["report", "response-times", "--from", "2026-03-29", "--to", "2026-03-30", "--tz", "Europe/Berlin"]
    table = runner.invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "from 2026-03-29T00:00:00+01:00 to 2026-03-30T00:00:00+02:00 (Europe/Berlin), by day" in table.output
    as_csv = runner.invoke(main, [*args, "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    series = [r for r in rows if r["section"] == "series"]
    assert [(r["bucket"], r["tickets"], r["first_response_median_s"]) for r in series] == [("2026-03-29", "3", "600")]
    by_agent = [r for r in rows if r["section"] == "by agent"]
    assert by_agent[0]["agent_name"] == "Vera" and by_agent[0]["first_response_p90_s"] == "2040"  # 10 + 0.8 * 30 min
    as_json = json.loads(runner.invoke(main, [*args, "--json"]).output)
    assert as_json["totals"][0]["first_response_count"] == 3
    bad = runner.invoke(
        main, ["report", "volume", "--from", "2026-03-29", "--to", "2026-03-30", "--tz", "Nowhere/City"]
    )
    assert bad.exit_code == 1 and "IANA time zone" in bad.output
