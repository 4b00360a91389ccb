"""The dashboard over HTTP: the cards read the figures a known timeline must
give, the charts carry the reports' series, the data and CSV routes answer
what the API and ``hub report --csv`` do, and bad parameters are a 400 that
names them. (The browser test is ``test_dashboard_browser.py``.)"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime
from html import unescape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from click.testing import CliRunner

from hub import keys
from hub.__main__ import main
from hub.console.dashboard import DashboardForm, SharedRuns, Span, preset_range
from hub.console.dashboard_figures import bucket_label, duration_text, percent_text
from hub.reports.params import Bucket
from hub.reports.render import to_csv
from tests.console.conftest import ConsoleHub, StartConsoleHub, email_of
from tests.console.dashboard_timeline import EXPECTED, write
from tests.console.helpers import signed_in_cookies
from tests.hub.report_timeline import Records

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2026, 3, 28)  # Saturday; c5 falls on the Sunday the clocks go forward
PAGE = "/console/dashboard?range=custom&from=2026-03-27&to=2026-03-29&tz=Europe/Berlin"
API_QUERY = {"from": "2026-03-27", "to": "2026-03-30", "tz": "Europe/Berlin", "bucket": "day"}


@pytest_asyncio.fixture
async def console_hub(start_console_hub: StartConsoleHub) -> ConsoleHub:
    """The timeline is in March 2026: the search log's retention would sweep its questions."""
    return await start_console_hub(kb_search_log_days=36500)


async def seeded(hub: ConsoleHub) -> tuple[Records, dict[str, Any]]:
    records, ids = Records(BERLIN), dict[str, Any]()
    await hub.db.write(write, records, DAY, ids)
    return records, ids


async def as_user(hub: ConsoleHub, role: str) -> None:
    hub.client.session.cookie_jar.clear()
    hub.client.session.cookie_jar.update_cookies(await signed_in_cookies(hub.app, email_of(role)))


def card_figures(html: str) -> dict[str, str]:
    return {key: unescape(text) for key, text in re.findall(r'<dd data-figure="([a-z0-9_]+)">([^<]*)</dd>', html)}


def chart_specs(html: str) -> dict[str, dict[str, Any]]:
    return {
        key: json.loads(unescape(spec))
        for key, spec in re.findall(r"<canvas id=\"chart-([a-z-]+)\"[^>]*data-chart='([^']*)'", html)
    }


@pytest.mark.asyncio
async def test_the_cards_and_charts_read_the_known_figures(console_hub: ConsoleHub) -> None:
    hub = console_hub
    records, _ = await seeded(hub)
    await as_user(hub, "viewer")
    response = await hub.client.get(PAGE)
    assert response.status == 200
    html = await response.text()
    assert card_figures(html) == EXPECTED
    assert 'href="/console/dashboard" aria-current="page">Dashboard</a>' in html
    assert "Fri 27 Mar 2026 to Sun 29 Mar 2026" in html and "Europe/Berlin · per day" in html

    specs = chart_specs(html)
    assert list(specs) == ["volume", "first-response", "resolution", "sla", "bot", "reasons", "csat", "nps"]
    volume = specs["volume"]
    assert volume["labels"] == ["27 Mar", "28 Mar", "29 Mar"] and volume["stacked"] is True
    by_channel = {d["label"]: d["data"] for d in volume["datasets"]}
    # Per local day and channel, as the generator recorded them.
    expected = {
        channel: [
            records.volume[(day, channel, "new_conversations")] for day in ("2026-03-27", "2026-03-28", "2026-03-29")
        ]
        for channel in ("email", "sms", "webchat")
    }
    assert by_channel == expected == {"email": [0, 1, 0], "sms": [0, 0, 1], "webchat": [1, 3, 0]}
    first = specs["first-response"]
    assert first["axis"] == "Minutes"
    # Saturday: 10 and 30 min (median 20, p90 28); Sunday: 20 min.
    assert {d["label"]: d["data"] for d in first["datasets"]} == {
        "Median": [None, 20.0, 20.0],
        "90th percentile": [None, 28.0, 20.0],
    }
    assert first["datasets"][0]["texts"] == ["—", "20 min", "20 min"]
    assert {d["label"]: d["data"] for d in specs["sla"]["datasets"]}["First response"] == [None, 50.0, None]
    reasons = specs["reasons"]
    assert reasons["horizontal"] is True and sorted(reasons["titles"]) == [
        "Customer asked for a person",
        "Keyword rule",
        "Urgent issue",
    ]
    assert ["Customer asked", "for a person"] in reasons["labels"]  # wrapped beside the bars
    assert reasons["datasets"][0]["data"] == [1, 1, 1]
    # CSAT: one answer each of 2, 4 and 5 over the range.
    csat = specs["csat"]
    assert csat["labels"] == ["1 (poor)", "2", "3", "4", "5 (great)"]
    assert csat["datasets"][0]["data"] == [0, 1, 0, 1, 1]
    assert 'id="caption-csat">Average rating 3.67 / 5 from 3 answers; 3 of 4 surveys answered (75%).' in html
    nps = specs["nps"]
    assert nps["labels"][0] == "0 (not at all likely)" and nps["labels"][10] == "10 (extremely likely)"
    assert nps["datasets"][0]["data"] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert 'id="caption-nps">NPS 0 (promoters 9-10 minus detractors 0-6) from 2 answers' in html
    # Content gaps: the PayPal question with its count, the portal's search, and the article voted unhelpful.
    gaps = re.findall(r'<tr data-gap><th scope="row">([^<]+)</th><td>(\d+)</td>', html)
    assert gaps == [("can i pay with paypal", "3"), ("gift wrapping", "1")]
    assert (
        '<tr data-article><th scope="row"><a href="/help/articles/returns">returns</a></th>'
        "<td>2</td><td>1</td><td>66.7%</td></tr>" in html
    )
    assert "4 questions of 5 asked found no good answer, in 2 topics" in unescape(html)

    # Each chart's text alternative: a caption and its table; agent activity is a table.
    assert 'id="caption-first-response">Median 20 min, 90th percentile 28 min, over 3 tickets answered' in html
    assert '<details class="dash-details" id="details-volume">' in html and 'id="table-volume"' in html
    agents = html[html.index('id="table-agents"') :]
    rows = re.findall(
        r'<tr><th scope="row">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>', agents
    )
    assert rows[:2] == [("Vera", "2", "1", "2", "2"), ("Walt", "1", "0", "1", "1")]
    assert ("All agents", "3", "1", "3", "3") in rows

    # Every chart links to its report's CSV with the parameters it was drawn from.
    links = dict(re.findall(r'<a href="([^"]+)" download data-csv="([a-z-]+)"', html))
    assert set(links.values()) == {"volume", "response-times", "sla", "bot", "agents", "csat", "nps", "gaps"}
    volume_link = next(href for href, name in links.items() if name == "volume")
    assert volume_link.startswith("/console/dashboard/data/volume.csv?from=2026-03-27T00%3A00%3A00%2B01%3A00")
    assert "tz=Europe%2FBerlin" in volume_link and "bucket=day" in volume_link

    # The fragment the page refreshes itself with holds the figures alone.
    fragment = await hub.client.get(PAGE + "&fragment=figures")
    text = await fragment.text()
    assert fragment.status == 200 and "<html" not in text and card_figures(text) == EXPECTED


@pytest.mark.asyncio
async def test_a_filter_a_report_does_not_take_is_named_not_applied(console_hub: ConsoleHub) -> None:
    hub = console_hub
    await seeded(hub)
    await as_user(hub, "viewer")
    html = await (await hub.client.get(PAGE + "&team=billing")).text()
    figures = card_figures(html)
    # Response times and SLA are billing's alone: Walt's ticket, 30 min, breached; resolved in 90 min.
    assert figures["first_response_median"] == "30 min" and figures["sla_first_response"] == "0%"
    assert figures["resolution_median"] == "1 h 30 min"
    # Volume and the bot's figures do not break down by team: all of them, and the page says so.
    assert figures["conversations"] == "6" and figures["containment"] == "50%"
    assert html.count("Not filtered by team") >= 3
    agents = html[html.index('id="table-agents"') :]
    assert ">Walt<" in agents and ">Vera<" not in agents  # agent activity takes the team

    only_sms = card_figures(await (await hub.client.get(PAGE + "&channel=sms")).text())
    assert (only_sms["conversations"], only_sms["first_response_median"], only_sms["handoff_rate"]) == (
        "1",
        "20 min",
        "100%",
    )


@pytest.mark.asyncio
async def test_signed_out_readers_are_sent_to_sign_in(console_hub: ConsoleHub) -> None:
    hub = console_hub
    for path in (
        "/console/dashboard",
        "/console/dashboard?fragment=figures",
        "/console/dashboard/data/volume?from=2026-03-27&to=2026-03-30",
        "/console/dashboard/data/volume.csv?from=2026-03-27&to=2026-03-30",
    ):
        response = await hub.client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/console/login"), path
    await as_user(hub, "viewer")
    page = await hub.client.get("/console/dashboard", allow_redirects=False)
    assert page.status == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.asyncio
async def test_bad_parameters_are_a_400_naming_them(console_hub: ConsoleHub) -> None:
    hub = console_hub
    await as_user(hub, "viewer")
    for query, named in (
        ("range=7d&tz=Mars/Olympus", "tz"),
        ("range=fortnight", "range"),
        ("range=custom&from=2026-03-27&to=yesterday", "to"),
        ("range=custom&to=2026-03-27", "from"),
        ("range=custom&from=2026-03-27&to=9999-12-31", "to"),
        ("range=custom&from=2026-03-29&to=2026-03-01", "to"),
        ("range=7d&bucket=month", "bucket"),
        ("range=custom&from=2025-01-01&to=2026-01-01&bucket=hour", "bucket"),  # 8,760 hours
    ):
        response = await hub.client.get(f"/console/dashboard?{query}", headers={"Accept": "text/html"})
        html = await response.text()
        assert response.status == 400, query
        message = re.search(r'<p class="alert alert-error" role="alert" id="dash-error">([^<]+)</p>', html)
        assert message and named in unescape(message.group(1)), (query, message)
        assert 'id="dash-form"' in html  # the form again, to put it right
    # The script's fragment and the data routes answer JSON errors to a script.
    for path in (
        "/console/dashboard?fragment=figures&tz=Nowhere/City",
        "/console/dashboard/data/volume?from=2026-03-27&to=2026-03-30&tz=Nowhere/City",
        "/console/dashboard/data/volume.csv?from=2026-03-27&to=2026-03-30&tz=Nowhere/City",
    ):
        response = await hub.client.get(path, headers={"Accept": "application/json"})
        assert response.status == 400, path
        body = await response.json()
        assert body["error"]["code"] == "invalid_input" and body["error"]["details"] == {"field": "tz"}, body
    unknown = await hub.client.get("/console/dashboard/data/nonsense?from=2026-03-27&to=2026-03-30")
    assert unknown.status == 404


@pytest.mark.asyncio
async def test_data_is_what_the_api_answers_and_csv_what_hub_report_prints(
    console_hub: ConsoleHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = console_hub
    await seeded(hub)
    await as_user(hub, "viewer")
    monkeypatch.setenv("HUB_DATABASE_URL", hub.app[keys.SETTINGS].database_url)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    runner = CliRunner()
    for name, extra in (
        ("volume", {"channel": "webchat"}),
        ("response-times", {"team": "support"}),
        ("sla", {}),
        ("bot", {}),
        ("agents", {"bucket": "hour"}),
        ("csat", {"channel": "email"}),
        ("nps", {}),
        ("gaps", {}),  # `hub report gaps` loads the knowledge base's model: compared with the API's answer below
    ):
        query = {**API_QUERY, **extra}
        api = await hub.hub.api("GET", f"/api/v1/reports/{name}", role="viewer", params=query)
        data = await hub.client.get(f"/console/dashboard/data/{name}", params=query)
        assert data.status == 200 and await data.json() == api, name
        download = await hub.client.get(f"/console/dashboard/data/{name}.csv", params=query)
        assert download.status == 200 and download.content_type == "text/csv"
        assert download.headers["Content-Disposition"] == f'attachment; filename="{name}-2026-03-27-2026-03-30.csv"'
        if name == "gaps":
            assert await download.text() == to_csv(api)
            assert api["totals"][0]["no_good_answer"] == 4 and api["groups"]["unhelpful"][0]["article_id"] == "returns"
            continue
        args = ["report", name, "--csv", *(part for key, value in query.items() for part in (f"--{key}", value))]
        printed = await asyncio.to_thread(runner.invoke, main, args)
        assert printed.exit_code == 0, printed.output
        assert await download.text() == printed.output, name


@pytest.mark.asyncio
async def test_dashboards_asking_at_once_share_one_run_of_the_reports(console_hub: ConsoleHub) -> None:
    hub = console_hub
    await seeded(hub)
    await as_user(hub, "viewer")
    service = hub.app[keys.REPORTS]
    ran: list[str] = []
    real_run = service.run

    async def counted(name: str, params: Any) -> dict[str, Any]:
        ran.append(name)
        return await real_run(name, params)

    service.run = counted  # type: ignore[method-assign]  # counting the service's runs
    # A window wide enough for a loaded test machine: this tests the sharing, not the timing.
    hub.app[keys.DASHBOARD_RUNS].GATHER = 1.0
    path = PAGE + "&fragment=figures"

    async def fetch(url: str) -> str:
        response = await hub.client.get(url)
        assert response.status == 200
        return await response.text()

    # Six dashboards on one view told of a change at once: the eight reports run once.
    pages = await asyncio.gather(*(fetch(path) for _ in range(6)))
    assert sorted(ran) == sorted(["volume", "response-times", "sla", "bot", "agents", "csat", "nps", "gaps"])
    assert all(card_figures(page) == EXPECTED for page in pages)
    # Another view at the same moment is its own run; a later request, a new one.
    ran.clear()
    await asyncio.gather(fetch(path), fetch(path + "&channel=sms"))
    assert len(ran) == 16
    ran.clear()
    await fetch(path)
    assert len(ran) == 8


@pytest.mark.asyncio
async def test_when_the_first_asker_goes_away_the_others_still_get_their_figures() -> None:
    runs = SharedRuns()
    started: list[str] = []

    class SlowReports:
        async def run(self, name: str, params: Any) -> dict[str, Any]:
            started.append(name)
            await asyncio.sleep(0.2)
            return {"report": name}

    params = DashboardForm.from_query({"range": "7d"}).params(datetime(2026, 3, 29, tzinfo=UTC), "UTC")
    service: Any = SlowReports()
    first = asyncio.ensure_future(runs.run(service, params))
    await asyncio.sleep(0)  # the first opens the window
    others = [asyncio.ensure_future(runs.run(service, params)) for _ in range(3)]
    await asyncio.sleep(runs.GATHER + 0.05)  # the run has started
    first.cancel()
    answers = await asyncio.gather(*others)
    assert all(reports["volume"] == {"report": "volume"} for reports, _ in answers)
    assert first.cancelled()
    # One cancelled run, then each waiting request ran the reports itself.
    assert len(started) == 8 * 4


def test_preset_ranges_end_with_the_current_local_hour_or_today() -> None:
    now = datetime(2026, 3, 29, 14, 20, tzinfo=UTC)  # 16:20 in Berlin, the day clocks went forward
    start, end = preset_range(Span.DAY, now, BERLIN)
    assert (start, end) == (datetime(2026, 3, 28, 15, tzinfo=UTC), datetime(2026, 3, 29, 15, tzinfo=UTC))
    start, end = preset_range(Span.WEEK, now, BERLIN)
    # Mon 23 Mar 00:00 CET to Mon 30 Mar 00:00 CEST: six days of 24 h and one of 23.
    assert (start, end) == (datetime(2026, 3, 22, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    # Half an hour off UTC: the hour ends at local :00, which is :30 in UTC.
    start, end = preset_range(Span.DAY, now, ZoneInfo("Asia/Kolkata"))
    assert end == datetime(2026, 3, 29, 14, 30, tzinfo=UTC) and end - start == (end - start).__class__(hours=24)
    start, end = preset_range(Span.MONTH, now, ZoneInfo("America/New_York"))
    assert start == datetime(2026, 2, 28, 5, tzinfo=UTC) and end == datetime(2026, 3, 30, 4, tzinfo=UTC)

    def params(**query: str) -> Any:
        return DashboardForm.from_query(query).params(now, "UTC")

    assert params(range="24h", tz="Europe/Berlin").bucket == Bucket.HOUR
    assert params(range="30d").bucket == Bucket.DAY
    assert params(range="30d", bucket="week").bucket == Bucket.WEEK
    custom = params(range="custom", **{"from": "2026-03-01", "to": "2026-03-02"}, tz="Europe/Berlin")
    assert custom.bucket == Bucket.HOUR and custom.end == datetime(2026, 3, 2, 23, tzinfo=UTC)  # both days
    assert params(range="custom", **{"from": "2026-01-01", "to": "2026-03-31"}).bucket == Bucket.DAY
    assert params(range="custom", **{"from": "2025-01-01", "to": "2026-03-31"}).bucket == Bucket.WEEK
    exact = params(range="custom", **{"from": "2026-03-01T08:00:00+00:00", "to": "2026-03-01T20:00:00+00:00"})
    assert (exact.start.hour, exact.end.hour, exact.bucket) == (8, 20, Bucket.HOUR)


def test_figures_read_as_people_say_them() -> None:
    assert [duration_text(s) for s in (None, 0.4, 45, 600, 3599, 3600, 5040, 86399, 90000, 7 * 86400)] == [
        "—",
        "0 s",
        "45 s",
        "10 min",
        "1 h",
        "1 h",
        "1 h 24 min",
        "1 d",
        "1 d 1 h",
        "7 d",
    ]
    assert [percent_text(r) for r in (None, 0, 0.25, 0.6667, 1)] == ["—", "0%", "25%", "66.7%", "100%"]
    hour = bucket_label("2026-10-25T02:00:00+01:00", "hour")
    assert (hour.short, hour.long) == ("02:00", "Sun 25 Oct 2026, 02:00 (+01:00)")
    week = bucket_label("2026-03-23", "week")
    assert (week.short, week.long) == ("23 Mar", "Week of Mon 23 Mar 2026")
