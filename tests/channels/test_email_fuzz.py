"""``parse_email`` under generated and mangled MIME (issue #15, "Must show").

Mail is built from parts hypothesis chooses (charsets real, misspelt and
invented; transfer encodings applied, broken or lied about; nested
multiparts with their boundaries sometimes missing; headers many, huge or
8-bit; HTML that is not) and then mangled: cut short anywhere, bytes
flipped or inserted, line ends changed. The properties:

- ``parse_email`` returns a message or a bounce, or raises ``InvalidInput``
  with a reason; nothing else, ever;
- a message has readable text: non-empty, valid Unicode, accepted as it is by
  the hub's own check where messages enter (``check_inbound``: NFC, no lone
  surrogate, every field within its stored length), with a sender that is an
  e-mail address and an ``external_id`` that dedups it.
"""

from __future__ import annotations

import base64
import os
import quopri

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email.addresses import SupportAddresses
from channels.email.bounce import Bounce
from channels.email.parse import ParsedMail, parse_email
from hub.errors import InvalidInput
from hub.inputs import check_email, check_inbound
from tests.channels.email_support import REPLY_SECRET, SUPPORT

ADDRESSES = SupportAddresses(SUPPORT, REPLY_SECRET.encode())
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("HUB_FUZZ_EXAMPLES", "400")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CHARSETS = st.sampled_from(
    ["utf-8", "UTF-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "gb2312", "utf-16", "us-ascii",
     "unknown-8bit", "x-unknown", "utf8", "latin1", "no-such-charset", "", '"utf-8"', "utf-\x00", "ascii\xff"]
)  # fmt: skip
ENCODINGS = st.sampled_from(["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", ""])
TEXT_TYPES = st.sampled_from(["text/plain", "text/html", "text/calendar", "text/enriched", "text/x-weird"])
OTHER_TYPES = st.sampled_from(["image/png", "application/pdf", "application/octet-stream", "message/rfc822",
                               "message/delivery-status", "text/rfc822-headers", "bogus", "image/"])  # fmt: skip
WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
HTML = st.sampled_from(
    ["<p>Hello <b>there</b></p>", "<div>" * 3000 + "deep", "<table><tr><td>a", "<!-- unclosed", "<script>x()</script>",
     "<p>&#0; &#xD800; &bogus; &amp;</p>", "<a href='javascript:x'>y</a>", "<html><body></body></html>", ""]
)  # fmt: skip
HEADER_NAMES = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Auto-Submitted", "Precedence",
     "List-Id", "Content-Type", "Content-Disposition", "Date", "Delivered-To", "X-Custom", "Reply-To", "Sender"]
)  # fmt: skip
HEADER_VALUES = st.one_of(
    WORDS.map(lambda s: s.replace("\r", " ").replace("\n", " ")),
    st.sampled_from(
        [
            "=?utf-8?q?broken=ZZ?=",
            "=?no-such?b?aGVsbG8=?=",
            "<a@b.c> <d@e.f>",
            '"Doe, J" <j@x.example>',
            "<>",
            "@",
            "a@b@c",
            "=?utf-8?b?" + "A" * 999 + "?=",
            "<" * 500,
            "(comment (nested (deep)))",
            "undisclosed-recipients:;",
        ]
    ),
    st.integers(1000, 200_000).map(lambda n: "x" * n),  # huge
)


def encode(body: bytes, encoding: str, lie: bool) -> bytes:
    if lie:  # says one encoding, is another (or none)
        return body
    if encoding == "base64":
        return base64.encodebytes(body)
    if encoding == "quoted-printable":
        return quopri.encodestring(body)
    return body


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    content_type = draw(st.one_of(TEXT_TYPES, OTHER_TYPES))
    charset = draw(CHARSETS)
    encoding = draw(ENCODINGS)
    text = draw(st.one_of(WORDS, HTML)) if content_type.startswith("text/") else draw(WORDS)
    try:
        body = text.encode(charset.strip('"') or "utf-8", "replace")
    except (LookupError, ValueError):
        body = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        body += draw(st.binary(max_size=64))
    headers = f"Content-Type: {content_type}; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n"
    if draw(st.booleans()):
        headers += 'Content-Disposition: attachment; filename="' + draw(WORDS)[:80].replace('"', "") + '"\r\n'
    return headers.encode("utf-8", "surrogatepass") + b"\r\n" + encode(body, encoding, draw(st.booleans()))


@st.composite
def body(draw: st.DrawFn, depth: int = 0) -> bytes:
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(leaf())
    boundary = draw(st.sampled_from(["b1", "==b==", "x" * 70, "", "a b", "--"])) + str(depth)
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report; report-type=delivery-status", "x"]))
    children = draw(st.lists(body(depth + 1), min_size=0, max_size=4))
    out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\npreamble\r\n'.encode()
    for child in children:
        out += f"--{boundary}\r\n".encode() + child + b"\r\n"
    if draw(st.booleans()):  # the closing boundary is often what a truncated mail lacks
        out += f"--{boundary}--\r\n".encode()
    return out


@st.composite
def raw_mail(draw: st.DrawFn) -> bytes:
    headers = [
        (b"From", draw(st.sampled_from([b"Ada <ada@customer.example.org>", b"MAILER-DAEMON@mx.example.org", b""]))),
        (
            b"Message-ID",
            draw(st.sampled_from([b"<m1@customer.example.org>", b"", b"garbage", b"<" + b"x" * 600 + b">"])),
        ),
    ]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(HEADER_NAMES).encode()
        value = draw(HEADER_VALUES).encode("utf-8", "surrogatepass")
        headers.append((name, value))
    if draw(st.booleans()):
        headers = headers * draw(st.integers(2, 50))  # many headers
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers if value)
    return head + b"MIME-Version: 1.0\r\n" + draw(body())


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    raw = draw(raw_mail())
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["truncate", "flip", "insert", "lf", "cr", "nul"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if action == "truncate":
            raw = raw[:at]
        elif action == "flip" and raw:
            raw = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]
        elif action == "insert":
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=32)) + raw[at:]
        elif action == "lf":
            raw = raw.replace(b"\r\n", b"\n")
        elif action == "cr":
            raw = raw.replace(b"\r\n", b"\r")
        else:
            raw = raw[:at] + b"\x00" + raw[at:]
    return raw


def check(raw: bytes) -> None:
    try:
        result = parse_email(raw, addresses=ADDRESSES, envelope_sender="fallback@customer.example.org")
    except InvalidInput as err:
        assert err.message, "a refusal carries its reason"
        return
    if isinstance(result, Bounce):
        report = result.report("email")
        assert report is None or (report.provider_id.startswith("<") and report.status in ("failed", "delivered"))
        return
    assert isinstance(result, ParsedMail)
    message = result.message
    assert isinstance(message.text, str) and message.text.strip(), "always something readable"
    assert check_inbound(message) == message or check_inbound(message).text.strip()
    assert check_email(message.sender) == message.sender
    assert message.external_id and len(message.external_id) <= 500
    message.text.encode("utf-8")  # no lone surrogate


@FUZZ
@given(mangled())
def test_parse_email_never_raises_anything_but_invalid_input(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.binary(max_size=4096))
def test_parse_email_on_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


def test_huge_headers_and_deep_nesting() -> None:
    huge = b"Subject: " + b"x" * 2_000_000 + b"\r\nFrom: ada@customer.example.org\r\n\r\nHello\r\n"
    check(huge)
    many = b"".join(b"X-H%d: v\r\n" % n for n in range(50_000)) + b"From: ada@customer.example.org\r\n\r\nHi\r\n"
    check(many)
    nested = b"From: ada@customer.example.org\r\n"
    for depth in range(500):
        nested += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (depth, depth)
    check(nested + b"Content-Type: text/plain\r\n\r\ndeep\r\n")
    check(b"From: ada@customer.example.org\r\nContent-Type: text/html\r\n\r\n" + b"<div>" * 100_000)
