"""Fixtures for the bot: a fake knowledge-base search API, and the real Rasa stack.

``fake_kb`` / ``fake_kb_session``
    A loopback stand-in for the hub's ``GET /api/v1/kb/search`` on
    127.0.0.1:0 (aiohttp). It scores a query by keywords: each keyword of an
    article found in the query adds 0.4 to the confidence (at most 0.95), so
    "forgot password" is confident (0.8) and "the password" alone is a near
    miss (0.4). It records every request (query and Authorization header); set ``fail_status`` to make it answer
    with an HTTP error.

``rasa_stack`` (session)
    Trains the model if the training data changed (``bot.rasa.model``), then
    starts the REAL ``rasa run --enable-api --auth-token`` and the REAL action
    server (``python -m rasa_sdk --actions bot.actions``), each on a free
    loopback port, the action server pointed at ``fake_kb_session``. Both are
    stopped (process groups killed) at the end of the session. Without
    ``.venv-rasa`` the Rasa tests are skipped, except on CI (``CI`` set),
    where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from aiohttp import web

from bot.rasa import kb_nlu, launch, model
from knowledge_base.service import MAX_QUERY_CHARS

SEARCH_PATH = "/api/v1/kb/search"
TOPICS_PATH = "/api/v1/kb/topics"
PUBLIC_URL = "https://help.example.test"
SEND_TIMEOUT = 120.0  # a message to the real Rasa; seconds at most when the machine is quiet

ARTICLES: list[dict[str, Any]] = [
    {
        "article_id": "reset-your-password",
        "title": "Reset your password",
        "heading": "Steps",
        "anchor": "steps",
        "text": (
            "Choose Forgot password on the sign-in page and enter your email address. "
            "We send you a link that works for 30 minutes. Open it on the same device and choose a new "
            "password. If the email has not arrived after five minutes, look in your spam folder."
        ),
        "url": "/help/articles/reset-your-password#steps",
        "category": "Account",
        "keywords": ("password", "forgot", "reset", "log in", "sign in"),
    },
    {
        "article_id": "refunds",
        "title": "Refunds",
        "heading": "How long a refund takes",
        "anchor": "how-long-a-refund-takes",
        "text": (
            "We refund to the original payment method within 3 working days of receiving your return. "
            "Your bank may take up to 5 more days to show it."
        ),
        "url": "/help/articles/refunds#how-long-a-refund-takes",
        "category": "Billing",
        "keywords": ("refund", "money back", "returned", "return"),
    },
    {
        "article_id": "shipping-options-and-delivery-times",
        "title": "Shipping options and delivery times",
        "heading": "Delivery times",
        "anchor": "delivery-times",
        "text": (
            "Standard delivery takes 3-5 working days and express delivery the next working day "
            "when you order before 2 pm."
        ),
        "url": "/help/articles/shipping-options-and-delivery-times#delivery-times",
        "category": "Delivery",
        "keywords": ("delivery", "shipping", "arrive", "express", "deliver"),
    },
]


@dataclass
class FakeKnowledgeBase:
    """The hub's KB search API on 127.0.0.1:0, answering from ARTICLES by keywords."""

    requests: list[dict[str, str]] = field(default_factory=list)
    topic_requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    fail_status: int | None = None
    malformed: bool = False  # answer JSON without a confidence (it still echoes the query)
    port: int = 0
    _runner: web.AppRunner | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def search(self, query: str, k: int) -> dict[str, Any]:
        text = query.lower()
        scored = []
        for article in ARTICLES:
            matches = sum(1 for word in article["keywords"] if re.search(rf"\b{re.escape(word)}", text))
            scored.append((min(0.95, 0.4 * matches), article))
        scored.sort(key=lambda pair: pair[0], reverse=True)
        hits = [
            {key: value for key, value in article.items() if key not in ("keywords", "category")} | {"score": score}
            for score, article in scored[:k]
        ]
        confidence = scored[0][0] if scored else 0.0
        return {"query": query, "confidence": confidence, "hits": hits if confidence > 0 else hits[:2]}

    async def _handle_search(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        self.authorizations.append(request.headers.get("Authorization"))
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="fake failure")
        if self.malformed:
            return web.json_response({"query": request.query.get("q", ""), "hits": []})
        if len(" ".join(request.query.get("q", "").split())) > MAX_QUERY_CHARS:  # as the hub's API
            return web.json_response({"error": f"the search query is longer than {MAX_QUERY_CHARS}"}, status=400)
        return web.json_response(self.search(request.query.get("q", ""), int(request.query.get("k", "3"))))

    async def _handle_topics(self, request: web.Request) -> web.Response:
        self.topic_requests.append(request.query.get("collection", ""))
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="fake failure")
        topics = [{"name": a["category"], "articles": 1, "titles": [a["title"]]} for a in ARTICLES]
        return web.json_response({"collection": request.query.get("collection"), "topics": topics})

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(SEARCH_PATH, self._handle_search)
        app.router.add_get(TOPICS_PATH, self._handle_topics)
        return app

    async def start(self) -> None:
        """Serve in the running event loop."""
        self._runner = web.AppRunner(self._app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> None:
        """Serve from a thread with its own loop (for child processes calling in)."""
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-kb", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake KB did not start")

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None


@pytest_asyncio.fixture
async def fake_kb(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeKnowledgeBase]:
    """A fresh fake KB in the test's loop; the action settings point at it."""
    kb = FakeKnowledgeBase()
    await kb.start()
    monkeypatch.setenv("HUB_URL", kb.url)
    monkeypatch.setenv("HUB_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("HUB_BOT_CONFIDENCE_THRESHOLD", "0.5")
    monkeypatch.delenv("HUB_BOT_API_TOKEN", raising=False)
    monkeypatch.delenv("HUB_BOT_URGENT_ESCALATION", raising=False)
    try:
        yield kb
    finally:
        await kb.stop()


@pytest.fixture(scope="session")
def fake_kb_session() -> Iterator[FakeKnowledgeBase]:
    kb = FakeKnowledgeBase()
    kb.start_in_thread()
    try:
        yield kb
    finally:
        kb.stop_thread()


def _require_rasa_venv() -> None:
    rasa = model.rasa_executable()
    if rasa.exists():
        return
    message = f"{rasa} is missing: create it with `make .venv-rasa/.installed` (mk/rasa.mk)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rasa_model(tmp_path_factory: pytest.TempPathFactory) -> model.ModelInfo:
    """The model `make rasa-model` trains on a fresh clone: the general data plus the sample KB's examples."""
    _require_rasa_venv()
    extra = kb_nlu.sample_training_file(tmp_path_factory.mktemp("kb-nlu"))
    return model.ensure_model(extra_data=[extra])


@dataclass
class RasaStack:
    """The running Rasa server and action server, and how to talk to them."""

    rasa_url: str
    token: str
    action_url: str
    kb: FakeKnowledgeBase

    def send(self, sender: str, text: str, metadata: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One customer message through the REST channel; the bot's replies."""
        payload: dict[str, Any] = {"sender": sender, "message": text}
        if metadata is not None:
            payload["metadata"] = metadata
        # Not a timing test: a loaded CI machine once took over 30 s (post_json's default).
        answer = launch.post_json(f"{self.rasa_url}/webhooks/rest/webhook", payload, timeout=SEND_TIMEOUT)
        assert isinstance(answer, list), answer
        return answer

    def resume(self, sender: str) -> None:
        """What the hub does when its agent hands the conversation back to the bot."""
        events = [{"event": "resume"}, {"event": "action", "name": "action_listen"}]
        launch.post_json(f"{self.rasa_url}/conversations/{sender}/tracker/events?token={self.token}", events)

    def tracker(self, sender: str) -> dict[str, Any]:
        url = f"{self.rasa_url}/conversations/{sender}/tracker?token={self.token}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="session")
def rasa_stack(
    rasa_model: model.ModelInfo, fake_kb_session: FakeKnowledgeBase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RasaStack]:
    logs: Path = tmp_path_factory.mktemp("rasa-stack")
    # Leading "-" on purpose: token_urlsafe() starts with one 1 time in 64, and
    # `rasa run --auth-token -x...` once failed with "expected one argument".
    token = "-" + secrets.token_urlsafe(16)
    action_port = launch.free_port()
    actions = launch.action_server(
        action_port,
        log_path=logs / "actions.log",
        env={
            "HUB_URL": fake_kb_session.url,
            "HUB_PUBLIC_URL": PUBLIC_URL,
            "HUB_BOT_CONFIDENCE_THRESHOLD": "0.5",
        },
    )
    rasa_port = launch.free_port()
    rasa = launch.rasa_server(
        rasa_model.path,
        rasa_port,
        log_path=logs / "rasa.log",
        auth_token=token,
        action_endpoint_url=f"http://127.0.0.1:{action_port}/webhook",
    )
    children: list[tuple[launch.ChildProcess, int]] = []
    try:
        # Both start at once; Rasa's start-up (~15 s) dominates.
        for child in (actions, rasa):
            child.start()
            assert child.process is not None
            children.append((child, child.process.pid))
        for child, timeout in ((actions, launch.ACTIONS_READY_TIMEOUT), (rasa, launch.RASA_READY_TIMEOUT)):
            child.wait_ready(timeout)
        # As the hub does at start (``RasaClient.warm_up``): the model's graphs are built by
        # this parse, not by the first test's message (seconds; more on a loaded machine).
        launch.post_json(f"http://127.0.0.1:{rasa_port}/model/parse?token={quote(token)}", {"text": "hello"},
                         timeout=SEND_TIMEOUT)  # fmt: skip
        yield RasaStack(
            rasa_url=f"http://127.0.0.1:{rasa_port}",
            token=token,
            action_url=f"http://127.0.0.1:{action_port}",
            kb=fake_kb_session,
        )
    finally:
        for child, _ in reversed(children):
            child.stop()
        leaked = [f"{child.name} (process group {pid})" for child, pid in children if child.group_alive(pid)]
        assert not leaked, f"still running after stop: {leaked}"


async def start_rasa_hub(rasa_model: model.ModelInfo, tmp: Path, **overrides: Any) -> Any:
    """The whole hub with the REAL Rasa and action server as its supervised children, on the sample KB.

    Returns a ``tests.conftest.Hub`` once the bot bridge answers customers.
    """
    from hub.keys import BOT_BRIDGE
    from hub.storage.migrate import upgrade
    from knowledge_base import SAMPLE_DIR, KnowledgeBase
    from tests.conftest import make_settings, start_hub, wait_for

    url = f"sqlite+aiosqlite:///{tmp / 'hub.db'}"
    await asyncio.to_thread(upgrade, url)
    port = launch.free_port()
    values: dict[str, Any] = {
        "bot": "rasa", "port": port, "public_url": f"http://127.0.0.1:{port}",
        "rasa_port": launch.free_port(), "action_port": launch.free_port(), "rasa_model": rasa_model.path,
        "rasa_timeout": 5.0, "rasa_ready_wait": 180.0, "kb_enabled": True, "kb_seed_dir": SAMPLE_DIR,
        "kb_search_rate_limit": "10000/minute",
    }  # fmt: skip
    values.update(overrides)
    settings = make_settings(url, tmp, **values)
    hub = await start_hub(settings, knowledge_base=KnowledgeBase(data_dir=tmp / "kb"), server_port=port)
    await wait_for(lambda: hub.app[BOT_BRIDGE].running, timeout=200, interval=0.5)
    return hub
