"""Coverage-guided fuzzing of rewrite_message (atheris), run by hand: `make fuzz`.

Checks the rewriter's promises on any bytes: it never fails internally (a
"rewrite failed" note is the catch-all swallowing a bug), and what it returns
either is the input or parses to the same MIME structure with every leaf other
than a text/html one byte-identical and no line made longer than 998 octets.

The rewriter must be imported inside atheris.instrument_imports(), and all of
its modules at once: relay.rewrite imports mime/html lazily, so instrumenting
after `import relay.rewrite` left the real work unseen (coverage stuck at ~40).
The first input byte picks a mode: the rest is a whole message, or HTML wrapped
into a message in one of several charsets and transfer encodings, so the fuzzer
reaches the HTML scanner and the codecs from an empty corpus.
Without atheris (it needs a wheel for this Python), a seeded random loop runs instead.
"""

from __future__ import annotations

import base64
import email
import quopri
import random
import sys
from email.message import Message
from email.policy import compat32
from typing import Any

try:
    import atheris
except ImportError:  # the pure-python loop below still runs
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["relay"]):
        import relay.rewrite.headers
        import relay.rewrite.html
        import relay.rewrite.links
        import relay.rewrite.mime
        import relay.rewrite.transfer  # noqa: F401 - imported to be instrumented
from relay.rewrite import RewritePlan, rewrite_message

PLAN = RewritePlan(
    opens=True,
    clicks=True,
    pixel_url="https://t.test/o/p.gif",
    link_url=lambda index, url: f"https://t.test/c/{index}",
)
SEED = (
    b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b'\r\n<a href=3D"https://x.test/?a=3D1&amp;b">x</a></body>\r\n--b--\r\n'
)
CHARSETS = ("utf-8", "us-ascii", "iso-8859-1", "windows-1252", "shift_jis", "iso-2022-jp")
ENCODINGS = ("8bit", "7bit", "quoted-printable", "base64")
MODES = 1 + len(CHARSETS) * len(ENCODINGS)


def wrap(html: bytes, mode: int) -> bytes:
    """html as the HTML part of a multipart/alternative message (mode >= 1)."""
    charset = CHARSETS[(mode - 1) // len(ENCODINGS)]
    cte = ENCODINGS[(mode - 1) % len(ENCODINGS)]
    if cte == "quoted-printable":
        body = quopri.encodestring(html)
    elif cte == "base64":
        body = base64.encodebytes(html)
    else:
        body = html
    head = f"Content-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    return SEED[: SEED.index(b"--b\r\nContent-Type: text/html")] + (
        b"--b\r\n" + head.encode() + body + b"\r\n--b--\r\n"
    )


def message_for(data: bytes) -> bytes:
    if not data:
        return data
    mode = data[0] % MODES
    return data[1:] if mode == 0 else wrap(data[1:], mode)


def _leaves(raw: bytes) -> list[Message]:
    return list(email.message_from_bytes(raw, policy=compat32).walk())


def _longest(raw: bytes) -> int:
    return max(len(line.rstrip(b"\r")) for line in raw.split(b"\n"))


def check(data: bytes) -> None:
    raw = message_for(data)
    result = rewrite_message(raw, PLAN)  # must not raise
    failed = [note for note in result.notes if note.startswith("rewrite failed")]
    assert not failed, failed  # the catch-all hid an exception: a bug
    if result.raw == raw:
        assert result.parts_rewritten == 0
        return
    assert result.parts_rewritten > 0
    before, after = _leaves(raw), _leaves(result.raw)
    assert [p.get_content_type() for p in before] == [p.get_content_type() for p in after]
    for old, new in zip(before, after, strict=True):
        if old.is_multipart() or old.get_content_type() != "text/html":
            assert old._payload == new._payload or old.is_multipart(), "a leaf changed"
    if _longest(raw) <= 998:
        assert _longest(result.raw) <= 998, "a line grew past 998 octets"


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few byte-level edits: enough to find crashes without atheris."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(buf) + 1)
        choice = rng.random()
        if choice < 0.4 and buf:
            del buf[at : at + rng.randint(1, 16)]
        elif choice < 0.8:
            buf[at:at] = rng.choice([b"<", b">", b'"', b"=", b"\r\n", b"--b", b"\x00", b"=3D"])
        else:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


def fallback(runs: int = 20000) -> None:
    rng = random.Random(0)  # noqa: S311 - reproducible mutations, not secrets
    html = SEED[SEED.index(b"<a href") :].replace(b"=3D", b"=")
    for _ in range(runs):
        check(b"\x00" + mutate(rng, SEED))
        check(bytes([rng.randrange(1, MODES)]) + mutate(rng, html))
    print(f"fuzz_rewrite: {2 * runs} mutated messages, no failure (pure-python loop)")


def main(fuzzer: Any = atheris) -> None:
    if fuzzer is None:
        fallback()
        return
    fuzzer.Setup(sys.argv, check)
    fuzzer.Fuzz()


if __name__ == "__main__":
    main()
