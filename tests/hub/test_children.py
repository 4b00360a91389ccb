"""The bot's child processes never outlive the hub, and a hub never adopts
a Rasa it did not start (hub/bot/supervisor.py, tether.py, pidfile.py).

Real processes throughout: hubs and children are started, SIGKILLed and
looked for in /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from hub.bot.pidfile import PidFile, Recorded, process_start_time
from tests.conftest import free_port, make_settings, start_hub, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="looks for processes in /proc")

ROOT = Path(__file__).resolve().parents[2]

# A child that starts a grandchild deaf to SIGTERM (as a stuck worker would
# be), writes both pids to a file, then waits.
SLEEPER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(sys.argv[1] + ".tmp", "w") as out:
        out.write(f"{os.getpid()} {worker.pid}")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
    """
)

# A hub stand-in: the real supervisor (Children + ChildProcess) running the
# sleeper, in an event loop of its own process, as `hub serve` runs Rasa.
SUPERVISOR = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from hub.bot.pidfile import PidFile
    from hub.bot.supervisor import ChildProcess, Children

    async def main():
        sleeper = ChildProcess("sleeper", [sys.executable, "-c", sys.argv[1], sys.argv[2]], grace=1.0)
        children = Children([sleeper], PidFile(Path(sys.argv[3])))
        await children.start()
        await asyncio.sleep(600)

    from hub.__main__ import new_event_loop
    new_event_loop(sys.argv[4]).run_until_complete(main())
    """
)


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: it only waits for its parent to read its status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def wait_file(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def start_stranger(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A live process in a session of its own, as a hub's child is."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_sigkilled_hub_takes_its_children_and_their_workers_along(tmp_path: Path, event_loop: str) -> None:
    pids_file, pidfile = tmp_path / "pids", tmp_path / "run" / "children.json"
    command = [sys.executable, "-c", SUPERVISOR, SLEEPER, str(pids_file), str(pidfile), event_loop]
    hub = subprocess.Popen(command, cwd=ROOT)
    try:
        child, worker = map(int, wait_file(pids_file).split())
        recorded = json.loads(wait_file(pidfile))
        assert recorded["hub"]["pid"] == hub.pid
        [tether] = recorded["children"]
        assert tether["start_time"] == process_start_time(tether["pid"])
        assert alive(child) and alive(worker) and alive(tether["pid"])
        hub.kill()  # SIGKILL: no cleanup context, no finally, nothing of the hub runs
        hub.wait()
        # The tether sees the hub's pipe close, SIGTERMs the group, and once
        # the child is gone (or after 1 s) SIGKILLs what is left: the worker
        # ignores SIGTERM.
        assert wait_gone([tether["pid"], child, worker], timeout=5) == []
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()


def test_stale_children_of_a_dead_hub_are_ended_at_start(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "run" / "children.json")
    stale = start_stranger(tmp_path)
    try:
        pidfile.path.parent.mkdir(parents=True)
        dead_hub = {"name": "hub", "pid": 2**22 + 1, "start_time": 1, "argv": []}
        child = Recorded("rasa", stale.pid, process_start_time(stale.pid), ["rasa", "run"])
        pidfile.path.write_text(json.dumps({"hub": dead_hub, "children": [_as_dict(child)]}))
        assert pidfile.clear_stale(grace=2) == [child]
        assert stale.wait(5) == -signal.SIGTERM
    finally:
        stale.kill()
        stale.wait()


def test_workers_left_in_the_group_of_a_dead_child_are_ended_at_start(tmp_path: Path) -> None:
    """The child's leader was killed alone (its workers were not): the group lives on without it."""
    pids_file = tmp_path / "pids"
    leader = subprocess.Popen([sys.executable, "-c", SLEEPER, str(pids_file)], start_new_session=True)
    _, worker = map(int, wait_file(pids_file).split())
    try:
        recorded = Recorded("actions", leader.pid, process_start_time(leader.pid), ["python", "-m", "rasa_sdk"])
        leader.kill()
        leader.wait()  # reaped: /proc/<leader> is gone, the worker still holds the group
        assert alive(worker)
        pidfile = PidFile(tmp_path / "run" / "children.json")
        pidfile.write([recorded])
        pidfile.clear_stale(grace=0.5)
        assert wait_gone([worker], timeout=5) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_a_recycled_pid_is_left_alone(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "run" / "children.json")
    stranger = start_stranger(tmp_path)
    try:
        start_time = process_start_time(stranger.pid)
        assert start_time is not None
        # Same pid, another start time: the kernel gave the pid to someone else.
        recycled = Recorded("rasa", stranger.pid, start_time - 1, ["rasa", "run"])
        pidfile.path.parent.mkdir(parents=True)
        pidfile.path.write_text(json.dumps({"hub": None, "children": [_as_dict(recycled)]}))
        assert pidfile.clear_stale(grace=0.5) == []
        time.sleep(0.3)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_children_of_a_hub_still_running_are_left_alone(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "run" / "children.json")
    other_hub, child = start_stranger(tmp_path), start_stranger(tmp_path)
    try:
        owner = Recorded("hub", other_hub.pid, process_start_time(other_hub.pid), [])
        theirs = Recorded("rasa", child.pid, process_start_time(child.pid), ["rasa", "run"])
        pidfile.path.parent.mkdir(parents=True)
        pidfile.path.write_text(json.dumps({"hub": _as_dict(owner), "children": [_as_dict(theirs)]}))
        assert pidfile.clear_stale(grace=0.5) == []
        assert child.poll() is None
    finally:
        for process in (other_hub, child):
            process.kill()
            process.wait()


def _as_dict(record: Recorded) -> dict[str, Any]:
    return {"name": record.name, "pid": record.pid, "start_time": record.start_time, "argv": record.argv}


async def serve_stranger(status: int, seen: list[str]) -> tuple[int, web.AppRunner]:
    """A server on a fresh port: one that refuses the hub's token (401), as
    an orphaned Rasa does, or one started without --auth-token (200 to anyone)."""

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path)
        if status == 200:
            return web.json_response({"model_file": "an-older-model.tar.gz"})
        return web.json_response({"status": "failure", "reason": "NotAuthenticated"}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return port, runner


@pytest_asyncio.fixture(params=[401, 200], ids=["refuses-the-token", "takes-any-token"])
async def foreign_rasa(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, list[str]]]:
    """A server on the Rasa port: one that refuses the hub's token, as an
    orphaned Rasa does, or one started without --auth-token (answers anyone)."""
    seen: list[str] = []
    port, runner = await serve_stranger(request.param, seen)
    try:
        yield port, seen
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_foreign_rasa_on_the_port_is_reported_not_used(
    tmp_path: Path, foreign_rasa: tuple[int, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    from hub.bot.setup import children_pidfile
    from hub.keys import BOT_PROCESSES
    from hub.storage.migrate import upgrade

    port, seen = foreign_rasa

    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = make_settings(
        url,
        tmp_path,
        bot="rasa",
        rasa_port=port,
        action_port=free_port(),
        rasa_token="the-token-an-orphan-was-started-with",
    )
    # An earlier hub, killed, left a child behind: it is ended at start.
    stale = start_stranger(tmp_path)
    pidfile = children_pidfile(settings)
    pidfile.path.parent.mkdir(parents=True)
    dead_hub = {"name": "hub", "pid": 2**22 + 1, "start_time": 1, "argv": []}
    orphan = Recorded("rasa", stale.pid, process_start_time(stale.pid), ["rasa", "run"])
    pidfile.path.write_text(json.dumps({"hub": dead_hub, "children": [_as_dict(orphan)]}))
    caplog.set_level(logging.INFO)
    hub = await start_hub(settings)
    try:
        assert await asyncio.to_thread(stale.wait, 10) is not None

        async def bot_check() -> dict[str, Any] | None:
            body = await (await hub.client.get("/readyz")).json()
            check = body["checks"].get("bot", {})
            return body if "another process holds its port" in check.get("error", "") else None

        ready = await wait_for(bot_check, timeout=15)
        assert ready["status"] == "degraded" and "bot" in ready["degraded"]
        assert f"port {port} is already in use" in ready["checks"]["bot"]["error"]
        assert ready["checks"]["bot"]["ok"] is False
        logged = caplog.text
        assert "another process holds its port" in logged and "not using it" in logged
        # Only ever asked who it is: no customer text, no warm-up parse.
        assert set(seen) == {"/status"}
        assert f"not started: port {port} is already in use by another process" in logged
        [actions, rasa] = hub.app[BOT_PROCESSES]
        assert rasa.process is None  # never started on a taken port, so never crash-looped

        # The pidfile now holds this hub and the child it did start.
        def recorded_children() -> list[int] | None:
            recorded = json.loads(pidfile.path.read_text())
            assert recorded["hub"]["pid"] == os.getpid()
            return [c["pid"] for c in recorded["children"]] or None

        assert await wait_for(recorded_children, timeout=10) == [actions.process.pid]
    finally:
        await hub.client.close()
        stale.kill()
        stale.wait()
    assert json.loads(pidfile.path.read_text())["children"] == []


# The hub's own "Rasa" for the test below: a stand-in installed as
# <venv>/bin/rasa, so that the hub starts it through its real launcher,
# supervisor and tether. Its HTTP API answers only the token it was started
# with, as `rasa run --auth-token` does (the REST channel's webhook takes no
# token, in Rasa as here), and it writes each request's path to a file.
STAND_IN_RASA = """#!{python}
import json, os, sys, time
from aiohttp import web

port = int(sys.argv[sys.argv.index("--port") + 1])
token = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--auth-token="))

async def handle(request):
    if request.path != "/webhooks/rest/webhook" and request.query.get("token") != token:
        return web.json_response({{"status": "failure"}}, status=401)
    with open({calls!r}, "a") as calls:
        calls.write(request.path + "\\n")
    if request.path == "/webhooks/rest/webhook":
        sender = (await request.json())["sender"]
        return web.json_response([{{"recipient_id": sender, "text": "Answer from the hub's own Rasa"}}])
    if request.path == "/model/parse":
        return web.json_response({{"intent": {{"name": "greet", "confidence": 1.0}}}})
    return web.json_response({{"model_file": "current.tar.gz"}})

app = web.Application()
app.router.add_route("*", "/{{tail:.*}}", handle)
while not os.path.exists({go!r}):  # a Rasa still loading its model: nothing listens yet
    time.sleep(0.05)
web.run_app(app, host="127.0.0.1", port=port, print=None)
"""


def stand_in_rasa(tmp_path: Path, *, listening: bool = True) -> tuple[Path, Path, Path]:
    """A venv whose ``rasa`` answers as ``rasa run`` does and writes each path it is asked
    (with the hub's token) to ``calls``; it listens once ``go`` exists. Returns (calls, venv, go)."""
    calls = tmp_path / "own-rasa-calls.txt"
    go = tmp_path / "own-rasa-go"
    if listening:
        go.touch()
    venv = tmp_path / "stand-in-venv"
    (venv / "bin").mkdir(parents=True)
    rasa = venv / "bin" / "rasa"
    rasa.write_text(STAND_IN_RASA.format(python=sys.executable, calls=str(calls), go=str(go)))
    rasa.chmod(0o755)
    return calls, venv, go


async def stand_in_hub(tmp_path: Path, venv: Path, rasa_port: int) -> Any:
    """A hub whose Rasa is the stand-in of ``venv`` on ``rasa_port``, waited for 1 s at most."""
    from hub.storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = make_settings(
        url,
        tmp_path,
        bot="rasa",
        rasa_port=rasa_port,
        action_port=free_port(),
        rasa_venv=venv,
        rasa_ready_wait=1.0,  # past it, with nothing of ours answering: fallback answers
        rasa_timeout=2.0,
    )
    return await start_hub(settings, knowledge_base=None)


async def bot_check(hub: Any) -> dict[str, Any]:
    return dict((await (await hub.client.get("/readyz")).json())["checks"]["bot"])


async def bot_answers(hub: Any, sender: str, text: str, *, timeout: float) -> list[str]:
    """A customer's message in; the bot's replies once there is one."""
    received = await hub.inbound({"from": sender, "text": text, "id": f"{sender}-1"})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")

    async def answers() -> list[str]:
        page = await hub.api(
            "GET", f"/api/v1/conversations/{message['conversation_id']}/timeline", params={"limit": 50}
        )
        return [m["body"] for m in page["items"] if m["author_kind"] == "bot"]

    return list(await wait_for(answers, timeout=timeout))


async def own_rasa_is_warmed_then_answers(hub: Any, calls: Path) -> None:
    """Healthy once the hub's own Rasa answers and was warmed as at a normal start: one parse,
    before any customer's message, which its Rasa then answers."""
    assert await wait_for(lambda: _mode_is(lambda: bot_check(hub), None), timeout=60) == {"ok": True}
    body = await (await hub.client.get("/readyz")).json()
    assert body["status"] == "ready", body
    assert calls.read_text().splitlines().count("/model/parse") == 1
    assert await bot_answers(hub, "later", "And now?", timeout=15) == ["Answer from the hub's own Rasa"]
    own = calls.read_text().splitlines()
    assert own.index("/model/parse") < own.index("/webhooks/rest/webhook")


@pytest.mark.parametrize("status", [401, 200], ids=["refuses-the-token", "takes-any-token"])
@pytest.mark.asyncio
async def test_when_the_foreign_rasa_leaves_the_hubs_own_starts_warms_up_and_answers(
    tmp_path: Path, status: int
) -> None:
    seen: list[str] = []
    port, stranger = await serve_stranger(status, seen)
    calls, venv, _ = stand_in_rasa(tmp_path)
    hub = await stand_in_hub(tmp_path, venv, port)
    try:
        await wait_for(lambda: _mode_is(lambda: bot_check(hub), "foreign"), timeout=15)
        # Past the ready wait, a customer still gets an answer (the fallback),
        # and the stranger is never asked anything but who it is.
        assert await bot_answers(hub, "early", "Is anyone there?", timeout=15)
        assert set(seen) == {"/status"}

        await stranger.cleanup()  # the stranger goes; the hub's own Rasa takes the port
        await own_rasa_is_warmed_then_answers(hub, calls)
    finally:
        await hub.client.close()
        await stranger.cleanup()


@pytest.mark.asyncio
async def test_a_rasa_not_up_by_its_ready_wait_reads_unhealthy_until_it_answers_and_is_warmed(
    tmp_path: Path,
) -> None:
    calls, venv, go = stand_in_rasa(tmp_path, listening=False)
    hub = await stand_in_hub(tmp_path, venv, free_port())
    try:
        # Past the ready wait with nothing listening: not "ok" (it was, until a customer's
        # message failed), and why; customers get the fallback answer meanwhile.
        found = await wait_for(lambda: _mode_is(lambda: bot_check(hub), "fallback"), timeout=30)
        assert found["ok"] is False and "is not answering" in found["error"] and "HUB_RASA_READY_WAIT" in found["error"]
        body = await (await hub.client.get("/readyz")).json()
        assert body["status"] != "ready", body
        assert await bot_answers(hub, "early", "Is anyone there?", timeout=30)
        assert not calls.exists()

        go.touch()  # Rasa has loaded and listens: no customer's message needed to read healthy
        await own_rasa_is_warmed_then_answers(hub, calls)
    finally:
        await hub.client.close()


async def _mode_is(check: Any, mode: str | None) -> dict[str, Any] | None:
    """The bot's /readyz check once its mode is ``mode`` (None: healthy)."""
    found = await check()
    return found if found.get("mode") == mode and (mode is not None or found.get("ok")) else None


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.rasa
def test_sigkilled_hub_serve_takes_real_rasa_and_action_server_along(tmp_path: Path) -> None:
    from hub.bot.supervisor import port_in_use
    from hub.config import Settings

    defaults = Settings(_env_file=None)
    model = ROOT / defaults.rasa_model
    if not (ROOT / defaults.rasa_venv / "bin" / "rasa").exists() or not model.exists():
        if os.environ.get("CI"):
            pytest.fail("no .venv-rasa or trained model on CI")
        pytest.skip("needs .venv-rasa and a trained model (make rasa-train)")
    rasa_port, action_port = free_port(), free_port()
    env = {
        **os.environ,
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "HUB_PORT": str(free_port()),
        "HUB_RASA_PORT": str(rasa_port),
        "HUB_ACTION_PORT": str(action_port),
        "HUB_BOT": "rasa",
        "HUB_KB_ENABLED": "false",
        "HUB_CHANNELS": "fake",
        "HUB_FAKE_SECRET": "x",
    }
    log = (tmp_path / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 90
        while not (port_in_use(rasa_port) and port_in_use(action_port)):
            assert hub.poll() is None and time.monotonic() < deadline, (tmp_path / "hub.log").read_text()[-3000:]
            time.sleep(0.25)
        tree = descendants(hub.pid)  # tethers, rasa, the action server and its Sanic workers
        assert len(tree) >= 4
        hub.kill()
        hub.wait()
        # Rasa gets SIGTERM and shuts down in a few seconds; SIGKILL after 10.
        assert wait_gone(sorted(tree), timeout=15) == []
        assert not port_in_use(rasa_port) and not port_in_use(action_port)
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        log.close()
