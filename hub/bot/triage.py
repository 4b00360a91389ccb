"""The hub's triage of a customer message before the bot sees it.

Urgency signals that do not depend on Rasa's training data, passed to
Rasa as ``metadata.triage`` (``bot.actions.routing`` combines them with the
NLU's own):

- ``examples``: the nearest-neighbour match against the team's urgent and
  not-urgent examples (``bot.triage``), embedded with the knowledge base's
  model; absent while the examples load (a few seconds after start) or when
  the knowledge base is off;
- ``rules``: the admin's enabled keyword routing rules of priority urgent
  that match the text (``hub.tickets.routing``): a team that marks "stolen" urgent
  gets it from the bot too, not only on the ticket;
- ``safety``: the phrases of ``bot.safety`` the message contains (someone
  may harm themselves, or a life is threatened): never overruled;
- ``classifier``: the fine-tuned urgency classifier's probability
  (``bot.urgency``), urgent on its own from 0.95 and a veto on the other two
  below 0.1. It is trained for this team's examples in a child process
  (``python -m bot.urgency``, ~10 minutes on 2 cores) into
  ``HUB_BOT_URGENCY_DIR/<fingerprint of its training data>`` when no
  classifier for the current examples is there, and loaded when done;
  absent until then (the other signals serve) or with
  ``HUB_BOT_URGENCY_CLASSIFIER=false``.

Customers wrap what they say: "Hi, first time contacting support so
apologies if I'm doing this wrong.\n<the urgent part>\nThanks for reading."
and misspell it. Both pull a model's reading away from what it learnt, so
the two models also read the message as the search searches it
(``KnowledgeBase.as_searched``: misspellings corrected, greetings, thanks and
sign-offs left out), recorded as ``searched``:

- only corrected (no word left out): that reading replaces the typed one
  (the models learnt spelt words; taking the more urgent of the two raised
  false urgent on misspelt development questions 0.051 -> 0.068);
- wrapped (words left out): the more urgent of the two readings counts, and
  so does a sentence that *both* models call urgent on its own, recorded as
  ``sentence`` (the classifier alone calls fragments like "my daughter is 3"
  urgent). A message that was not wrapped is not read sentence by sentence,
  unless it is long.

A long message (more than ``urgency.MAX_WORDS`` words: an e-mail with its
story) is not read whole by the classifier, which learnt from short ones and
calls nearly every long e-mail urgent; its sentences are read as a wrapped
message's are. On the development help centres' long e-mails (140, 28 of
them urgent; ``bench/bot_domains.py --long``) reading them whole handed 81 of
the 112 that are not urgent to a person as urgent; read this way, 41. Rasa's
intents learnt from short messages too: ``long_leans_urgent`` records whether
any sentence of a long message leans urgent (the examples closer to urgent
than not, the classifier urgent, and Rasa reading that sentence alone as
urgent as its ``nlu`` signal would, ``bot.actions.routing.reads_urgent``:
``parse``, its /model/parse; not asked while the bridge holds Rasa), and
without one Rasa's
``urgent_issue`` for the whole e-mail does not count (``bot.actions.routing``):
41 -> 34 with the first two, -> 30 with Rasa's reading of the sentence; the
27 of 28 urgent e-mails handed off as urgent still are. No message of the
help-centre sets as written, misspelt or wrapped is long (at most 42 words).

The bot bridge sends Rasa the message as searched too, so "Hello there, <a
request> Have a nice day :)" is not read as small talk. Measured through the
whole hub with the real Rasa on the seven development help centres
(``bench/bot_domains.py``; figures in the README).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot import safety, urgency
from bot.actions.routing import intent_score, reads_urgent
from bot.triage import DEFAULT_EXAMPLES, ExamplesError, UrgentExamples, load_examples
from hub.aio import run_for_json
from hub.models import Priority
from hub.tickets import routing
from knowledge_base import focus

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], Awaitable[Any]]
EmbedQuery = Callable[[str], Awaitable[Any]]
Rules = Callable[[], Awaitable[Any]]
AsSearched = Callable[[str], Awaitable[str]]
Parse = Callable[[str], Awaitable[dict[str, Any]]]
Reading = dict[str, Any] | None


class Triage:
    def __init__(
        self,
        *,
        embed: Embed | None,
        rules: Rules | None,
        embed_query: EmbedQuery | None = None,
        examples_path: Path | None = None,
        max_false_urgent: float = 0.02,
        classifier_dir: Path | None = None,
        classifier_model: Path | None = None,
        classifier_steps: int = urgency.STEPS,
        classifier_nlu: Path = urgency.NLU_FILE,
        as_searched: AsSearched | None = None,
        parse: Parse | None = None,
    ) -> None:
        self.embed = embed
        # Rasa's reading of a text (its /model/parse), for the sentences of a long message.
        self.parse = parse
        # What the search searches for a message (``KnowledgeBase.as_searched``): read too.
        self.as_searched = as_searched
        # A message is embedded as the search will embed it (KnowledgeBase.embed_query
        # shares its cache with the search): the bot's search then costs no second pass.
        self.embed_query = embed_query
        self.rules = rules
        self.examples_path = examples_path or DEFAULT_EXAMPLES
        self.max_false_urgent = max_false_urgent
        self.examples: UrgentExamples | None = None
        # Read once here: a file that is changed takes effect at the next start, like the examples.
        self.safety_phrases = safety.phrases_for(self.examples_path)
        # The urgency classifier: trained under classifier_dir (None: off) from
        # the knowledge base's model (classifier_model; None: the default MiniLM).
        self.classifier_dir = classifier_dir
        self.classifier_model = classifier_model
        self.classifier_steps = classifier_steps
        self.classifier_nlu = classifier_nlu  # the NLU data whose intents it also learns from
        self.classifier: urgency.UrgencyClassifier | None = None
        self.classifier_state: dict[str, Any] = {"state": "off" if classifier_dir is None else "pending"}

    async def load(self) -> None:
        """Embed and calibrate the examples; a bad file is logged, and the signal stays off."""
        if self.embed is None:
            return
        try:
            urgent, not_urgent = await asyncio.to_thread(load_examples, self.examples_path)
            vectors = await self.embed([*urgent, *not_urgent])
        except ExamplesError as err:
            log.error("urgent examples off: %s", err)
            return
        by_text = dict(zip([*urgent, *not_urgent], vectors, strict=True))
        self.examples = await asyncio.to_thread(
            UrgentExamples,
            urgent,
            not_urgent,
            lambda texts: [by_text[t] for t in texts],
            max_false_urgent=self.max_false_urgent,
        )
        log.info("urgent examples loaded from %s: %s", self.examples_path, self.examples.calibration.as_dict())

    async def _match_examples(self, text: str) -> dict[str, Any] | None:
        if self.examples is None or self.embed is None or not text.strip():
            return None
        if self.embed_query is not None:
            vector = await self.embed_query(text)
        else:
            [vector] = await self.embed([text])
        return self.examples.match(vector).as_dict()

    async def _classify(self, text: str) -> dict[str, Any] | None:
        if self.classifier is None or not text.strip() or _long(text):
            return None  # a long message: its sentences are read (``_urgent_sentence``)
        return await asyncio.to_thread(self.classifier.read, text)

    async def run_classifier(self) -> None:
        """Load the classifier for the current examples, training it first when
        there is none; logged and left off (``classifier_state``) on failure."""
        if self.classifier_dir is None:
            return
        try:
            folder = await asyncio.to_thread(self._classifier_folder)
            if not urgency.is_trained(folder):
                self.classifier_state = {"state": "training", "folder": str(folder), "since": time.time()}
                log.info(
                    "urgency classifier: training %s in the background (%d steps, ~1 s each on 2 cores)",
                    folder.name,
                    self.classifier_steps,
                )
                info = await self._train(folder)
                log.info("urgency classifier trained in %.0f s (%d examples)", info["seconds"], info["examples"])
            self.classifier = await asyncio.to_thread(urgency.UrgencyClassifier, folder)
            self.classifier_state = {"state": "ready", "folder": str(folder), **self.classifier.info}
            log.info("urgency classifier loaded from %s", folder)
            for old in await asyncio.to_thread(urgency.prune, folder.parent, folder):
                log.info("urgency classifier: removed %s (trained for other data)", old.name)
        except (OSError, ValueError, RuntimeError, ExamplesError) as err:
            self.classifier_state = {"state": "failed", "error": str(err)[:500]}
            log.error("urgency classifier off: %s", err)

    def _classifier_folder(self) -> Path:
        assert self.classifier_dir is not None
        return urgency.folder_for(
            self.classifier_dir, self.examples_path, self.classifier_nlu, self.classifier_model, self.classifier_steps
        )

    async def _train(self, folder: Path) -> dict[str, Any]:
        folder.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bot.urgency", "--json", "--out", str(folder)]
        command += ["--examples", str(self.examples_path), "--nlu", str(self.classifier_nlu)]
        command += ["--steps", str(self.classifier_steps)]
        if self.classifier_model is not None:
            command += ["--model", str(self.classifier_model)]
        root = Path(__file__).resolve().parents[2]
        return await run_for_json(command, cwd=root, what="urgency classifier training", nice=10)

    async def __call__(self, text: str, *, rasa: bool = True) -> dict[str, Any]:
        """The signals for ``text``; ``rasa`` False: Rasa is not to be asked now (the bridge holds
        it: restarting, or a stranger on its port), and a long message's leaning sentences count as
        if it could not be asked."""
        result: dict[str, Any] = {}
        said = safety.matches(text, self.safety_phrases)
        if said:
            result["safety"] = said
        matched, read = await self._read(text)
        searched = await self._searched(text)
        wrapped = searched is not None and len(searched.split()) < len(text.split())
        if searched is not None:
            result["searched"] = searched
            also_matched, also_read = await self._read(searched)
            if wrapped:
                # Unwrapped, the message may read more urgent; the more urgent reading counts.
                matched, read = _more_urgent_match(matched, also_matched), _more_urgent_read(read, also_read)
            else:
                # Only misspellings corrected: the models read it as they were trained, spelt.
                matched, read = also_matched or matched, also_read or read
        long = _long(text)
        if wrapped or long:
            # A sentence alone may read more urgent still.
            sentence, leans, asked = await self._sentences(text, long=long, rasa=rasa)
            if sentence is not None:
                result["sentence"], matched, read = sentence
            if long:
                result["long_leans_urgent"] = leans
                if asked:
                    result["rasa_read"] = asked  # the sentences Rasa was asked, and how it read each
        if matched is not None:
            result["examples"] = matched
        if read is not None:
            result["classifier"] = read
        if self.rules is not None:
            rules = await self.rules()
            hits = [r for r in routing.keyword_hits(rules, text) if r.priority == Priority.URGENT]
            if hits:
                result["rules"] = [r.id for r in hits]
        return result

    async def _read(self, text: str) -> tuple[Reading, Reading]:
        """The examples' match and the classifier's reading, at once (the knowledge base's pool, a worker thread)."""
        matched, read = await asyncio.gather(self._match_examples(text), self._classify(text))
        return matched, read

    async def _searched(self, text: str) -> str | None:
        """The message as the search searches it, when that differs from the message; else None."""
        if self.as_searched is None:
            return None
        try:
            searched = await self.as_searched(text)
        except Exception:  # the knowledge base's trouble is the search's to report
            log.warning("triage: the message as searched is unavailable", exc_info=True)
            return None
        return searched if searched.strip() and searched != " ".join(text.split()) else None

    async def _sentences(
        self, text: str, *, long: bool, rasa: bool = True
    ) -> tuple[tuple[str, dict[str, Any], dict[str, Any]] | None, bool, list[dict[str, Any]]]:
        """The first sentence of several that both models call urgent on its own (it, their
        readings); for a ``long`` message, whether any sentence leans urgent to the three: the
        examples closer to urgent than to not urgent (a margin of 0 or more), the classifier urgent,
        and Rasa reading it as urgent (True when they cannot tell: a message of one sentence, a
        model not loaded, Rasa not answering or not to be asked); and Rasa's readings."""
        if self.examples is None or self.classifier is None or self.embed is None:
            return None, True, []
        sentences = focus.parts(text)[: focus.MAX_PARTS]  # as far as the search reads
        if len(sentences) < 2:
            return None, True, []
        examples, classifier, embed_query = self.examples, self.classifier, self.embed_query
        if embed_query is not None:
            # The search's focus embedded these very sentences: from the same cache, no second pass.
            vectors = await asyncio.gather(*(embed_query(sentence) for sentence in sentences))
        else:
            vectors = await self.embed(sentences)
        matches = [examples.match(vector) for vector in vectors]
        candidates = [(s, m) for s, m in zip(sentences, matches, strict=True) if m.urgent or (long and m.margin >= 0)]
        if not candidates:
            return None, False, []
        reads = await asyncio.to_thread(lambda: [classifier.read(s) for s, _ in candidates])
        urgent = next(
            ((s, m.as_dict(), r) for (s, m), r in zip(candidates, reads, strict=True) if m.urgent and r["urgent"]), None
        )
        leaning = [s for (s, _), r in zip(candidates, reads, strict=True) if r["urgent"]]
        if not long:
            return urgent, bool(leaning), []
        agrees, asked = await self._rasa_agrees(leaning) if rasa else (bool(leaning), [])
        return urgent, agrees, asked

    async def _rasa_agrees(self, sentences: list[str]) -> tuple[bool, list[dict[str, Any]]]:
        """Whether Rasa reads any of these sentences (of a long message, each leaning urgent to the
        examples and the classifier) as urgent (``bot.actions.routing.reads_urgent``, as its
        ``nlu`` signal reads a message); True when Rasa cannot be asked. Also each sentence asked,
        its top intent and its ``urgent_issue`` score, as far as Rasa was asked.

        On the sentences of long e-mails the classifier is sure of nearly everything (a probability
        of 0.95 or more for "I live at 31 Chester Road."), so "leans urgent" was the examples'
        margin alone; Rasa, which learnt from short messages, reads a sentence better than a whole
        e-mail. Development long e-mails: the e-mails with a leaning sentence, 28 of 28 urgent and
        82 of 112 not urgent -> 28 and 52; false urgent 0.304 -> 0.268, urgent recall unchanged."""
        asked: list[dict[str, Any]] = []
        if not sentences or self.parse is None:
            return bool(sentences), asked
        for sentence in sentences:
            try:
                parsed = await self.parse(sentence)
            except Exception:  # Rasa down or restarting: lean as the other two models say
                log.warning("triage: Rasa could not read a sentence of a long message", exc_info=True)
                return True, []
            asked.append(
                {
                    "sentence": sentence,
                    "intent": (parsed.get("intent") or {}).get("name"),
                    "urgent_issue": round(intent_score(parsed, "urgent_issue"), 4),
                }
            )
            if reads_urgent(parsed):
                return True, asked
        return False, asked


def _long(text: str) -> bool:
    """Longer than the classifier reads whole."""
    return len(text.split()) > urgency.MAX_WORDS


def _more_urgent_match(one: Reading, other: Reading) -> Reading:
    if one is None or other is None:
        return one or other
    return other if other["margin"] > one["margin"] else one


def _more_urgent_read(one: Reading, other: Reading) -> Reading:
    if one is None or other is None:
        return one or other
    return other if other["probability"] > one["probability"] else one
