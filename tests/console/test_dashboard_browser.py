"""The dashboard in headless Chromium, under the console's own policy
(``script-src 'self'; style-src 'self'``): the browser's time zone is
filled in, the cards read the known figures (CSAT and content gaps
included), every chart is drawn by the vendored Chart.js, the content gaps
list their questions and link the unhelpful article, the table toggle and
the CSV downloads work, a new
conversation reaches the open page by itself, nothing scrolls sideways at
375 px, no error (a policy violation is one) is logged, and axe-core finds
no serious or critical violation. Screenshots at 1280x800 and 375x740."""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest

from hub import keys
from hub.reports.render import to_csv
from tests.browser.conftest import artifacts, browser  # noqa: F401  (fixtures, used by name)
from tests.console.conftest import ConsoleHub, email_of
from tests.console.dashboard_timeline import EXPECTED, write
from tests.console.helpers import axe_violations, playwright_cookies, signed_in_cookies
from tests.hub.report_timeline import Records

BERLIN = ZoneInfo("Europe/Berlin")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}

# Per chart: its size on screen and how many of its pixels are painted.
# Each call of fetch() for the figures, as Date.now() in milliseconds.
RECORD_FIGURE_FETCHES = """
window.figureFetches = [];
const fetchFigures = window.fetch;
window.fetch = function (resource, options) {
  const url = typeof resource === "string" ? resource : resource.url;
  if (String(url).includes("fragment=figures")) window.figureFetches.push(Date.now());
  return fetchFigures.call(this, resource, options);
};
"""
CHARTS_DRAWN = """() => [...document.querySelectorAll('canvas[data-chart]')].map((canvas) => {
  const box = canvas.getBoundingClientRect();
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
  return {id: canvas.id, width: box.width, height: box.height, painted, chart: !!window.Chart.getChart(canvas)};
})"""


def watch(page: Any) -> list[str]:
    """Errors the page logs (a CSP violation is one) and uncaught exceptions."""
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    return problems


async def figures_on(page: Any) -> dict[str, str]:
    found: dict[str, str] = await page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('[data-figure]')]"
        ".map((el) => [el.dataset.figure, el.textContent]))"
    )
    return found


def assert_drawn(charts: list[dict[str, Any]], width: int) -> None:
    assert [c["id"] for c in charts] == [
        "chart-volume",
        "chart-first-response",
        "chart-resolution",
        "chart-sla",
        "chart-bot",
        "chart-reasons",
        "chart-csat",
        "chart-nps",
    ]
    for chart in charts:
        assert chart["chart"], chart
        assert 100 < chart["width"] <= width and chart["height"] > 100, chart
        assert chart["painted"] > 500, chart  # axes, labels and the data, not a blank canvas


@pytest.mark.asyncio
@pytest.mark.browser
async def test_the_dashboard_in_a_browser(browser: Any, console_hub: ConsoleHub, artifacts: Path) -> None:
    hub = console_hub
    # Two days ago in Berlin, so the whole timeline (a day before to a day after) is in the last 7 days.
    day = hub.app[keys.CLOCK].now().astimezone(BERLIN).date() - timedelta(days=2)
    await hub.db.write(write, Records(BERLIN), day, {})
    cookies = playwright_cookies(await signed_in_cookies(hub.app, email_of("viewer")), hub.base_url)

    context = await browser.new_context(viewport=DESKTOP, timezone_id="Europe/Berlin", accept_downloads=True)
    await context.add_cookies(cookies)
    page = await context.new_page()
    errors = watch(page)
    # When the page re-read its figures, by the page's own clock: the moment
    # its script calls fetch(). (Request events reach this process late by a
    # varying lag on a busy machine, which made gaps of 5 s look like 4.76 s.)
    await page.add_init_script(RECORD_FIGURE_FETCHES)
    await page.goto(f"{hub.base_url}/console/dashboard")
    # No tz in the URL: the browser's zone is filled in and the figures re-read in it.
    await page.wait_for_function(
        "() => document.querySelector('#dash-range-shown')?.textContent.includes('Europe/Berlin')", timeout=10000
    )
    assert await page.input_value("#dash-tz") == "Europe/Berlin"
    assert "tz=Europe%2FBerlin" in page.url
    assert await figures_on(page) == EXPECTED
    assert_drawn(await page.evaluate(CHARTS_DRAWN), DESKTOP["width"])
    # The custom range's fields show only for a custom range.
    assert await page.locator("#dash-from").is_hidden()
    await page.select_option("#dash-range", "custom")
    assert await page.locator("#dash-from").is_visible()
    await page.select_option("#dash-range", "7d")

    # A chart as a table.
    table = page.locator("#table-volume")
    assert await table.is_hidden()
    await page.locator("#details-volume summary").click()
    assert await table.is_visible()
    await page.screenshot(path=str(artifacts / "console-dashboard-desktop.png"), full_page=True)

    # The CSAT chart and the content gaps, with their data; an unhelpful article links to the portal.
    assert "Average rating 3.67 / 5 from 3 answers" in await page.locator("#caption-csat").inner_text()
    first_gap = page.locator("#table-gaps tr[data-gap]").first
    assert await first_gap.locator("th").inner_text() == "can i pay with paypal"
    assert await first_gap.locator("td").first.inner_text() == "3"
    article = page.locator("#table-unhelpful a", has_text="returns")
    assert await article.get_attribute("href") == "/help/articles/returns"
    await page.locator("#section-csat").scroll_into_view_if_needed()
    await page.locator("#section-gaps").screenshot(path=str(artifacts / "console-dashboard-gaps.png"))
    await page.locator("#section-csat").screenshot(path=str(artifacts / "console-dashboard-csat.png"))
    await page.locator("#section-nps").screenshot(path=str(artifacts / "console-dashboard-nps.png"))
    assert "NPS 0 (promoters 9-10 minus detractors 0-6)" in await page.locator("#caption-nps").inner_text()
    async with page.expect_download() as started:
        await page.locator("#section-gaps a[data-csv]").click()
    assert (await started.value).suggested_filename.startswith("gaps-")

    # Its CSV: the volume report's figures, as `hub report volume --csv` prints them.
    link = page.locator("#section-volume a[data-csv]")
    async with page.expect_download() as started:
        await link.click()
    download = await started.value
    assert download.suggested_filename.startswith("volume-") and download.suggested_filename.endswith(".csv")
    downloaded = Path(await download.path()).read_text()
    query = dict(parse_qsl(urlsplit(await link.get_attribute("href") or "").query))
    assert query["tz"] == "Europe/Berlin" and query["bucket"] == "day"
    api = await hub.hub.api("GET", "/api/v1/reports/volume", role="viewer", params=query)
    assert downloaded == to_csv(api)
    assert api["totals"][0]["new_conversations"] == 6

    # Live: a new customer writes; the open page shows it without a reload (the
    # stream's change, at most 5 s after the last refresh), the table still open.
    await hub.hub.inbound({"from": "dash-live", "text": "hello there", "id": f"dash-{time.time_ns()}"})
    await page.locator('[data-figure="conversations"]', has_text="7").wait_for(timeout=15000)
    assert await page.locator("#table-volume").is_visible()
    assert_drawn(await page.evaluate(CHARTS_DRAWN), DESKTOP["width"])
    # A burst of changes is one or two refreshes, never closer than 5 s apart.
    before = len(await page.evaluate("window.figureFetches"))
    for n in range(4):
        await hub.hub.inbound({"from": f"dash-burst-{n}", "text": "hi", "id": f"dash-burst-{n}-{time.time_ns()}"})
    await page.locator('[data-figure="conversations"]', has_text="11").wait_for(timeout=20000)
    await page.wait_for_timeout(1000)
    refreshes = await page.evaluate("window.figureFetches")
    assert 1 <= len(refreshes) - before <= 2, refreshes
    gaps = [later - earlier for earlier, later in itertools.pairwise(refreshes)]
    # 5 s by the script's clock, less the millisecond its clock may tick
    # between reading it and calling fetch().
    assert all(gap >= 4990 for gap in gaps), gaps

    await page.set_viewport_size(PHONE)
    await page.wait_for_function(
        f"() => [...document.querySelectorAll('canvas[data-chart]')].every((c) => c.getBoundingClientRect().width <= {PHONE['width']})"
    )
    await page.screenshot(path=str(artifacts / "console-dashboard-phone.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the dashboard scrolls sideways on a phone ({width} px)"
    assert_drawn(await page.evaluate(CHARTS_DRAWN), PHONE["width"])
    assert errors == []
    await context.close()

    # axe-core, injected as a script, which the console's policy forbids: a context without it.
    found: dict[str, Any] = {}
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        checking = await browser.new_context(viewport=viewport, bypass_csp=True, timezone_id="Europe/Berlin")
        await checking.add_cookies(cookies)
        checked = await checking.new_page()
        await checked.goto(f"{hub.base_url}/console/dashboard?range=7d&tz=Europe/Berlin")
        await checked.locator("#details-sla summary").click()
        await checked.locator("#details-csat summary").click()
        found[size] = await axe_violations(checked)
        await checking.close()
    assert all(not v for v in found.values()), json.dumps(found, indent=1)
