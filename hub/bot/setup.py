"""Starting the bot with the hub: the echo fake, or Rasa + the action server
(as supervised child processes, or external ones at HUB_RASA_URL)."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.client import RasaClient
from hub import keys
from hub.bot.bridge import BotBridge
from hub.bot.model import BotModelWatcher, all_articles
from hub.bot.pidfile import PidFile
from hub.bot.supervisor import ChildProcess, Children
from hub.bot.triage import Triage
from hub.tickets.sla import BusinessHours

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the repository: .venv-rasa, bot/rasa/models


def setup_bot(app: web.Application) -> None:
    settings = app[keys.SETTINGS]
    if settings.bot == "echo":
        from bot.echo import install_echo_bot

        install_echo_bot(app)
    elif settings.bot == "rasa":
        app.cleanup_ctx.append(rasa_ctx)


def rasa_processes(settings: Any, token: str) -> list[ChildProcess]:
    """The action server and Rasa, built by ``bot.rasa.launch`` (the same
    command lines and environments the tests and benchmarks use: loopback
    only, MiniLM weights, telemetry off), supervised by the hub."""
    from bot.rasa import launch

    model = _rooted(settings.rasa_model)
    venv = _rooted(settings.rasa_venv)
    # launch writes logs to files; supervised children log through `logging` instead.
    logs = settings.data_dir / "logs"
    specs = [
        launch.action_server(
            settings.action_port,
            log_path=logs / "actions.log",
            env={
                "HUB_URL": f"http://127.0.0.1:{settings.port}",
                "HUB_PUBLIC_URL": settings.public_url,
                "HUB_BOT_CONFIDENCE_THRESHOLD": str(settings.bot_confidence_threshold),
                "HUB_BOT_HANDOFF_CONFIDENCE": str(settings.bot_handoff_confidence),
            },
        ),
        launch.rasa_server(
            model,
            settings.rasa_port,
            log_path=logs / "rasa.log",
            auth_token=token,
            action_endpoint_url=f"http://127.0.0.1:{settings.action_port}/webhook",
            venv=venv,
        ),
    ]
    ports = (settings.action_port, settings.rasa_port)
    return [
        ChildProcess(name, spec.command, env=spec.env, cwd=spec.cwd, port=port)
        for name, spec, port in zip(("actions", "rasa"), specs, ports)
    ]


def children_pidfile(settings: Any) -> PidFile:
    return PidFile(settings.data_dir / "run" / "children.json")


async def rasa_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    processes: list[ChildProcess] = []
    children: Children | None = None
    if settings.rasa_url:
        url = settings.rasa_url
        token = settings.rasa_token.get_secret_value() if settings.rasa_token else None
    else:
        # A fresh token at every start, even with HUB_RASA_TOKEN set (that one
        # is for an external Rasa): a Rasa left over from an earlier hub then
        # answers 401, and is reported instead of being talked to.
        token = secrets.token_urlsafe(24)
        url = f"http://127.0.0.1:{settings.rasa_port}"
        processes = rasa_processes(settings, token)
        children = Children(processes, children_pidfile(settings))
        await children.start()
    app[keys.BOT_PROCESSES] = processes
    client = RasaClient(url, token=token, timeout=settings.rasa_timeout)
    kb = app.get(_kb_key())
    tickets = app.get(keys.TICKETS)
    triage = Triage(
        embed=kb.embed if kb is not None else None,
        embed_query=kb.embed_query if kb is not None else None,
        rules=(lambda: _rules(tickets)) if tickets is not None else None,
        examples_path=settings.bot_urgent_examples,
        max_false_urgent=settings.bot_urgent_max_false,
        classifier_dir=(
            (settings.bot_urgency_dir or settings.data_dir / "bot" / "urgency")
            if settings.bot_urgency_classifier and kb is not None
            else None
        ),
        classifier_model=settings.kb_model_path,
        # The triage, and Rasa after it, read a message without the search's edge runs: splitting off
        # an unpunctuated opening or closing helps the search, but read by them it cost urgent recall
        # on wrapped held-out messages (0.920 -> 0.877; knowledge_base/focus.py).
        as_searched=functools.partial(kb.as_searched, edges=False) if kb is not None else None,
        parse=client.parse,
    )
    app[keys.BOT_TRIAGE] = triage
    bridge = BotBridge(
        app[keys.SERVICE],
        app[keys.DATABASE],
        client,
        app[keys.METRICS],
        kb_search=(lambda q, k: kb.search(q, k=k)) if kb is not None else None,
        public_url=settings.public_url,
        confidence_threshold=settings.bot_confidence_threshold,
        triage=triage,
        hours=BusinessHours.parse(settings.sla_business_hours, settings.sla_timezone, settings.sla_holidays),
        clock=app[keys.CLOCK],
        tickets=tickets,
        lease_seconds=settings.bot_jobs_lease_seconds,
    )
    app[keys.BOT_BRIDGE] = bridge
    foreign: list[str] = []  # why the Rasa on our port is not ours, while it is not

    def health() -> dict[str, Any]:
        blocked = children.blocked if children is not None else None
        if foreign or blocked:
            return {"ok": False, "mode": "foreign", "error": "; ".join(filter(None, [*foreign, blocked]))}
        return bridge.health()

    app[keys.HEALTH]["bot"] = health
    # Messages arriving before Rasa is up are stored with their bot jobs;
    # the bridge starts answering once Rasa is ready.
    app[keys.SERVICE].attach_bot(bridge.notify)

    watcher = None
    if settings.bot_adapt and processes and kb is not None:
        watcher = BotModelWatcher(
            list_articles=lambda: all_articles(kb),
            rasa=client,
            serving_model=_rooted(settings.rasa_model),
            data_dir=settings.data_dir,
            rasa_python=_rooted(settings.rasa_venv) / "bin" / "python",
            interval=settings.bot_adapt_interval,
        )
        app[keys.BOT_MODEL] = watcher

    own_rasa = processes[-1] if processes else None

    async def probe() -> str:
        state = await client.probe()
        if state == "ready" and own_rasa is not None and not own_rasa.running:
            return "stranger"  # a server that takes any token (no --auth-token), not ours
        return state

    async def ready_by_deadline() -> str:
        """Wait for Rasa to answer our token, HUB_RASA_READY_WAIT at most; the last state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.rasa_ready_wait
        state = await probe()
        while state != "ready" and loop.time() < deadline:
            _note_foreign(state, url, foreign, own=own_rasa is not None)
            await asyncio.sleep(0.5)
            state = await probe()
        if state == "ready":
            took = await client.warm_up()
            if took is not None:
                log.info("Rasa warmed up in %.1f s", took)
        return state

    stranger_reason = "the Rasa on its port is not this hub's"
    starting_reason = "this hub's Rasa is starting"

    async def until_answering(state: str) -> None:
        """From a start or restart that ``ready_by_deadline`` left at ``state``, until Rasa answers.

        Customers get fallback answers meanwhile, and ``/readyz`` says why: never "ok" while
        nothing answers. A Rasa this hub did not start (``FOREIGN``) is never asked; once it
        goes, ours starts on the freed port and is waited for as at a start. Once Rasa
        answers it is warmed up (one parse), as at a start, before the bot reads healthy."""
        warmed = state == "ready"  # ``ready_by_deadline`` warms what it finds ready
        while state != "ready":
            _note_foreign(state, url, foreign, own=own_rasa is not None)
            if state in FOREIGN:
                bridge.hold(stranger_reason)  # never ask a stranger
            else:
                if bridge.held in (stranger_reason, starting_reason):
                    bridge.release()  # asked again, falling back on errors
                bridge.unavailable(
                    f"Rasa at {url} is not answering ({state}) after HUB_RASA_READY_WAIT "
                    f"({settings.rasa_ready_wait:g} s); fallback answers until it does"
                )
            await asyncio.sleep(2.0)
            was_foreign, state = state in FOREIGN, await probe()
            warmed = False
            if was_foreign and state not in FOREIGN:
                # It went: our own Rasa starts on the freed port. Wait for it and
                # warm it up as at a normal start; fallback answers meanwhile.
                _note_foreign(state, url, foreign, own=own_rasa is not None)
                log.info("the foreign Rasa at %s is gone; waiting for this hub's own", url)
                bridge.hold(starting_reason)
                # The probe that saw it go may have ridden a connection the foreign one
                # still kept alive: start afresh, so nothing (the warm-up parse included)
                # is carried to it.
                await client.reconnect()
                state = await ready_by_deadline()
                warmed = state == "ready"
        foreign.clear()
        if not warmed:
            took = await client.warm_up()
            if took is not None:
                log.info("Rasa answers, past its ready wait; warmed up in %.1f s", took)
        if bridge.held in (stranger_reason, starting_reason):
            bridge.release()
        bridge.available()

    async def start_when_ready() -> None:
        await triage.load()  # the examples embed while Rasa loads
        state = await ready_by_deadline()
        if state in FOREIGN:
            bridge.hold(stranger_reason)  # never ask a stranger
        bridge.start()  # not ready by the deadline: the bridge answers in fallback mode
        await until_answering(state)
        if watcher is not None:
            await watcher.run()  # until cancelled: the NLU follows the knowledge base

    # When the supervisor restarts our Rasa (it crashed or was killed), its
    # /status answers before its first parse is warm: hold the bridge (fallback
    # answers, as while it was down) until it answers and is warmed, exactly as
    # at start, so the first customer after it does not pay the cold parse.
    restarting: list[asyncio.Task[None]] = []
    restarting_reason = "this hub's Rasa is restarting"

    async def back_up() -> None:
        state = await ready_by_deadline()
        if bridge.held == restarting_reason:
            bridge.release()  # ready, or past HUB_RASA_READY_WAIT: asked again, falling back on errors
        log.info("this hub's Rasa is %s after its restart", "back" if state == "ready" else f"still {state}")
        await until_answering(state)

    if own_rasa is not None:
        recorded = own_rasa.on_spawn

        async def spawned() -> None:
            if recorded is not None:
                await recorded()
            # A restart (not the first start), unless a foreign Rasa's hold is on.
            if own_rasa.restarts and bridge.held in (None, restarting_reason):
                for task in restarting:
                    task.cancel()
                bridge.hold(restarting_reason)
                restarting[:] = [asyncio.create_task(back_up(), name="bot-restart")]

        own_rasa.on_spawn = spawned

    starter = asyncio.create_task(start_when_ready(), name="bot-start")
    # Loaded (or trained, niced, in a child) alongside Rasa's start; the other signals serve meanwhile.
    classifier = asyncio.create_task(triage.run_classifier(), name="urgency-classifier")
    try:
        yield
    finally:
        starter.cancel()
        classifier.cancel()
        for task in restarting:
            task.cancel()
        await asyncio.gather(starter, classifier, *restarting, return_exceptions=True)
        await bridge.stop()
        await client.close()
        if children is not None:
            await children.stop()


FOREIGN = ("refused", "stranger")


def _note_foreign(state: str, url: str, foreign: list[str], *, own: bool) -> None:
    """Log once, and keep for /readyz, that the Rasa at ``url`` is not one to talk to."""
    if state not in FOREIGN:
        foreign.clear()
        return
    if foreign:
        return
    if own:
        answer = "refuses this hub's token" if state == "refused" else "is not the one this hub started"
        reason = f"the Rasa answering at {url} {answer}: another process holds its port"
        log.error("%s (a Rasa left by an earlier hub?); not using it. Stop it, and this hub's Rasa starts.", reason)
    else:
        reason = f"the Rasa at {url} refuses HUB_RASA_TOKEN"
        log.error("%s; check the token", reason)
    foreign.append(reason)


def _rooted(path: Path) -> Path:
    return path if path.is_absolute() else ROOT / path


async def _rules(tickets: Any) -> Any:
    return (await tickets.policy()).rules


def _kb_key() -> Any:
    from hub.kb.setup import KNOWLEDGE_BASE

    return KNOWLEDGE_BASE
