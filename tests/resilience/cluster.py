"""Real processes for the resilience suite (no tests here): a Redis server
of our own on a loopback port, and ``hub serve`` instances, each started,
SIGKILLed and started again from outside, as an operator's supervisor would.

Never the machine's Redis on 6379: ours is killed and restarted mid-run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _popen(command: list[str], log: Path, **options: Any) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **options)


async def _stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, grace)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 10)


async def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(process.wait, 10)


@dataclass
class RedisServer:
    """redis-server on ``port``, in memory only; ``restart`` SIGKILLs it and starts a fresh one on the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.workdir)]
        self.process = _popen(command, self.workdir / "redis.log")
        await wait_for(self._answers, timeout=20)
        return self

    async def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (self.workdir / "redis.log").read_text()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        finally:
            writer.close()

    async def restart(self) -> None:
        """Every connection drops, every subscription and key is gone (nothing persisted)."""
        assert self.process is not None
        await _kill(self.process)
        self.restarts += 1
        await self.start()

    async def stop(self) -> None:
        if self.process is not None:
            await _stop(self.process)


@dataclass
class HubProcess:
    """One ``hub serve`` on a loopback port; its log goes to ``log``."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)  # its inbound e-mail server (HUB_EMAIL_SMTP_PORT)
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> HubProcess:
        env = {**self.env, "HUB_PORT": str(self.port), "HUB_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)}
        env.update(HUB_EMAIL_SMTP_HOST="127.0.0.1", HUB_EMAIL_SMTP_PORT=str(self.smtp_port))
        self.process = _popen([sys.executable, "-m", "hub", "serve"], self.log, cwd=ROOT, env=env)
        await wait_for(self._ready, timeout=90, interval=0.1)
        return self

    async def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.tail()
        try:
            timeout = aiohttp.ClientTimeout(total=2)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(self.url + "/readyz") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def sigkill(self) -> None:
        assert self.process is not None
        await _kill(self.process)
        assert self.process.returncode == -signal.SIGKILL, self.tail()
        self.kills += 1

    async def stop(self) -> None:
        if self.process is not None:
            await _stop(self.process)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def errors(self) -> list[str]:
        """The ERROR lines the instance logged (the run's temporary folder may be gone when one reads this)."""
        if not self.log.exists():
            return []
        return [line[:300] for line in self.log.read_text(errors="replace").splitlines() if " ERROR " in line]


def hub_env(**settings: str) -> dict[str, str]:
    """The parent's environment without any HUB_ setting of the developer's, plus ``settings``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return {**base, **settings}
