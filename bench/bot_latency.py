"""Latency from an inbound customer message to the stored bot reply, through
the real Rasa server and the real action server (which searches the hub's
knowledge base), with N conversations in flight at once.

    .venv/bin/python bench/bot_latency.py [--quick] [--conversations 20] [--messages 10]

The hub runs in this process with HUB_BOT=rasa (it starts Rasa and the action
server as child processes, as `make run` does) and the sample knowledge base.
Each conversation sends its messages one after another, waiting for the
reply and pausing so that each customer writes once per --pace seconds (5 s:
reading the answer and typing the next message); then the same again with no
pause, to show the saturation point. A reply's latency is the time from posting the webhook to the moment
the bot's answer is committed (its MessageQueued event). Prints p50/p99 and
one JSON object on the last line. Needs .venv-rasa and a trained model
(`make rasa-model`).

The urgency classifier (bot/urgency.py) reads every message too, so it is
measured with it: trained classifiers are kept in bench/_common.URGENCY_CACHE
(bench/bot_domains.py shares it). Without one there, a full run waits for the
hub to train it (~10 minutes) before measuring; ``--quick`` measures without
it and says so (``urgency_classifier`` in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, URGENCY_CACHE, emit, free_port, percentile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

QUESTIONS = [
    "How long does a refund take?",
    "I forgot my password, how do I reset it?",
    "What payment methods do you accept?",
    "How much is express shipping?",
    "Can I change my delivery address after ordering?",
    "hello there",
    "How do I return an item?",
    "Where can I download my invoice?",
    "How do I turn on two-factor authentication?",
    "thanks a lot!",
]
SECRET = "bench-secret"


async def run(conversations: int, messages: int, pace: float, *, quick: bool) -> dict[str, Any]:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from channels.fake import sign
    from hub import keys
    from hub.app import create_app
    from hub.config import Settings
    from hub.events import MessageQueued
    from hub.keys import BOT_BRIDGE
    from hub.storage.migrate import upgrade
    from knowledge_base import SAMPLE_DIR

    model = ROOT / "bot/rasa/models/current.tar.gz"
    if not model.exists():
        raise SystemExit("no trained Rasa model: run `make rasa-model` first")
    workdir = Path(tempfile.mkdtemp(prefix="bot-latency-"))
    url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
    upgrade(url)
    port = free_port()
    from bot import urgency

    # --quick never waits minutes for a training: without a trained classifier it measures without one.
    classifier = not quick or urgency.is_trained(urgency.folder_for(URGENCY_CACHE))
    settings = Settings(
        database_url=url,
        data_dir=workdir,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        channels="fake",
        fake_secret=SECRET,
        bot="rasa",
        rasa_port=free_port(),
        action_port=free_port(),
        rasa_ready_wait=300,
        kb_enabled=True,
        kb_seed_dir=SAMPLE_DIR,
        kb_search_rate_limit="100000/minute",
        bot_urgency_classifier=classifier,
        bot_urgency_dir=URGENCY_CACHE,
        _env_file=None,
    )
    app = create_app(settings)
    answered: dict[int, asyncio.Future[float]] = {}

    async def on_queued(event: MessageQueued) -> None:
        if event.author_kind != "bot":
            return
        at = time.perf_counter()
        reply = await app[keys.SERVICE].get_message(event.message_id)
        waiter = answered.get(reply.meta.get("in_reply_to"))
        if waiter is not None and not waiter.done():
            waiter.set_result(at)

    app[keys.BUS].subscribe(MessageQueued, on_queued)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        started = time.perf_counter()
        while app.get(BOT_BRIDGE) is None or app[BOT_BRIDGE]._task is None:
            await asyncio.sleep(0.5)
            if time.perf_counter() - started > 300:
                raise SystemExit("Rasa did not become ready")
        print(f"Rasa and the action server ready after {time.perf_counter() - started:.1f} s", flush=True)
        triage = app[keys.BOT_TRIAGE]
        while triage.classifier_state["state"] in ("pending", "training"):
            await asyncio.sleep(1.0)
        state = triage.classifier_state["state"]
        print(f"urgency classifier: {state}", flush=True)
        latencies: list[float] = []

        async with ClientSession() as session:

            async def ask(sender: str, text: str) -> float:
                raw = json.dumps({"from": sender, "text": text}).encode()
                t0 = time.perf_counter()
                async with session.post(
                    f"http://127.0.0.1:{port}/channels/fake/webhook",
                    data=raw,
                    headers={**sign(SECRET, raw), "Content-Type": "application/json"},
                ) as r:
                    body = await r.json()
                message_id = body["received"][0]["message_id"]
                waiter = answered.setdefault(message_id, asyncio.get_running_loop().create_future())
                return await asyncio.wait_for(waiter, 60) - t0

            async def conversation(index: int, pace: float = 0.0) -> None:
                # Customers start at random moments and write one message per
                # `pace` seconds (reading the answer, typing the next).
                await asyncio.sleep(random.uniform(0, pace))
                for n in range(messages):
                    t0 = time.perf_counter()
                    latencies.append(await ask(f"bench-{index}", QUESTIONS[(index + n) % len(QUESTIONS)]))
                    await asyncio.sleep(max(0.0, pace - (time.perf_counter() - t0)))

            # Warm-up: Rasa's first predictions and the embedding model are slow.
            await conversation(-1)
            latencies.clear()
            await asyncio.gather(*(conversation(i, pace) for i in range(conversations)))
            paced = list(latencies)
            # Saturation: every conversation writes again as soon as it has its answer.
            latencies.clear()
            t0 = time.perf_counter()
            await asyncio.gather(*(conversation(1000 + i) for i in range(conversations)))
            elapsed = time.perf_counter() - t0
        return {
            "p50_ms": round(percentile(paced, 50) * 1000, 1),
            "p99_ms": round(percentile(paced, 99) * 1000, 1),
            "replies": len(paced),
            "pace_s": pace,
            "saturated_p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "saturated_p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "saturated_replies_per_s": round(len(latencies) / elapsed, 1),
            "urgency_classifier": state,
        }
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages per conversation")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--pace", type=float, default=5.0, help="seconds between a customer's messages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    messages = args.messages or (3 if args.quick else 10)
    figures = asyncio.run(run(args.conversations, messages, args.pace, quick=args.quick))
    print(
        f"{args.conversations} concurrent conversations, one message each per {args.pace:g} s, "
        f"{figures['replies']} replies: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
        "(targets: p50 <= 150 ms, p99 <= 400 ms)"
    )
    print(
        f"saturated (no pause between messages): p50 {figures['saturated_p50_ms']} ms, "
        f"p99 {figures['saturated_p99_ms']} ms, {figures['saturated_replies_per_s']} replies/s"
    )
    emit(
        {
            "benchmark": "bot_latency",
            "conversations": args.conversations,
            "messages_per_conversation": messages,
            **figures,
        }
    )


if __name__ == "__main__":
    main()
