"""The dashboard (``/console/dashboard``, viewer role): the reports of
``hub.reports`` as headline cards, charts and tables, refreshing live.

Routes:

- ``GET /console/dashboard``: the page. Its query string is the form
  (``range``: ``24h``, ``7d`` (the default), ``30d`` or ``custom`` with
  ``from`` and ``to`` (dates, both days included; a date-time is taken as an
  exact instant, ``to`` excluded); ``tz``; ``bucket``: ``hour``, ``day`` or
  ``week``, empty for the range's own (an hour for 24 h, a day for 7 and 30
  days, and for a custom range an hour up to 2 days, a day up to 92 days,
  else a week); ``channel``; ``team``), so a view is a URL to share. The
  preset ranges end with the current local hour (24 h) or today, so a page
  left open slides along. With ``fragment=figures`` it answers the figures
  alone, which the page's script swaps in when the live stream
  (``/console/events``) says something changed (at most every 5 s) and
  every 60 s. Parameters that do not parse are a 400: the page again with
  the message naming the field.
- ``GET /console/dashboard/data/{name}``: exactly what ``GET
  /api/v1/reports/{name}`` answers (the same parameters, the same
  ``ReportService.run_query``), for a signed-in person instead of a bearer
  token; ``/console/dashboard/data/{name}.csv``: the same figures as the CSV
  ``hub report NAME --csv`` prints (``hub.reports.render.to_csv``). Each
  chart links to its report's CSV with the parameters it was drawn from.

The reports run in the handler, through the ``ReportService`` the API uses,
all of them at once on the read pool; dashboards asking for the same figures
at the same moment (the live stream tells them all at once) share one run
(``SharedRuns``). A filter a report does not take (team
for the volume and bot reports, channel for agent activity) is left out of
that report and the page says so next to it, rather than failing the page.
Time zone: the browser's by default (the script fills ``tz`` in when the
URL has none, until then the SLA's zone, ``HUB_SLA_TIMEZONE``); parsed and
validated by the reports' own ``ReportParams.parse``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

from aiohttp import web

from hub import keys
from hub.console import dashboard_figures
from hub.console.dashboard_figures import NAMES, Figures
from hub.console.inbox import teams as known_teams
from hub.console.live import EVENTS_PATH
from hub.console.render import render
from hub.console.sessions import require_user
from hub.errors import InvalidInput
from hub.models import Role
from hub.reports.params import Bucket, ReportParams, parse_zone
from hub.reports.render import to_csv
from hub.reports.service import ReportService, get_report

routes = web.RouteTableDef()

PATH = "/console/dashboard"
DATA_PATH = PATH + "/data"
_REPORT_NAME = "{name:[a-z][a-z0-9-]{0,40}}"
# Custom ranges: the automatic bucket is an hour up to two days (one may have a 25th hour),
# a day up to about three months, else a week.
HOURLY_UP_TO = timedelta(hours=49)
DAILY_UP_TO = timedelta(days=92)


class Span(enum.StrEnum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    CUSTOM = "custom"

    @property
    def label(self) -> str:
        return {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom range"}[
            self.value
        ]


DEFAULT_SPAN = Span.WEEK


@dataclass(frozen=True, slots=True)
class DashboardForm:
    """The page's query string as typed (shown back as is, even when wrong)."""

    span: str = DEFAULT_SPAN.value
    start: str = ""
    end: str = ""
    tz: str = ""
    bucket: str = ""
    channel: str = ""
    team: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DashboardForm:
        def text(name: str) -> str:
            return query.get(name, "").strip()

        return cls(
            span=text("range") or DEFAULT_SPAN.value,
            start=text("from"),
            end=text("to"),
            tz=text("tz"),
            bucket=text("bucket"),
            channel=text("channel"),
            team=text("team"),
        )

    def query(self) -> dict[str, str]:
        """The page's own query string for this form (empty fields left out)."""
        fields = {
            "range": self.span,
            "from": self.start if self.span == Span.CUSTOM else "",
            "to": self.end if self.span == Span.CUSTOM else "",
            "tz": self.tz,
            "bucket": self.bucket,
            "channel": self.channel,
            "team": self.team,
        }
        return {name: value for name, value in fields.items() if value}

    def params(self, now: datetime, default_tz: str) -> ReportParams:
        """The reports' parameters; InvalidInput naming the field that is wrong."""
        try:
            span = Span(self.span)
        except ValueError:
            raise InvalidInput(
                f"range must be one of {', '.join(s.value for s in Span)}", details={"field": "range"}
            ) from None
        tz = self.tz or default_tz
        if self.bucket and self.bucket not in {b.value for b in Bucket}:
            raise InvalidInput("bucket must be one of hour, day, week", details={"field": "bucket"})
        filters = {"channel": self.channel or None, "team": self.team or None}
        if span is Span.CUSTOM:
            params = ReportParams.parse(
                start=self.start,
                end=_day_after(self.end),
                tz=tz,
                bucket=self.bucket or Bucket.WEEK.value,  # the fewest buckets, until the length is known
                **filters,
            )
            if self.bucket:
                return params
            length = params.end - params.start
            fitting = Bucket.HOUR if length <= HOURLY_UP_TO else Bucket.DAY if length <= DAILY_UP_TO else Bucket.WEEK
            return dataclasses.replace(params, bucket=fitting)
        start, end = preset_range(span, now, parse_zone(tz))
        size = self.bucket or (Bucket.HOUR if span is Span.DAY else Bucket.DAY).value
        return ReportParams.parse(start=start.isoformat(), end=end.isoformat(), tz=tz, bucket=size, **filters)


def _day_after(text: str) -> str:
    """``to`` as typed: a date includes that day (the reports' ``to`` is exclusive);
    anything else goes to the reports' parsing as it is."""
    if len(text) == 10:
        try:
            return (date.fromisoformat(text) + timedelta(days=1)).isoformat()
        except (ValueError, OverflowError):  # not a date, or 9999-12-31: the reports' parsing says why
            pass
    return text


def preset_range(span: Span, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of a preset: the 24 hours up to the end of the
    current local hour, or the last 7 or 30 local days, today included."""
    local = now.astimezone(zone)
    if span is Span.DAY:
        end = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC) + timedelta(hours=1)
        return end - timedelta(hours=24), end
    days = 7 if span is Span.WEEK else 30
    today = local.date()
    start = datetime.combine(today - timedelta(days=days - 1), time(0), tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def for_report(params: ReportParams, name: str) -> tuple[ReportParams, list[str]]:
    """``params`` without the filters report ``name`` does not take, and which those were."""
    takes = get_report(name).filters
    dropped = [f for f in params.filters if f not in takes]
    cleared: dict[str, Any] = dict.fromkeys(dropped)
    return dataclasses.replace(params, **cleared), dropped


def not_filtered_note(dropped: list[str]) -> str:
    return f"Not filtered by {' or '.join(dropped)}: this report does not break down that way." if dropped else ""


Run = tuple[dict[str, Any], dict[str, str]]


async def run_reports(service: ReportService, params: ReportParams) -> Run:
    """Every report the dashboard shows, at once; and per report, the note on filters it left out."""
    narrowed = {name: for_report(params, name) for name in NAMES}
    answers = await asyncio.gather(*(service.run(name, narrowed[name][0]) for name in NAMES))
    return dict(zip(NAMES, answers, strict=True)), {
        name: not_filtered_note(dropped) for name, (_, dropped) in narrowed.items()
    }


class SharedRuns:
    """One run of the reports for the dashboards that ask for the same figures at once.

    The live stream tells every open dashboard about a change at the same
    moment, so twenty supervisors on the same view would run the same
    reports twenty times. A request opens a short gathering window
    (``GATHER`` seconds); requests for the same parameters arriving in it
    wait for that one run. The run starts after the window closes, so every
    request it answers was made before it started: no one is handed figures
    older than their own request. One arriving once the run has started
    opens the next window.

    No task is created: the first request runs the reports in its own
    handler. If it goes away (the browser navigated off) before it is done,
    the ones waiting on it run the reports themselves.
    """

    GATHER = 0.05

    def __init__(self) -> None:
        self._gathering: dict[ReportParams, asyncio.Future[Run]] = {}

    async def run(self, service: ReportService, params: ReportParams) -> Run:
        waiting = self._gathering.get(params)
        if waiting is not None:
            try:
                return await asyncio.shield(waiting)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not waiting.cancelled() or (task is not None and task.cancelling()):
                    raise  # this request was cancelled, not the run it waited on
            return await run_reports(service, params)
        shared: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        # Nobody waiting is fine: the outcome counts as read either way.
        shared.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._gathering[params] = shared
        try:
            await asyncio.sleep(self.GATHER)
        except BaseException:
            shared.cancel()
            raise
        finally:
            if self._gathering.get(params) is shared:
                del self._gathering[params]
        try:
            result = await run_reports(service, params)
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except Exception as err:
            shared.set_exception(err)
            raise
        shared.set_result(result)
        return result


def setup_dashboard(app: web.Application) -> None:
    app[keys.DASHBOARD_RUNS] = SharedRuns()
    app.add_routes(routes)


def csv_url(name: str, params: ReportParams) -> str:
    return f"{DATA_PATH}/{name}.csv?{urlencode(for_report(params, name)[0].to_query())}"


@cache
def zone_names() -> list[str]:
    return sorted(name for name in available_timezones() if "/" in name or name == "UTC")


@routes.get(PATH)
async def dashboard_page(request: web.Request) -> web.Response:
    await require_user(request, Role.VIEWER)
    app = request.app
    settings = app[keys.SETTINGS]
    form = DashboardForm.from_query(request.query)
    fragment = request.query.get("fragment") == "figures"
    try:
        params = form.params(app[keys.CLOCK].now(), settings.sla_timezone)
    except InvalidInput as err:
        if fragment:
            raise
        return await _page(request, form, None, None, error=err.message, status=400)
    reports, notes = await app[keys.DASHBOARD_RUNS].run(app[keys.REPORTS], params)
    figures = dashboard_figures.figures(reports, notes)
    if fragment:
        return render(request, "dashboard_figures.html", **_figures_context(params, figures))
    return await _page(request, form, params, figures)


def _figures_context(params: ReportParams, figures: Figures) -> dict[str, Any]:
    shown = params.to_dict()
    return {
        "figures": figures,
        "csv_urls": {chart.key: csv_url(chart.report, params) for chart in figures.charts},
        "agents_csv_url": csv_url(dashboard_figures.AGENTS, params),
        "gaps_csv_url": csv_url(dashboard_figures.GAPS, params),
        "shown": {"range": range_text(params), "tz": shown["tz"], "bucket": shown["bucket"]},
    }


def range_text(params: ReportParams) -> str:
    """``"Mon 23 Mar 2026 to Sun 29 Mar 2026"`` (whole local days, the last included)
    or ``"Sun 29 Mar 2026 14:00 to Mon 30 Mar 2026 14:00"``."""
    start, end = params.start.astimezone(params.zone), params.end.astimezone(params.zone)

    def day(value: date) -> str:
        return f"{value.strftime('%a')} {value.day} {value.strftime('%b %Y')}"

    if start.time() == time(0) and end.time() == time(0):
        return f"{day(start.date())} to {day(end.date() - timedelta(days=1))}"
    return f"{day(start.date())} {start.strftime('%H:%M')} to {day(end.date())} {end.strftime('%H:%M')}"


async def _page(
    request: web.Request,
    form: DashboardForm,
    params: ReportParams | None,
    figures: Figures | None,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    teams = await app[keys.DATABASE].read(known_teams, settings.ticket_default_team)
    seen = figures.channels if figures is not None else []
    channels = sorted({*app[keys.CHANNELS].keys(), *seen, *([form.channel] if form.channel else [])})
    context: dict[str, Any] = (
        _figures_context(params, figures) if params is not None and figures is not None else {"figures": None}
    )
    return render(
        request,
        "dashboard.html",
        status=status,
        form=form,
        tz=form.tz or settings.sla_timezone,
        tz_explicit=bool(form.tz),
        spans=list(Span),
        buckets=[b.value for b in Bucket],
        channels=channels,
        teams=sorted({*teams, *([form.team] if form.team else [])}),
        zones=zone_names(),
        error=error,
        fragment_url=f"{PATH}?{urlencode({**form.query(), 'fragment': 'figures'})}",
        events_url=EVENTS_PATH,
        **context,
    )


@routes.get(DATA_PATH + "/" + _REPORT_NAME)
async def report_json(request: web.Request) -> web.Response:
    """What ``GET /api/v1/reports/{name}`` answers, for the console's session."""
    await require_user(request, Role.VIEWER)
    report = await request.app[keys.REPORTS].run_query(request.match_info["name"], request.query)
    return web.json_response(report)


@routes.get(DATA_PATH + "/" + _REPORT_NAME + ".csv")
async def report_csv(request: web.Request) -> web.Response:
    """The report as ``hub report NAME --csv`` prints it, as a download."""
    await require_user(request, Role.VIEWER)
    name = request.match_info["name"]
    report = await request.app[keys.REPORTS].run_query(name, request.query)
    first, last = report["params"]["from"][:10], report["params"]["to"][:10]
    return web.Response(
        text=to_csv(report),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{first}-{last}.csv"'},
    )
