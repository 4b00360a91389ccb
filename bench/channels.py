"""Inbound messages per second accepted into the timeline, per channel (SQLite).

    .venv/bin/python bench/channels.py [--quick] [--messages N] [--concurrency C]

The same hub (``HUB_CHANNELS=fake,sms,email``, no bot, no knowledge base)
takes signed webhooks from one load generator: the fake channel's JSON signed
with HMAC-SHA256, and Twilio's form-encoded SMS webhook signed as Twilio
signs it (``RequestValidator``: HMAC-SHA1 over the public URL and the sorted
form parameters), answered with empty TwiML. E-mail (``smtp``) comes over
real SMTP sessions with the hub's own server (``aiosmtplib``: EHLO, then
MAIL/RCPT/DATA for ``--mails-per-session`` mails per connection, each
answered 250 only once stored with its original kept as an attachment);
``--concurrency`` sessions at once. The hub runs in its own process on one
core, the load on the other; the channels take turns for several rounds (a
fresh hub each) and each figure is its median round, so ``sms_ratio`` (SMS
rate / fake rate on the same run) says what the signature check and form
parsing cost, ``smtp_ratio`` the same for SMTP and MIME. Prints every round,
then one JSON object on the last line (``smtp_per_s``: target >= 100).
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

from _common import ROOT, emit, free_port, percentile, wait_ready

FAKE_SECRET = "bench-secret"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "bench-twilio-token"
SUPPORT_NUMBER = "+15005550006"
SUPPORT_ADDRESS = "help@support.example.test"


# --- the hub (a child process) -----------------------------------------------------
def serve(port: int, smtp_port: int, workdir: Path) -> None:
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
        channels="fake,sms,email",
        fake_secret=FAKE_SECRET,
        email_addresses=SUPPORT_ADDRESS,
        email_reply_secret="bench-reply-secret",
        email_smtp_port=smtp_port,
        email_sender_rate=1_000_000,
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


def smtp_mail(run_id: str, senders: int) -> Callable[[int], bytes]:
    from email.message import EmailMessage

    def build(n: int) -> bytes:
        # What a mail program sends: a reply with its quote, text and HTML.
        message = EmailMessage()
        message["From"] = f"Customer {n % senders} <customer-{n % senders}@mail.example.org>"
        message["To"] = f"Northwind Support <{SUPPORT_ADDRESS}>"
        message["Subject"] = f"Re: Order #{n * 7}"
        message["Date"] = "Tue, 4 Mar 2025 09:00:00 +0000"
        message["Message-ID"] = f"<{run_id}.{n}@mail.example.org>"
        message["In-Reply-To"] = f"<outbox-{n}@support.example.test>"
        text = f"Hello, this is message {n} about my order #{n * 7}.\n\nThanks,\nCustomer\n\n"
        quote = "On Mon, 3 Mar 2025 at 18:02, Northwind Support wrote:\n> Your order left our warehouse.\n"
        message.set_content(text + quote)
        message.add_alternative(
            f"<p>Hello, this is message {n} about my order #{n * 7}.</p><blockquote>...</blockquote>", subtype="html"
        )
        return message.as_bytes()

    return build


async def smtp_load(
    port: int, build: Callable[[int], bytes], messages: int, concurrency: int, per_session: int
) -> dict[str, float]:
    import aiosmtplib

    latencies: list[float] = []
    warm = iter(range(messages, messages + min(200, messages)))
    counter = iter(range(messages))
    # Built before the clock starts: composing MIME is the sender's work, not the hub's.
    mails = [build(n) for n in range(messages + min(200, messages))]

    async def session(numbers: Any, record: bool) -> None:
        while True:
            batch = [n for _, n in zip(range(per_session), numbers)]
            if not batch:
                return
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench.test")
            await client.connect()
            try:
                for n in batch:
                    raw = mails[n]
                    started = time.perf_counter()
                    errors, reply = await client.sendmail("customer@mail.example.org", [SUPPORT_ADDRESS], raw)
                    if errors or not reply.startswith("2.0.0"):
                        raise RuntimeError(f"SMTP: {errors or reply}")
                    if record:
                        latencies.append(time.perf_counter() - started)
            finally:
                await client.quit()

    await asyncio.gather(*(session(warm, False) for _ in range(concurrency)))
    started = time.perf_counter()
    await asyncio.gather(*(session(counter, True) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "per_s": round(messages / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def measure(
    channel: str, messages: int, concurrency: int, senders: int, pin: bool, per_session: int = 10
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        port, smtp_port = free_port(), free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--port",
                str(port),
                "--smtp-port",
                str(smtp_port),
                "--workdir",
                workdir,
            ],
            cwd=ROOT,
            preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None,
        )
        try:
            wait_ready(port, proc)
            wait_ready(smtp_port, proc)
            run_id = os.urandom(4).hex()
            if channel == "smtp":
                return asyncio.run(smtp_load(smtp_port, smtp_mail(run_id, senders), messages, concurrency, per_session))
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
    parser.add_argument("--mails-per-session", type=int, default=10, help="mails per SMTP connection")
    parser.add_argument("--smtp-messages", type=int, help="mails per round (default: a third of --messages)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--smtp-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.smtp_port, args.workdir)
        return
    messages = args.messages or (1500 if args.quick else 4000)
    rounds = args.rounds or (3 if args.quick else 5)
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    # Mail costs more per message than a webhook (MIME, the kept original): fewer, for the same time.
    smtp_messages = args.smtp_messages or max(100, messages // 3)
    results: dict[str, list[dict[str, float]]] = {"fake": [], "sms": [], "smtp": []}
    began = time.perf_counter()
    for round_number in range(1, rounds + 1):
        for channel in results:
            count = smtp_messages if channel == "smtp" else messages
            figures = measure(channel, count, args.concurrency, args.senders, pin, args.mails_per_session)
            results[channel].append(figures)
            print(f"round {round_number} {channel}: {figures}", flush=True)
    fake, sms, smtp = median_round(results["fake"]), median_round(results["sms"]), median_round(results["smtp"])
    emit(
        {
            "sms_per_s": sms["per_s"],
            "sms_p50_ms": sms["p50_ms"],
            "sms_p99_ms": sms["p99_ms"],
            "fake_per_s": fake["per_s"],
            "sms_ratio": round(sms["per_s"] / fake["per_s"], 3),
            "smtp_per_s": smtp["per_s"],
            "smtp_p50_ms": smtp["p50_ms"],
            "smtp_p99_ms": smtp["p99_ms"],
            "smtp_ratio": round(smtp["per_s"] / fake["per_s"], 3),
            "smtp_messages_per_round": smtp_messages,
            "mails_per_session": args.mails_per_session,
            "messages_per_round": messages,
            "rounds": rounds,
            "concurrency": args.concurrency,
            "pinned": pin,
            "seconds": round(time.perf_counter() - began, 1),
        }
    )


if __name__ == "__main__":
    main()
