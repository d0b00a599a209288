"""The fast MAIL/RCPT path parser agrees with aiosmtpd's wherever it answers."""

from __future__ import annotations

from types import SimpleNamespace

from aiosmtpd.smtp import SMTP
from hypothesis import example, given
from hypothesis import strategies as st
from smtp.running import StartRelay, in_thread
from smtp.test_smtp_front import MESSAGE, smtplib_send

from relay.smtp.addresses import plain_path

PIECES = ["<", ">", "@", ".", "a", "Z", "0", "+", "-", "_", " ", "\t", "(", ")", '"', "\\"]
PIECES += ["[", "]", ":", "é", "SIZE=10", "BODY=8BITMIME", "x@y.z", ",", "%", "!"]


def aiosmtpd_getaddr(arg: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SimpleNamespace(local_part_limit=0), arg)  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(PIECES), max_size=24).map("".join))
@example("<alice@example.com> SIZE=100 BODY=8BITMIME")
@example("<a.b+tag@mail.example.com>")
@example("<a..b@example.com>")
@example("<.a@example.com>")
@example("<a@example.com.>")
@example("<a@example.com>(comment) SIZE=1")
def test_fast_path_agrees_with_aiosmtpd(arg: str) -> None:
    fast = plain_path(arg)
    if fast is not None:
        assert fast == aiosmtpd_getaddr(arg)


def test_the_common_forms_take_the_fast_path() -> None:
    assert plain_path("<alice@example.com>") == ("alice@example.com", "")
    assert plain_path("<a.b+x@mail.example.com>  SIZE=10") == ("a.b+x@mail.example.com", "SIZE=10")
    assert plain_path('<"john doe"@example.com>') is None
    assert plain_path("<>") is None


async def test_plain_quoted_and_odd_paths_through_a_real_session(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    rcpts = ["bob@example.net", '"bob smith"@example.net', "carol+x@mail.example.org"]
    refused = await in_thread(smtplib_send, relay.port, "alice@example.com", rcpts, MESSAGE)
    assert refused == {}
    [(msg, _raw, copies)] = await relay.spooled()
    assert msg.mail_from == "alice@example.com"
    assert msg.rcpt_tos == tuple(rcpts)
    assert sorted(c.recipient or "" for c in copies) == sorted(rcpts)
