"""Keep the bot's NLU in step with the knowledge base, without stopping it.

When the knowledge base changes (through the API, an ingest, a suggestion
accepted, or `hub kb ingest` in another process on the same data folder),
the examples it teaches the NLU (``bot.rasa.kb_nlu``) change. This watcher
notices (a cheap fingerprint of every article, every ``interval`` seconds,
and once more after it has stopped changing, so a bulk ingest retrains once),
and when the model those examples call for is not the one Rasa serves:

1. writes ``<data_dir>/bot/kb_nlu.yml``;
2. runs ``python -m bot.rasa.model --extra-data kb_nlu.yml --json`` in the
   Rasa venv, in the background, into ``<data_dir>/bot/models`` (a model
   already trained for the same inputs is reused at once); Rasa keeps
   serving the current model meanwhile;
3. swaps the new model in with Rasa's ``PUT /model`` and warms it up.

It also asks Rasa which model it serves (``/status``) on every look: a Rasa
the supervisor restarted comes back on the model it was started with, and
gets the knowledge base's model again.

``GET /api/v1/bot/model`` shows where it stands, including how long the last
training took; the log says so too. Only for a Rasa the hub supervises (it
must be able to read the model file); off with ``HUB_BOT_ADAPT=false``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.client import RasaClient
from bot.rasa import kb_nlu
from bot.rasa.model import training_hash
from hub import keys
from hub.aio import run_for_json, wait_event
from hub.api.base import requires
from hub.models import Role

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@dataclass
class ModelState:
    serving: str  # the hash of the model Rasa serves
    wanted: str | None = None  # the hash the knowledge base calls for (None: not looked yet)
    training: bool = False
    last_training_seconds: float | None = None
    last_trained_at: float | None = None
    last_error: str | None = None
    examples: int = 0
    kb_seen: str | None = None  # fingerprint of the knowledge base as last looked at
    kb_synced: str | None = None  # fingerprint ``wanted`` was computed for

    @property
    def up_to_date(self) -> bool:
        return (
            self.wanted is not None and self.wanted == self.serving and not self.training
            and self.kb_seen is not None and self.kb_seen == self.kb_synced
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "serving": self.serving,
            "wanted": self.wanted,
            "up_to_date": self.up_to_date,
            "training": self.training,
            "last_training_seconds": self.last_training_seconds,
            "last_error": self.last_error,
            "kb_examples": self.examples,
            "kb_fingerprint": self.kb_seen,
        }


ListArticles = Callable[[], Coroutine[Any, Any, list[Any]]]


class BotModelWatcher:
    def __init__(
        self,
        *,
        list_articles: ListArticles,
        rasa: RasaClient,
        serving_model: Path,
        data_dir: Path,
        rasa_python: Path,
        interval: float = 5.0,
    ) -> None:
        self.list_articles = list_articles
        self.rasa = rasa
        self.file = data_dir / "bot" / kb_nlu.FILE_NAME
        self.rasa_python = rasa_python
        # Models trained for this hub's knowledge base live with its data, not
        # beside the shipped one: `make rasa-model` and the tests keep theirs.
        self.models_dir = data_dir / "bot" / "models"
        self.interval = interval
        self.state = ModelState(serving=serving_model.resolve().name.removesuffix(".tar.gz"))
        self._wake = asyncio.Event()

    def changed(self) -> None:
        """Look now rather than at the next tick (the KB API calls it after a write)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self._check_serving()
                articles = await self.list_articles()
                fingerprint = _fingerprint(articles)
                if fingerprint != self.state.kb_seen:
                    # Changed since the last look: wait until it stops changing.
                    self.state.kb_seen = fingerprint
                elif fingerprint != self.state.kb_synced or self.state.wanted != self.state.serving:
                    await self._sync(articles)
                    self.state.kb_synced = fingerprint
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.state.training = False
                self.state.last_error = f"{type(err).__name__}: {err}"
                self.state.kb_synced = None
                log.exception("keeping the bot's NLU in step with the knowledge base failed")
            self._wake.clear()
            await wait_event(self._wake, self.interval)

    async def _check_serving(self) -> None:
        """A Rasa the supervisor restarted serves the model it was started with: notice it."""
        model_file = await self.rasa.model_file()
        if model_file:
            serving = Path(model_file).name.removesuffix(".tar.gz")
            if serving != self.state.serving:
                log.warning("Rasa serves model %s, not %s (restarted?)", serving, self.state.serving)
                self.state.serving = serving

    async def _sync(self, articles: list[Any]) -> None:
        examples = await asyncio.to_thread(lambda: kb_nlu.examples([kb_nlu.outline_of(a) for a in articles]))
        text = kb_nlu.render(examples)
        name = f"extra/{self.file.name}"
        wanted = await asyncio.to_thread(training_hash, extra_data=[self.file], contents={name: text.encode()})
        self.state.wanted, self.state.examples = wanted, len(examples)
        if wanted == self.state.serving:
            return
        self.state.training = True
        log.info("the knowledge base changed: training the bot's NLU on %d examples from it", len(examples))
        started = time.perf_counter()
        await asyncio.to_thread(_write_if_changed, self.file, text)
        info = await self._train()
        model = Path(info["path"])
        await self.rasa.replace_model(str(model))
        await self.rasa.warm_up()
        seconds = time.perf_counter() - started
        self.state.serving = model.name.removesuffix(".tar.gz")
        self.state.training = False
        self.state.last_error = None
        self.state.last_training_seconds = round(seconds, 1)
        self.state.last_trained_at = time.time()
        log.info(
            "the bot now serves model %s (%s in %.1f s)",
            self.state.serving,
            "trained" if info.get("trained_now") else "reused",
            seconds,
        )

    async def _train(self) -> dict[str, Any]:
        command = [str(self.rasa_python), "-m", "bot.rasa.model", "--json"]
        command += ["--models-dir", str(self.models_dir), "--extra-data", str(self.file)]
        return await run_for_json(command, cwd=Path(__file__).resolve().parents[2], what="NLU training")


def _fingerprint(articles: list[Any]) -> str:
    digest = hashlib.sha256()
    for article in sorted(articles, key=lambda a: (a.collection, a.id)):
        digest.update(f"{article.collection}/{article.id}:{article.content_hash}\n".encode())
    return digest.hexdigest()


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


@routes.get("/api/v1/bot/model")
@requires(Role.VIEWER)
async def model_status(request: web.Request) -> web.Response:
    """Which NLU model the bot serves, whether it is in step with the knowledge base, and the urgency classifier's state."""
    watcher = request.app.get(keys.BOT_MODEL)
    triage = request.app.get(keys.BOT_TRIAGE)
    # The urgency classifier (bot.urgency): off, pending, training, ready or failed.
    classifier = {"urgency_classifier": triage.classifier_state} if triage is not None else {}
    if watcher is None:
        return web.json_response({"adapting": False, **classifier})
    return web.json_response({"adapting": True, **watcher.state.as_dict(), **classifier})


async def all_articles(kb: Any) -> list[Any]:
    found: list[Any] = []
    for collection in await kb.list_collections():
        found.extend(await kb.list_articles(collection))
    return found
