"""The resilience suite's agent (no tests here): works the queue over the
REST API with a token, through either instance, as a console or a script would."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.resilience.load import DUPLICATE_RATE, Load


class Agent:
    """An agent working the queue over the REST API, through either instance:
    lists the tickets and answers each once, with an ``Idempotency-Key``,
    retrying (on the other instance) until one answers, and sometimes
    posting a reply twice on purpose."""

    def __init__(self, load: Load, token: str) -> None:
        self.load = load
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answered: dict[int, int] = {}  # ticket id -> conversation id
        self.turn = 0

    async def run(self, done: asyncio.Event) -> None:
        """Until ``done`` is set, and one pass more."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                finished = done.is_set()
                tickets, complete = await self._tickets(http)
                for ticket in tickets:
                    if ticket["id"] not in self.answered:
                        await self._answer(http, ticket)
                if finished and complete:
                    return
                await asyncio.sleep(0.5)

    async def _tickets(self, http: aiohttp.ClientSession) -> tuple[list[dict[str, Any]], bool]:
        """Every ticket, page after page (from the start each time: ids are not
        committed in order); and whether the list is complete."""
        found: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            query = "status=all&limit=200" + (f"&after={after}" if after is not None else "")
            page = await self._call(http, "GET", f"/api/v1/tickets?{query}")
            if page is None:
                return found, False  # the rest on the next pass
            found += page["items"]
            after = page["next_after"]
            if after is None:
                return found, True

    async def _answer(self, http: aiohttp.ClientSession, ticket: dict[str, Any]) -> None:
        path = f"/api/v1/conversations/{ticket['conversation_id']}/messages"
        headers = {**self.headers, "Idempotency-Key": f"agent-ticket-{ticket['id']}"}
        body = {"text": agent_text(ticket["id"])}
        times = 2 if self.load.random.random() < DUPLICATE_RATE * 2 else 1
        for _ in range(times):
            while await self._call(http, "POST", path, json=body, headers=headers) is None:
                await asyncio.sleep(0.2)
        self.answered[ticket["id"]] = ticket["conversation_id"]

    async def _call(self, http: aiohttp.ClientSession, method: str, path: str, **options: Any) -> Any:
        """One request to the next instance; None when it failed (to be retried)."""
        self.turn += 1
        url = self.load.urls[self.turn % len(self.load.urls)] + path
        options.setdefault("headers", self.headers)
        try:
            async with http.request(method, url, **options) as response:
                if response.status >= 500:
                    self.load.tally.errors[f"api {response.status}"] += 1
                    self.load.tally.server_errors += 1
                    return None
                assert response.status < 300, (method, path, response.status, await response.text())
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as err:
            self.load.tally.errors[f"api {type(err).__name__}"] += 1
            return None


def agent_text(ticket_id: int) -> str:
    return f"Agent here, I am looking at ticket {ticket_id} for you now."
