"""Start ``rasa run`` and the action server as child processes, and stop them.

For the Rasa test fixture (tests/bot/conftest.py) and bench/bot_eval.py; in
production the two are long-running services started by the operator (see
``make rasa-run`` and ``make rasa-actions`` in mk/rasa.mk). Each child gets a
session of its own, so ``stop`` ends it and every process it started (Sanic
forks workers), first with SIGTERM, then SIGKILL. Readiness is polled over
HTTP: Rasa's ``/status`` (200 once the model is loaded), the action server's
``/health``.

Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bot.rasa.model import PROJECT_DIR, REPO_ROOT, rasa_environment, rasa_executable

LOOPBACK = "127.0.0.1"
RASA_READY_TIMEOUT = 120.0
ACTIONS_READY_TIMEOUT = 60.0


class ChildFailed(RuntimeError):
    """A child process exited or never became ready; the message ends with its log."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ChildProcess:
    """One server started in its own session, logging to ``log_path``."""

    name: str
    command: list[str]
    ready_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = REPO_ROOT
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        """Poll ``ready_url`` until it answers 200; raise ChildFailed on exit or timeout."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ChildFailed(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise ChildFailed(f"{self.name} not ready after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait(timeout=grace)
        if process is not None:
            # The leader may be gone while workers it forked linger.
            self._signal_group(process, signal.SIGKILL)
            deadline = time.monotonic() + grace
            while self.group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rasa_server(
    model: Path,
    port: int,
    *,
    log_path: Path,
    auth_token: str | None = None,
    action_endpoint_url: str | None = None,
    venv: Path | None = None,
) -> ChildProcess:
    """``rasa run --enable-api`` on 127.0.0.1:``port`` with the REST channel.

    With ``action_endpoint_url`` it reads bot/rasa/endpoints.yml (which needs
    ``ACTION_ENDPOINT_URL``); without, custom actions are unavailable (enough
    for ``/model/parse``).
    """
    command = [
        str(rasa_executable(venv)), "run",
        "--enable-api",
        "--model", str(model),
        "--interface", LOOPBACK,
        "--port", str(port),
        "--credentials", str(PROJECT_DIR / "credentials.yml"),
    ]  # fmt: skip
    extra: dict[str, str] = {}
    if "PYTHONWARNINGS" not in os.environ:
        # Rasa 3.6's dependencies print ~20 DeprecationWarnings at start-up
        # (pkg_resources, distutils, pyparsing, jax): noise in the hub's log.
        extra["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    if action_endpoint_url:
        command += ["--endpoints", str(PROJECT_DIR / "endpoints.yml")]
        extra["ACTION_ENDPOINT_URL"] = action_endpoint_url
    ready_url = f"http://{LOOPBACK}:{port}/status"
    if auth_token:
        # One argument: a URL-safe token may start with "-", which argparse
        # would take for an option ("expected one argument"; seen in tests).
        command.append(f"--auth-token={auth_token}")
        ready_url += f"?token={auth_token}"
    return ChildProcess(
        name="rasa",
        command=command,
        ready_url=ready_url,
        log_path=log_path,
        env=rasa_environment(venv, **extra),
        # Not PROJECT_DIR: Rasa reads ./endpoints.yml even without --endpoints.
        cwd=REPO_ROOT,
    )


def action_server(
    port: int, *, log_path: Path, env: dict[str, str] | None = None, python: str = sys.executable
) -> ChildProcess:
    """``python -m rasa_sdk --actions bot.actions`` on 127.0.0.1:``port``.

    ``python`` must have rasa_sdk (the hub's venv). ``env`` adds to the current
    environment (HUB_URL, HUB_PUBLIC_URL, HUB_BOT_CONFIDENCE_THRESHOLD...).
    """
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["SANIC_HOST"] = LOOPBACK
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
    return ChildProcess(
        name="action server",
        command=[python, "-m", "rasa_sdk", "--actions", "bot.actions", "--port", str(port)],
        ready_url=f"http://{LOOPBACK}:{port}/health",
        log_path=log_path,
        env=child_env,
    )


def post_json(url: str, payload: object, timeout: float = 30.0) -> object:
    """POST JSON, return the decoded answer (a small helper for the bench and tests)."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")
