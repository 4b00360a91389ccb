"""The hub's Rasa client: Rasa's REST channel plus the tracker-events API.

    POST {rasa}/webhooks/rest/webhook  {"sender", "message", "metadata"}
        -> [{"recipient_id", "text"} | {"recipient_id", "custom": {...}}, ...]
    POST {rasa}/conversations/{sender}/tracker/events?token=...
        [{"event": "resume"}, {"event": "action", "name": "action_listen"}]
    PUT {rasa}/model?token=...  {"model_file": path}   (a retrained NLU, live)

Timeouts and transport errors raise ``Unavailable``; the caller decides how
to fall back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from hub.errors import Unavailable


@dataclass(frozen=True, slots=True)
class BotTurn:
    """What Rasa answered to one customer message."""

    texts: list[str] = field(default_factory=list)
    custom: list[dict[str, Any]] = field(default_factory=list)

    @property
    def handoff(self) -> dict[str, Any] | None:
        return next((c for c in self.custom if c.get("handoff")), None)

    @property
    def kb(self) -> dict[str, Any] | None:
        return next((c for c in self.custom if "kb_hits" in c), None)

    @property
    def decision(self) -> dict[str, Any] | None:
        """What the bot did this turn (``bot.actions``: answer, clarify, topics, offer_human, handoff)."""
        found = next((c["decision"] for c in self.custom if isinstance(c.get("decision"), dict)), None)
        return dict(found) if found is not None else None


class RasaClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RasaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def reconnect(self) -> None:
        """Forget every pooled connection: the next request opens a new one.

        For when the server on our URL changed (a foreign Rasa left its port and
        ours took it): a kept-alive connection to the old one would carry our
        next requests to it, not to whoever listens on the port now."""
        old, self._session = self._session, None
        if old is not None:
            await old.close()

    def _params(self) -> dict[str, str]:
        return {"token": self.token} if self.token else {}

    async def send(self, sender: str, text: str, metadata: dict[str, Any] | None = None) -> BotTurn:
        payload = {"sender": sender, "message": text, "metadata": metadata or {}}
        body = await self._post("/webhooks/rest/webhook", payload)
        if not isinstance(body, list):
            raise Unavailable(f"Rasa answered {type(body).__name__}, expected a list")
        turn = BotTurn()
        for item in body:
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("text"), str) and item["text"].strip():
                turn.texts.append(item["text"])
            if isinstance(item.get("custom"), dict):
                turn.custom.append(item["custom"])
        return turn

    async def resume(self, sender: str) -> None:
        """Un-pause a conversation that an action handed to humans."""
        events = [{"event": "resume"}, {"event": "action", "name": "action_listen"}]
        await self._post(f"/conversations/{quote(sender, safe='')}/tracker/events", events, params=self._params())

    async def forget(self, sender: str) -> None:
        """Empty a conversation's tracker (``PUT .../tracker/events`` with no
        events replaces them all): what an erased customer said is gone from Rasa."""
        url = f"{self.base_url}/conversations/{quote(sender, safe='')}/tracker/events"
        try:
            async with self.session.put(url, json=[], params=self._params(), timeout=self.timeout) as response:
                if response.status >= 400:
                    raise Unavailable(
                        f"Rasa answered HTTP {response.status} on forget: {(await response.text())[:300]}"
                    )
        except (TimeoutError, aiohttp.ClientError) as err:
            raise Unavailable(f"PUT {url} failed: {err!r}") from err

    async def replace_model(self, model_file: str, timeout: float = 300.0) -> None:
        """Serve another model (``PUT /model``); Rasa answers with the old one until it is loaded."""
        url = f"{self.base_url}/model"
        try:
            async with self.session.put(
                url,
                json={"model_file": model_file},
                params=self._params(),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status >= 400:
                    raise Unavailable(f"Rasa refused the model ({response.status}): {(await response.text())[:300]}")
        except (TimeoutError, aiohttp.ClientError) as err:
            raise Unavailable(f"PUT {url} failed: {err!r}") from err

    async def warm_up(self, timeout: float = 30.0) -> float | None:
        """Parse one sentence, so that Rasa builds its model's graphs now and
        not on a customer's first message (about 5 s, once per Rasa start).
        Returns the seconds it took, or None when Rasa did not answer (the
        first message then pays instead; nothing else depends on it)."""
        started = time.perf_counter()
        try:
            await self.parse("hello", timeout=timeout)
        except Unavailable:
            return None
        return time.perf_counter() - started

    async def parse(self, text: str, timeout: float | None = None) -> dict[str, Any]:
        """Rasa's reading of ``text`` (``/model/parse``: intent, ranking, entities) by the model it
        serves, without touching any conversation. Raises ``Unavailable``."""
        parsed = await self._post("/model/parse", {"text": text}, params=self._params(), timeout=timeout)
        if not isinstance(parsed, dict):
            raise Unavailable(f"Rasa's /model/parse answered {type(parsed).__name__}, not an object")
        return parsed

    async def model_file(self) -> str | None:
        """The model file Rasa serves (``/status``), or None when it does not say or cannot be reached."""
        try:
            async with self.session.get(f"{self.base_url}/status", params=self._params()) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        found = body.get("model_file") if isinstance(body, dict) else None
        return str(found) if found else None

    async def ready(self) -> bool:
        return await self.probe() == "ready"

    async def probe(self) -> str:
        """``ready`` (``/status`` answers 200 to our token), ``refused`` (401/403:
        a Rasa with another token, not the one we expect), or ``unavailable``."""
        try:
            async with self.session.get(f"{self.base_url}/status", params=self._params()) as response:
                if response.status == 200:
                    return "ready"
                return "refused" if response.status in (401, 403) else "unavailable"
        except (TimeoutError, aiohttp.ClientError):
            return "unavailable"

    async def _post(
        self, path: str, payload: Any, params: dict[str, str] | None = None, timeout: float | None = None
    ) -> Any:
        """POST JSON; ``timeout`` overrides the client's for this call."""
        url = f"{self.base_url}{path}"
        limit = self.timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        try:
            async with self.session.post(url, json=payload, params=params or {}, timeout=limit) as response:
                if response.status >= 400:
                    detail = (await response.text())[:300]
                    raise Unavailable(f"Rasa answered HTTP {response.status} on {path}: {detail}")
                return await response.json(content_type=None)
        except TimeoutError as err:
            raise Unavailable(f"Rasa did not answer {path} within {limit.total} s") from err
        except aiohttp.ClientError as err:
            raise Unavailable(f"Rasa is unreachable ({type(err).__name__}: {err})") from err
