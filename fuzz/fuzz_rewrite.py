"""Coverage-guided fuzzing of rewrite_message (atheris), run by hand: `make fuzz`.

Checks the rewriter's promises on any bytes: it never raises, and what it
returns either is the input or parses to the same MIME structure. Without
atheris (it needs a wheel for this Python), a seeded random loop runs instead.
"""

from __future__ import annotations

import email
import random
import sys
from email.policy import compat32

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


def check(data: bytes) -> None:
    result = rewrite_message(data, PLAN)  # must not raise
    if result.raw == data:
        return
    before = [p.get_content_type() for p in email.message_from_bytes(data, policy=compat32).walk()]
    after = email.message_from_bytes(result.raw, policy=compat32).walk()
    assert before == [p.get_content_type() for p in after], "structure changed"


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
    for _ in range(runs):
        check(mutate(rng, SEED))
    print(f"fuzz_rewrite: {runs} mutated messages, no failure (pure-python loop)")


def main() -> None:
    try:
        import atheris
    except ImportError:
        fallback()
        return
    atheris.instrument_all()  # coverage of the rewriter, imported above
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
