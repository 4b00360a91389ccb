"""``ReportService``: run a report by name, on a read connection.

The registry below is where report families plug in: a later slice adds
CSAT (average, distribution, response rate) as one more module with a
``REPORT`` and one line in ``REPORTS``; a dashboard reads the same
``ReportService.run`` output.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.errors import InvalidInput, NotFound
from hub.events import Clock
from hub.reports import agents, attainment, bot, csat, gaps, nps, times, volume
from hub.reports.base import Context, Report, ReportFn, Result
from hub.reports.params import ReportParams
from hub.tickets.sla import BusinessHours

if TYPE_CHECKING:
    from hub.storage import Database

REPORTS: dict[str, Report] = {
    report.name: report
    for report in (
        volume.REPORT,
        times.REPORT,
        attainment.REPORT,
        bot.REPORT,
        agents.REPORT,
        gaps.REPORT,
        csat.REPORT,
        nps.REPORT,
    )
}


def get_report(name: str) -> Report:
    report = REPORTS.get(name)
    if report is None:
        raise NotFound(f"no report {name!r}; reports: {', '.join(REPORTS)}")
    return report


def check_filters(report: Report, params: ReportParams) -> None:
    unsupported = sorted(set(params.filters) - report.filters)
    if unsupported:
        takes = ", ".join(sorted(report.filters)) or "no filters"
        raise InvalidInput(
            f"report {report.name!r} does not filter by {', '.join(unsupported)} (it takes {takes})",
            details={"field": unsupported[0]},
        )


def to_dict(report: Report, params: ReportParams, result: Result, *, business_hours: bool) -> dict[str, Any]:
    return {
        "report": report.name,
        "summary": report.summary,
        "params": {**params.to_dict(), "business_hours": business_hours},
        "series": result.series,
        "totals": result.totals,
        "groups": result.groups,
    }


def _tuned(run: ReportFn) -> ReportFn:
    """``run`` in a read transaction set up for reports. On PostgreSQL: no
    JIT (a report's queries cost enough to trigger it, and compiling them
    took longer than running them: 2.4 of 3.9 s for the bot report over 1M
    messages), and room to sort and hash in memory rather than on disk."""

    def tuned(conn: Connection, params: ReportParams, context: Context) -> Result:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL jit = off")
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        return run(conn, params, context)

    return tuned


class ReportService:
    def __init__(
        self,
        db: Database,
        *,
        hours: BusinessHours | None,
        clock: Clock,
        embed: Callable[[Sequence[str]], Awaitable[Any]] | None = None,
        answer_confidence: float | None = None,
    ) -> None:
        self.db = db
        self.hours = hours
        self.clock = clock
        self.embed = embed
        self.answer_confidence = answer_confidence

    async def run(self, name: str, params: ReportParams) -> dict[str, Any]:
        """The report's figures with its parameters echoed (``to_dict``)."""
        report = get_report(name)
        check_filters(report, params)
        context = Context(
            now=self.clock.now(), hours=self.hours, embed=self.embed, answer_confidence=self.answer_confidence
        )
        result = await self.db.read(_tuned(report.run), params, context)
        if report.finish is not None:
            result = await report.finish(result, context)
        return to_dict(report, params, result, business_hours=self.hours is not None)

    async def run_query(self, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        """``run`` with the parameters of a request's query string: what
        ``GET /api/v1/reports/{name}`` answers, and the console's dashboard data."""
        return await self.run(name, ReportParams.from_query(query))


async def reports_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the report service, with the SLA's business hours."""
    settings = app[keys.SETTINGS]
    hours = BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays)
    kb = app.get(keys.KNOWLEDGE_BASE)
    app[keys.REPORTS] = ReportService(
        app[keys.DATABASE],
        hours=hours,
        clock=app[keys.CLOCK],
        embed=kb.embed if kb is not None else None,
        answer_confidence=settings.bot_confidence_threshold,
    )
    yield
