"""Reports over the timeline (viewer role): ``GET /api/v1/reports/{name}``."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import requires
from hub.models import Role
from hub.reports.params import ReportParams

routes = web.RouteTableDef()


@routes.get("/api/v1/reports/{name}")
@requires(Role.VIEWER)
async def get_report(request: web.Request) -> web.Response:
    query = request.query
    params = ReportParams.parse(
        start=query.get("from"),
        end=query.get("to"),
        tz=query.get("tz"),
        bucket=query.get("bucket"),
        channel=query.get("channel"),
        team=query.get("team"),
        agent=query.get("agent"),
        priority=query.get("priority"),
    )
    report = await request.app[keys.REPORTS].run(request.match_info["name"], params)
    return web.json_response(report)
