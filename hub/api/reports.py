"""Reports over the timeline (viewer role): ``GET /api/v1/reports/{name}``."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from hub.api.base import requires
from hub.models import Role

routes = web.RouteTableDef()


@routes.get("/api/v1/reports/{name}")
@requires(Role.VIEWER)
async def get_report(request: web.Request) -> web.Response:
    report = await request.app[keys.REPORTS].run_query(request.match_info["name"], request.query)
    return web.json_response(report)
