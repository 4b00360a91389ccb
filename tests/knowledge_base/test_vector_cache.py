"""``TextCache``: a text another thread is computing is waited for, not computed twice
(knowledge_base/vector_cache.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from knowledge_base.vector_cache import TextCache

WAIT = 30  # seconds: only ever reached when the code under test is broken


class GatedCompute:
    """Lengths of texts, recording each call; a call containing ``gated`` blocks until released."""

    def __init__(self, gated: str, *, fail: bool = False) -> None:
        self.gated = gated
        self.fail = fail
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            self.calls.append(list(texts))
        if self.gated in texts and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(WAIT)
            if self.fail:
                raise RuntimeError("the model failed")
        return [len(text) for text in texts]

    def called_with(self, texts: list[str]) -> bool:
        with self._lock:
            return texts in self.calls


def _in_thread(target: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = target()
        except Exception as err:  # handed to the test
            result["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _wait(predicate: Callable[[], bool]) -> None:
    for _ in range(WAIT * 100):
        if predicate():
            return
        threading.Event().wait(0.01)
    raise AssertionError("never happened")


def _meet(compute: GatedCompute, cache: TextCache[int]) -> tuple[dict[str, object], dict[str, object]]:
    """A first thread computes "shared sentence" (held by ``compute``); meanwhile a second asks for
    it and for "its own", and has computed its own when the first is let go. Both threads' results."""
    first, first_result = _in_thread(lambda: cache.values(["shared sentence"]))
    assert compute.entered.wait(WAIT)
    second, second_result = _in_thread(lambda: cache.values(["shared sentence", "its own"]))
    # The second computes what nobody else is computing, then waits for the first's.
    _wait(lambda: compute.called_with(["its own"]))
    compute.release.set()
    first.join(WAIT)
    second.join(WAIT)
    return first_result, second_result


def test_a_text_being_computed_is_waited_for_not_computed_again() -> None:
    compute = GatedCompute("shared sentence")
    first, second = _meet(compute, TextCache(compute, max_cost=100))
    assert first["value"] == {"shared sentence": 15}
    assert second["value"] == {"shared sentence": 15, "its own": 7}
    assert compute.calls == [["shared sentence"], ["its own"]]


def test_when_the_other_thread_fails_the_waiting_one_computes_it_itself() -> None:
    compute = GatedCompute("shared sentence", fail=True)
    cache: TextCache[int] = TextCache(compute, max_cost=100)
    first, second = _meet(compute, cache)
    assert isinstance(first["error"], RuntimeError)
    assert second["value"] == {"shared sentence": 15, "its own": 7}
    assert compute.calls == [["shared sentence"], ["its own"], ["shared sentence"]]
    assert cache.values(["shared sentence"]) == {"shared sentence": 15}  # kept by the second
    assert len(compute.calls) == 3


def test_many_threads_asking_for_overlapping_texts_compute_each_once() -> None:
    calls: list[list[str]] = []
    lock = threading.Lock()

    def compute(texts: Sequence[str]) -> list[int]:
        with lock:
            calls.append(list(texts))
        threading.Event().wait(0.001 * len(texts))  # the model's time, so that threads overlap
        return [len(text) for text in texts]

    cache: TextCache[int] = TextCache(compute, max_cost=10_000)
    texts = [f"sentence {n}" for n in range(60)]
    asks = [texts[start : start + 25] for start in range(0, 36, 5)] * 3
    started = threading.Barrier(len(asks), timeout=WAIT)

    def ask(wanted: list[str]) -> dict[str, int]:
        started.wait()
        return cache.values(wanted)

    threads = [_in_thread(lambda wanted=wanted: ask(wanted)) for wanted in asks]
    for thread, _ in threads:
        thread.join(WAIT)
    for (_, result), wanted in zip(threads, asks, strict=True):
        assert result["value"] == {text: len(text) for text in wanted}
    computed = [text for call in calls for text in call]
    assert sorted(computed) == sorted(texts)  # each text once, however the threads met


@pytest.mark.parametrize("cost", [1, 3])
def test_values_still_computes_what_is_missing_in_one_call(cost: int) -> None:
    calls: list[list[str]] = []

    def compute(texts: Sequence[str]) -> list[int]:
        calls.append(list(texts))
        return [len(text) for text in texts]

    cache: TextCache[int] = TextCache(compute, max_cost=100, cost=lambda _value: cost)
    assert cache.values(["a", "bb", "a"]) == {"a": 1, "bb": 2}
    assert cache.values(["bb", "ccc"]) == {"bb": 2, "ccc": 3}
    assert calls == [["a", "bb"], ["ccc"]]
