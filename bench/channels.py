"""Inbound webhooks per second accepted into the timeline, per channel (SQLite).

    .venv/bin/python bench/channels.py [--quick] [--messages N] [--concurrency C]

The same hub (``HUB_CHANNELS=fake,sms``, no bot, no knowledge base) takes
signed webhooks from one load generator: the fake channel's JSON signed with
HMAC-SHA256, and Twilio's form-encoded SMS webhook signed as Twilio signs it
(``RequestValidator``: HMAC-SHA1 over the public URL and the sorted form
parameters), answered with empty TwiML. The hub runs in its own process on
one core, the load on the other; the channels take turns for several rounds
(a fresh hub each) and each figure is its median round, so ``sms_ratio`` (SMS
rate / fake rate on the same run) says what the signature check and form
parsing cost. Prints every round, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, emit, free_port, percentile

FAKE_SECRET = "bench-secret"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "bench-twilio-token"
SUPPORT_NUMBER = "+15005550006"


# --- the hub (a child process) -----------------------------------------------------
def serve(port: int, workdir: Path) -> None:
    import logging

    from aiohttp import web

    from hub.__main__ import new_event_loop
    from hub.app import create_app, freeze_after_startup
    from hub.config import Settings
    from hub.storage.migrate import upgrade

    logging.basicConfig(level=logging.WARNING)
    url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
    upgrade(url)
    settings = Settings(
        database_url=url,
        channels="fake,sms",
        fake_secret=FAKE_SECRET,
        twilio_account_sid=TWILIO_SID,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_from=SUPPORT_NUMBER,
        public_url=f"http://127.0.0.1:{port}",
        data_dir=workdir,
        bot="none",
        kb_enabled=False,
        _env_file=None,
    )
    app = create_app(settings)
    freeze_after_startup(app)  # as hub serve does
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop(settings.event_loop))


# --- the load ----------------------------------------------------------------------
Request = tuple[bytes, dict[str, str]]


def fake_request(run_id: str, senders: int) -> Callable[[int], Request]:
    import json

    from channels.fake import sign

    def build(n: int) -> Request:
        raw = json.dumps(
            {
                "from": f"customer-{n % senders}",
                "text": f"Hello, this is message {n} about my order #{n * 7}",
                "id": f"{run_id}-{n}",
            }
        ).encode()
        return raw, {**sign(FAKE_SECRET, raw), "Content-Type": "application/json"}

    return build


def sms_request(run_id: str, senders: int, url: str) -> Callable[[int], Request]:
    from urllib.parse import urlencode

    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TWILIO_TOKEN)

    def build(n: int) -> Request:
        # The fields Twilio posts for an SMS (https://www.twilio.com/docs/messaging/guides/webhook-request).
        params = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": f"SM{run_id}{n:024d}",
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": f"SM{run_id}{n:024d}",
            "FromState": "NY",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": f"Hello, this is message {n} about my order #{n * 7}",
            "FromCountry": "US",
            "To": SUPPORT_NUMBER,
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": f"SM{run_id}{n:024d}",
            "AccountSid": TWILIO_SID,
            "From": f"+1212555{n % senders:04d}",
            "ApiVersion": "2010-04-01",
        }
        headers = {
            "X-Twilio-Signature": validator.compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return urlencode(params).encode(), headers

    return build


async def load(url: str, build: Callable[[int], Request], messages: int, concurrency: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    warm = iter(range(messages, messages + min(200, messages)))
    counter = iter(range(messages))

    async def worker(session: aiohttp.ClientSession, numbers: Any, record: bool) -> None:
        for n in numbers:
            raw, headers = build(n)
            started = time.perf_counter()
            async with session.post(url, data=raw, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
            if record:
                latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, warm, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, counter, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "per_s": round(messages / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the hub did not start")


def measure(channel: str, messages: int, concurrency: int, senders: int, pin: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(port), "--workdir", workdir],
            cwd=ROOT,
            preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None,
        )
        try:
            wait_ready(port, proc)
            run_id = os.urandom(4).hex()
            if channel == "sms":
                url = f"http://127.0.0.1:{port}/channels/sms/twilio"
                build = sms_request(run_id, senders, url)
            else:
                url = f"http://127.0.0.1:{port}/channels/fake/webhook"
                build = fake_request(run_id, senders)
            return asyncio.run(load(url, build, messages, concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def median_round(results: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(results, key=lambda r: r["per_s"])
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds (well under 60 s)")
    parser.add_argument("--messages", type=int, help="webhooks per round (default 4000; 1500 quick)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--senders", type=int, default=500, help="distinct customers texting")
    parser.add_argument("--rounds", type=int, help="rounds per channel (default 5; 3 quick)")
    parser.add_argument("--no-pin", action="store_true", help="let the OS place the hub and the load")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.workdir)
        return
    messages = args.messages or (1500 if args.quick else 4000)
    rounds = args.rounds or (3 if args.quick else 5)
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    results: dict[str, list[dict[str, float]]] = {"fake": [], "sms": []}
    began = time.perf_counter()
    for round_number in range(1, rounds + 1):
        for channel in results:
            figures = measure(channel, messages, args.concurrency, args.senders, pin)
            results[channel].append(figures)
            print(f"round {round_number} {channel}: {figures}", flush=True)
    fake, sms = median_round(results["fake"]), median_round(results["sms"])
    emit(
        {
            "sms_per_s": sms["per_s"],
            "sms_p50_ms": sms["p50_ms"],
            "sms_p99_ms": sms["p99_ms"],
            "fake_per_s": fake["per_s"],
            "sms_ratio": round(sms["per_s"] / fake["per_s"], 3),
            "messages_per_round": messages,
            "rounds": rounds,
            "concurrency": args.concurrency,
            "pinned": pin,
            "seconds": round(time.perf_counter() - began, 1),
        }
    )


if __name__ == "__main__":
    main()
