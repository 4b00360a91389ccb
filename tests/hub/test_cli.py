"""The `hub` command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.__main__ import main
from tests.conftest import free_port


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    return url


def test_help_reads_well() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "db", "users", "tokens", "contacts"):
        assert command in result.output


def test_users_tokens_export_erase(cli_env: str) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(main, ["users", "create", "--name", "Ada", "--email", "ada@example.com", "--role", "admin"])
    assert created.exit_code == 0, created.output
    assert "shub_" in created.output
    again = runner.invoke(main, ["users", "create", "--name", "Ada", "--email", "ADA@example.com"])
    assert again.exit_code == 1 and "already exists" in again.output
    token = runner.invoke(main, ["tokens", "create", "ada@example.com", "--name", "ci"])
    assert token.exit_code == 0 and token.output.startswith("shub_")
    assert runner.invoke(main, ["users", "list"]).output.count("ada@example.com") == 1

    missing = runner.invoke(main, ["contacts", "export", "42"])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    from datetime import timedelta

    from hub.conversations.ingest import ingest
    from hub.messages import InboundMessage
    from hub.storage import open_database

    async def seed() -> int:
        db = open_database(cli_env)
        try:
            done = await db.write(
                ingest,
                InboundMessage(channel="fake", sender="cli-person", text="hello"),
                identity_kind="fake",
                reopen_window=timedelta(hours=1),
            )
            return done.message.contact_id
        finally:
            await db.close()

    contact_id = asyncio.run(seed())
    exported = runner.invoke(main, ["contacts", "export", str(contact_id)])
    assert exported.exit_code == 0
    assert json.loads(exported.output)["messages"][0]["body"] == "hello"
    erased = runner.invoke(main, ["contacts", "erase", str(contact_id), "--yes"])
    assert erased.exit_code == 0 and "1 messages" in erased.output
    assert runner.invoke(main, ["contacts", "export", str(contact_id)]).exit_code == 1


def test_bootstrap_creates_one_admin_once(cli_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    token_file = tmp_path / "admin-token"
    first = runner.invoke(main, ["users", "bootstrap", "--token-file", str(token_file)])
    assert first.exit_code == 0 and token_file.read_text().startswith("shub_")
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(main, ["users", "bootstrap", "--token-file", str(token_file)])
    assert again.exit_code == 0 and "exist already" in again.output
    assert runner.invoke(main, ["users", "list"]).output.count("admin@localhost") == 1


def test_init_writes_secrets_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--env-file", str(env_file)]).exit_code == 0
    first = env_file.read_text()
    assert "HUB_CHANNELS=webchat" in first and "HUB_WEBCHAT_SECRETS=" in first
    assert runner.invoke(main, ["init", "--env-file", str(env_file)]).exit_code == 0
    assert env_file.read_text() == first
    from hub.config import Settings

    settings = Settings(_env_file=env_file)
    assert settings.channel_names == ["webchat"] and settings.webchat_secrets is not None
    assert settings.kb_seed_dir is not None and len(list(settings.kb_seed_dir.glob("*.md"))) >= 20


def test_kb_ingest_and_search_with_the_real_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    from hub.storage import open_database
    from hub.versions import current
    from knowledge_base import SAMPLE_DIR

    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ingested = runner.invoke(main, ["kb", "ingest", str(SAMPLE_DIR), "--collection", "northwind", "--json"])
    assert ingested.exit_code == 0, ingested.output
    assert len(json.loads(ingested.stdout.strip().splitlines()[-1])["added"]) >= 20

    async def version() -> int:
        db = open_database(sqlite_url)
        try:
            return await db.read(current, "kb:northwind")
        finally:
            await db.close()

    assert asyncio.run(version()) == 1  # running hubs reload their keyword index of it
    found = runner.invoke(
        main, ["kb", "search", "I forgot my password", "--collection", "northwind", "-k", "3", "--json"]
    )
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout.strip().splitlines()[-1])["hits"]
    assert len(hits) == 3 and "password" in hits[0]["article_id"]
    queries = tmp_path / "queries.txt"
    queries.write_text("how long does a refund take\nwhere is my parcel\n")
    batch = runner.invoke(main, ["kb", "search", "--queries", str(queries), "--collection", "northwind"])
    lines = [json.loads(line) for line in batch.stdout.strip().splitlines()]
    assert batch.exit_code == 0 and len(lines) == 2
    assert runner.invoke(main, ["kb", "search"]).exit_code == 2
    missing = runner.invoke(main, ["kb", "ingest", str(tmp_path / "nope")])
    assert missing.exit_code != 0


async def chat(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "hello"})
        while (await ws.receive_json(timeout=15))["type"] != "history":
            pass
        await ws.send_json({"type": "message", "client_id": "c1", "text": "hello from a socket"})
        while True:
            frame = await ws.receive_json(timeout=15)
            if frame["type"] == "message" and frame["message"]["author"] == "bot":
                return frame["message"]["text"]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_takes_a_webhook_and_a_web_chat_and_stops_cleanly(tmp_path: Path, loop: str) -> None:
    from channels.fake import sign

    port = free_port()
    env = {
        **os.environ,
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        "HUB_DATA_DIR": str(tmp_path / "data"),
        "HUB_HOST": "127.0.0.1",
        "HUB_PORT": str(port),
        "HUB_CHANNELS": "fake,webchat",
        "HUB_FAKE_SECRET": "serve-secret",
        "HUB_WEBCHAT_SECRETS": "serve-webchat-secret",
        "HUB_BOT": "echo",
        "HUB_KB_ENABLED": "false",
        "HUB_EVENT_LOOP": loop,
    }
    output = tmp_path / "serve.log"
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve"], cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "Servicehub is running" not in output.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
        assert f"(event loop: {loop})" in output.read_text()
        raw = json.dumps({"from": "serve-visitor", "text": "hello over a real socket", "id": "serve-1"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/channels/fake/webhook",
            data=raw,
            headers={**sign("serve-secret", raw), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read())["received"][0]["duplicate"] is False
        # A web chat visitor over a WebSocket, answered by the echo bot.
        assert asyncio.run(chat(f"ws://127.0.0.1:{port}/channels/webchat/ws")) == "Echo: hello from a socket"
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
