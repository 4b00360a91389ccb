"""Hypothesis strategies for hostile input to the channels (no tests here).

What a careless or malicious client can put in a webhook body or a chat
frame: JSON text that a strict parser refuses (``NaN``, ``Infinity``,
``1e999``, integers beyond 64 bits or of thousands of digits, escaped lone
surrogates, nesting around and far beyond 32 levels, trailing garbage),
bytes that are not UTF-8, form bodies with broken escapes, and valid
payloads with any field dropped or replaced by a value of the wrong type.

JSON is written by ``render`` rather than ``json.dumps`` so that tokens no
encoder produces (``Raw``) and lone surrogates, escaped or raw, can be put
anywhere in a document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, drawn in proportion to its weight (``st.one_of``
    draws its branches evenly, and counts a repeated branch once)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


@dataclass(frozen=True)
class Raw:
    """A token written into JSON text as it is (``NaN``, ``1e999``, ``01``)."""

    text: str


# Characters that have broken text handling somewhere: controls, NUL, RTL and
# bidi overrides, zero-width and byte-order marks, line separators, combining
# marks, astral symbols, and lone surrogates (valid in JSON escapes only).
SPECIAL_CHARACTERS = [
    "\x00", "\x1b", "\x7f", "\x85", "\u200b", "\u200e", "\u200f", "\u202e", "\u2066", "\u2028",
    "\ufeff", "\ufffd", "\uffff", "\u0308", "\U0001f600", "\U0010ffff", "\ud800", "\udfff", "\\", '"',
]  # fmt: skip
# Numbers Python's parser takes (some of them are not JSON all the same) ...
NUMBER_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "9" * 20, "-" + "9" * 20, "1" * 5000,
    "0." + "0" * 400 + "1", "-0", "1e-999", str(2**63), str(-(2**63) - 1),
]  # fmt: skip
# ... and numbers it refuses.
BAD_NUMBER_TOKENS = ["-NaN", "01", "1.", ".5", "+1", "0x10", "1_000"]
# Around the limits the hub enforces: a webchat message (4,000), the fake
# channel (10,000), Slack and stored text (40,000).
LONG_LENGTHS = [4_001, 10_001, 40_001, 100_000]

characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co", "Cs"]),
    st.sampled_from(SPECIAL_CHARACTERS),
)
short_texts = st.text(characters, max_size=24)
texts = st.one_of(
    short_texts,
    st.sampled_from(["", " ", "\t\n\r ", "\u3000", "\u200b", "\u202e", "null", "0"]),
    st.builds(lambda char, n: char * n, st.sampled_from(["a", "é", "\u202e", "\U0001f600", " "]), st.sampled_from(LONG_LENGTHS)),
)  # fmt: skip
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NUMBER_TOKENS).map(Raw),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(short_texts, children, max_size=4),
    ),
    max_leaves=12,
)


def nested(depth: int, inner: Any = None) -> Any:
    """``inner`` wrapped in ``depth`` alternating lists and objects."""
    value = inner
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep_values = st.builds(nested, st.sampled_from([31, 32, 33, 64, 1_000, 20_000]), leaves)


def render(value: Any, *, ensure_ascii: bool = True) -> str:
    """``value`` as JSON text; ``Raw`` tokens as they are; lone surrogates
    escaped (``ensure_ascii``) or raw. Iterative: depth is no limit."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(item.text)
        elif isinstance(item, str):
            out.append(json.dumps(item, ensure_ascii=ensure_ascii))
        elif isinstance(item, dict):
            parts: list[Any] = [Raw("{")]
            for index, (key, child) in enumerate(item.items()):
                parts += [Raw(","), key, Raw(":"), child] if index else [key, Raw(":"), child]
            stack.extend(reversed([*parts, Raw("}")]))
        elif isinstance(item, list):
            parts = [Raw("[")]
            for index, child in enumerate(item):
                parts += [Raw(","), child] if index else [child]
            stack.extend(reversed([*parts, Raw("]")]))
        else:
            out.append(json.dumps(item))
    return "".join(out)


def encode(text: str) -> bytes:
    """UTF-8, with any raw surrogate encoded as the invalid 3-byte sequence it would be."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def json_text(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> str:
    """JSON text of a value drawn from ``values``, sometimes damaged."""
    return _damaged(draw, render(draw(values), ensure_ascii=draw(st.booleans())))


def _damaged(draw: st.DrawFn, text: str) -> str:
    damage = draw(st.sampled_from(["none"] * 12 + ["truncate", "trailing", "bom", "whitespace", "bad-number"]))
    if damage == "bad-number":
        text = f"[{text}, {draw(st.sampled_from(BAD_NUMBER_TOKENS))}]"
    elif damage == "truncate" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif damage == "trailing":
        text += draw(st.sampled_from(["}", "]", ",", " x", "\x00", "{}"]))
    elif damage == "bom":
        text = "\ufeff" + text
    elif damage == "whitespace":
        text = f"\n\t {text} \r\n"
    return text


KEEP_WEIGHT = 6


def mutated(template: Any) -> st.SearchStrategy[Any]:
    """``template`` (a valid payload) with fields kept, dropped, replaced by
    any JSON value, or (nested objects and lists) mutated in turn; sometimes
    with extra fields."""
    if isinstance(template, dict):
        # Mostly kept, so that most drawn payloads get past the first check
        # and the damage lands deeper.
        fields = {
            key: weighted((KEEP_WEIGHT, st.just(value)), (1, mutated(value)), (1, json_values), (1, st.just(_DROP)))
            for key, value in template.items()
        }
        extras = st.dictionaries(short_texts, json_values, max_size=2)
        return st.builds(_merge, st.fixed_dictionaries(fields), extras)
    if isinstance(template, list) and template:
        return st.lists(mutated(template[0]), max_size=3)
    if isinstance(template, str):  # the right type, hostile text
        return st.one_of(st.just(template), texts, st.builds(lambda a, b: a + template + b, short_texts, short_texts))
    return st.one_of(st.just(template), json_values)


_DROP = object()


def _merge(fields: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in fields.items() if value is not _DROP}
    return {**extras, **kept}


def json_bodies(*templates: Any) -> st.SearchStrategy[bytes]:
    """Bodies for a JSON webhook: its valid payloads mutated, any JSON,
    nesting around the limit, and raw bytes that are not JSON or not UTF-8."""
    values = weighted(*[(4, mutated(t)) for t in templates], (1, json_values), (1, deep_values))
    return weighted((4, json_text(values).map(encode)), (1, not_json))


not_json = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\xff\xfe{}", b"\xc0\x80", b'{"a": "\xed\xa0\x80"}', b"\x00" * 8, b"[" * 100_000]),
    short_texts.map(encode),
)


@st.composite
def form_text(draw: st.DrawFn, fields: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A form body of ``fields``; values that are not strings are written as
    JSON (as Slack's ``payload`` is); sometimes with broken percent escapes."""
    drawn = draw(fields)
    body = urlencode(
        {
            key: value if isinstance(value, str) else _damaged(draw, render(value, ensure_ascii=draw(st.booleans())))
            for key, value in drawn.items()
        },
        encoding="utf-8",
        errors="surrogatepass",
    ).encode()
    damage = draw(st.sampled_from(["none"] * 6 + ["bad-escape", "raw-bytes", "separators"]))
    if damage == "bad-escape":
        body += draw(st.sampled_from([b"&x=%ZZ", b"&x=%", b"&%FF%FE=%C0%80", b"&payload=%ED%A0%80"]))
    elif damage == "raw-bytes":
        body += b"&x=" + draw(st.binary(max_size=16))
    elif damage == "separators":
        body = body.replace(b"&", draw(st.sampled_from([b";", b"&&", b"\n"])))
    return body


def form_bodies(*templates: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bodies for a form-encoded webhook: its fields mutated (any value, any
    JSON), any fields, and raw bytes."""
    values = weighted(*[(4, mutated(t)) for t in templates], (1, st.dictionaries(short_texts, json_values, max_size=4)))
    return weighted((4, form_text(values.filter(lambda v: isinstance(v, dict)))), (1, not_json))


def payload_form(*templates: Any) -> st.SearchStrategy[bytes]:
    """Slack's interactivity: a form whose ``payload`` field is JSON text."""
    values = weighted(*[(4, mutated(t)) for t in templates], (1, json_values), (1, deep_values))
    return weighted(
        (3, st.builds(lambda text: b"payload=" + quote(text, errors="surrogatepass").encode(), json_text(values))),
        (1, form_text(st.fixed_dictionaries({"payload": values}))),
        (1, not_json),
    )
