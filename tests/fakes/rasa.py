"""A loopback stand-in for Rasa's REST channel and tracker API, for failure
modes that a real Rasa cannot be made to show on cue (slow, down, paused).
The real Rasa server is tested in tests/bot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeRasa:
    delay: float = 0.0
    down: bool = False
    paused: set[str] = field(default_factory=set)
    received: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    # Senders whose tracker was replaced by no events (an erasure), and what
    # each tracker holds: the texts sent since.
    forgotten: list[str] = field(default_factory=list)
    trackers: dict[str, list[str]] = field(default_factory=dict)
    # Every request, in order: "parse" or "webhook".
    calls: list[str] = field(default_factory=list)
    # While set and not yet open, a webhook call waits before Rasa reads it
    # (``held`` counts those waiting): a message on its way as something else happens.
    gate: asyncio.Event | None = None
    held: int = 0
    runner: web.AppRunner | None = None
    url: str = ""

    def answer(self, text: str) -> list[dict[str, Any]]:
        lowered = text.lower()
        if "person" in lowered or "human" in lowered:
            return [
                {"text": "I'm passing you to our team."},
                {"custom": {"handoff": True, "priority": "normal", "reason": "request_human"}},
            ]
        if "down" in lowered or "hacked" in lowered:
            return [
                {"text": "I'm passing you to our team right away."},
                {"custom": {"handoff": True, "priority": "urgent", "reason": "urgent_issue"}},
            ]
        return [
            {"text": f"Answer to: {text}"},
            {
                "custom": {
                    "kb_hits": [{"article_id": "refunds", "url": "/help/articles/refunds"}],
                    "confidence": 0.8,
                    "decision": {"action": "answer", "article_id": "refunds"},
                }
            },
        ]

    async def webhook(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        await asyncio.sleep(self.delay)
        if self.gate is not None:
            self.held += 1
            await self.gate.wait()
        body = await request.json()
        self.received.append(body)
        self.calls.append("webhook")
        sender = body["sender"]
        self.trackers.setdefault(sender, []).append(body["message"])  # Rasa keeps every user message
        if sender in self.paused:
            return web.json_response([])
        replies = self.answer(body["message"])
        if any(r.get("custom", {}).get("handoff") for r in replies):
            self.paused.add(sender)
        return web.json_response([{"recipient_id": sender, **r} for r in replies])

    async def events(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        events = await request.json()
        sender = request.match_info["sender"]
        if any(e.get("event") == "resume" for e in events):
            self.paused.discard(sender)
            self.resumed.append(sender)
        return web.json_response({"sender_id": sender})

    async def replace_events(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        sender = request.match_info["sender"]
        events = await request.json()
        self.trackers[sender] = [e["text"] for e in events if e.get("event") == "user"]
        if not events:
            self.forgotten.append(sender)
        return web.json_response({"sender_id": sender, "events": events})

    async def parse(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        self.calls.append("parse")
        text = (await request.json())["text"]
        return web.json_response({"text": text, "intent": {"name": "greet", "confidence": 0.9}, "entities": []})

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=503) if self.down else web.json_response({"model_file": "fake"})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", self.webhook)
        app.router.add_post("/conversations/{sender}/tracker/events", self.events)
        app.router.add_put("/conversations/{sender}/tracker/events", self.replace_events)
        app.router.add_get("/status", self.status)
        app.router.add_post("/model/parse", self.parse)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
