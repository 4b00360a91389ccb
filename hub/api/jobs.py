"""The durable queues for an admin: counts, entries, and requeueing dead letters.

One shape for every queue of ``hub.jobs``: ``GET /api/v1/jobs?queue=outbox``
and ``POST /api/v1/jobs/{queue}/{id}/retry``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub import keys
from hub.api.base import audit_entry, int_param, path_id, requires
from hub.audit import audited
from hub.automation.store import RUNS
from hub.bot.bridge import BOT_JOBS
from hub.conversations.outbox import OUTBOX
from hub.errors import InvalidInput, NotFound
from hub.events import utcnow
from hub.jobs.queue import Queue
from hub.models import Role
from hub.slack.jobs import SLACK_JOBS
from hub.webhooks.store import WEBHOOK_DELIVERIES

routes = web.RouteTableDef()

QUEUES: dict[str, Queue[Any]] = {
    queue.name: queue for queue in (OUTBOX, SLACK_JOBS, BOT_JOBS, RUNS, WEBHOOK_DELIVERIES)
}
# The audit log's names for a requeue, as they were before the queues shared one API.
AUDIT_TARGETS = {
    "outbox": "outbox",
    "slack": "slack_job",
    "bot": "bot_job",
    "automation": "automation_run",
    "webhooks": "webhook_delivery",
}


def _queue(name: str | None) -> Queue[Any]:
    if name not in QUEUES:
        raise InvalidInput(f"queue must be one of {', '.join(QUEUES)}")
    return QUEUES[name]


def _notify(app: web.Application, queue: str) -> None:
    """Wake the queue's worker, when it runs here, so a requeued row goes at once."""
    worker: Any = None
    if queue == "outbox":
        worker = app.get(keys.OUTBOX)
    elif queue == "slack":
        desk = app.get(keys.SLACK_DESK)
        worker = desk.worker if desk is not None else None
    elif queue == "bot":
        worker = app.get(keys.BOT_BRIDGE)
    elif queue == "automation":
        automation = app.get(keys.AUTOMATION)
        worker = automation.worker if automation is not None else None
    elif queue == "webhooks":
        webhooks = app.get(keys.WEBHOOKS)
        worker = webhooks.sender if webhooks is not None else None
    if worker is not None:
        worker.notify()


@routes.get("/api/v1/jobs")
@requires(Role.ADMIN)
async def list_jobs(request: web.Request) -> web.Response:
    queue = _queue(request.query.get("queue"))
    status = request.query.get("status")
    limit = int_param(request, "limit", default=50, hi=500)
    db = request.app[keys.DATABASE]
    # A status another queue has (the bot's "delivered") is a filter nothing matches, not a mistake.
    items = await db.read(queue.list, status, limit) if not status or status in queue.spec.statuses else []
    counts = await db.read(queue.depth)
    return web.json_response({"counts": counts, "items": items})


@routes.post("/api/v1/jobs/{queue}/{id}/retry")
@requires(Role.ADMIN)
async def retry_job(request: web.Request) -> web.Response:
    name = request.match_info["queue"]
    if name not in QUEUES:
        raise NotFound(f"no queue {name!r}")
    job_id = path_id(request)
    target = AUDIT_TARGETS[name]
    entry = audit_entry(request, f"{target}.retry", target, job_id)
    await request.app[keys.DATABASE].write(audited(QUEUES[name].requeue_dead, entry), job_id, utcnow())
    _notify(request.app, name)
    return web.json_response({"requeued": job_id})
