"""``bot/rasa/endpoints.redis.yml``, read by Rasa's own code: two Rasa
processes behind the hub (docker-compose.yml) share one conversation's
tracker and lock through Redis, so a conversation served by both never forks.

Each side runs in its own Rasa interpreter process (``.venv-rasa``), against
the machine's Redis, on a database of its own that the test empties."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from bot.rasa import model
from tests.bot.conftest import _require_rasa_venv

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ROOT / "bot" / "rasa" / "endpoints.redis.yml"
TRACKER_DB, LOCK_DB = "11", "12"

SCRIPT = r"""
import asyncio, json, sys
from rasa.core.utils import AvailableEndpoints
from rasa.core.tracker_store import TrackerStore
from rasa.core.lock_store import LockStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

endpoints = AvailableEndpoints.read_endpoints(sys.argv[1])
side, sender = sys.argv[2], sys.argv[3]
store = TrackerStore.create(endpoints.tracker_store, Domain.empty())
locks = LockStore.create(endpoints.lock_store)

async def main():
    out = {"tracker_store": type(store).__name__, "lock_store": type(locks).__name__}
    if side == "a":
        tracker = DialogueStateTracker(sender, slots=[])
        tracker.update(UserUttered("my card was stolen"))
        await store.save(tracker)
        locks.issue_ticket(sender, lock_lifetime=60)
    else:
        tracker = await store.retrieve(sender)
        out["texts"] = [e.text for e in tracker.events if isinstance(e, UserUttered)] if tracker else None
        lock = locks.get_lock(sender)
        out["tickets"] = len(lock.tickets) if lock else 0
    print(json.dumps(out))

asyncio.run(main())
"""


def _side(side: str, sender: str) -> dict:
    env = {
        **os.environ,
        "RASA_TELEMETRY_ENABLED": "false",
        "ACTION_ENDPOINT_URL": "http://127.0.0.1:5055/webhook",
        "RASA_REDIS_HOST": "127.0.0.1",
        "RASA_REDIS_PORT": "6379",
        "RASA_REDIS_TRACKER_DB": TRACKER_DB,
        "RASA_REDIS_LOCK_DB": LOCK_DB,
    }
    done = subprocess.run(
        [str(model.rasa_executable().with_name("python")), "-c", SCRIPT, str(ENDPOINTS), side, sender],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_rasa_processes_share_trackers_and_locks_through_redis() -> None:
    _require_rasa_venv()
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(port=6379, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    sender = f"conv-{uuid.uuid4().hex[:8]}"
    try:
        wrote = _side("a", sender)
        assert wrote == {"tracker_store": "RedisTrackerStore", "lock_store": "RedisLockStore"}
        read = _side("b", sender)
        assert read["texts"] == ["my card was stolen"] and read["tickets"] == 1
    finally:
        for db in (TRACKER_DB, LOCK_DB):
            redis.Redis(port=6379, db=int(db)).flushdb()
