"""The maildir: upstream writes readable .eml files, atomically, into PATH/new."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import shutil
import stat
from pathlib import Path

import pytest

from relay.core.config import ConfigError, UpstreamConfig
from relay.delivery.upstream import open_upstream

MESSAGE = (
    b"From: Alice <a@example.com>\r\nTo: b@example.net\r\nSubject: Hello\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Grüße\r\n".encode()
)


async def test_each_copy_is_an_eml_file(tmp_path: Path) -> None:
    outbox = tmp_path / "out" / "box"  # created as needed
    upstream = open_upstream(UpstreamConfig(url=f"maildir:{outbox}"))
    outcomes = await asyncio.gather(
        *(upstream.send("a@example.com", [f"r{i}@example.net"], MESSAGE) for i in range(5))
    )
    await upstream.close()
    files = sorted((outbox / "new").iterdir())
    assert len(files) == 5
    assert {o.status for o in outcomes} == {"delivered"}
    assert {o.queue_id for o in outcomes} == {f.name for f in files}
    assert list((outbox / "tmp").iterdir()) == []  # nothing half-written left behind
    recipients = set()
    for path in files:
        assert path.suffix == ".eml"
        _, _, rest = path.read_bytes().partition(b"\r\nFrom: ")
        assert b"From: " + rest == MESSAGE  # the relayed bytes, after the delivery lines
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert parsed["Subject"] == "Hello"
        assert parsed["Return-Path"] == "<a@example.com>"
        assert parsed["Delivered-To"] == parsed["X-Original-To"]
        recipients.add(parsed["Delivered-To"])
    assert recipients == {f"r{i}@example.net" for i in range(5)}


async def test_delivery_lines_as_postfix_writes_them(tmp_path: Path) -> None:
    upstream = open_upstream(UpstreamConfig(url=f"maildir:{tmp_path}"))
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    assert (tmp_path / "new" / outcome.queue_id).read_bytes() == (
        b"Return-Path: <a@example.com>\r\n"
        b"X-Original-To: b@example.net\r\n"
        b"Delivered-To: b@example.net\r\n" + MESSAGE
    )
    bare_lf = MESSAGE.replace(b"\r\n", b"\n")
    outcome = await upstream.send("", ["c@example.net"], bare_lf)  # a bounce: empty sender
    assert (tmp_path / "new" / outcome.queue_id).read_bytes() == (
        b"Return-Path: <>\nX-Original-To: c@example.net\nDelivered-To: c@example.net\n" + bare_lf
    )


async def test_a_shared_copy_is_one_file_per_recipient(tmp_path: Path) -> None:
    upstream = open_upstream(UpstreamConfig(url=f"maildir:{tmp_path}"))
    outcome = await upstream.send("a@example.com", ["b@example.net", "c@example.net"], MESSAGE)
    assert outcome.status == "delivered"
    assert outcome.reply.endswith(" and 1 more")
    files = list((tmp_path / "new").iterdir())
    assert outcome.queue_id in {f.name for f in files}
    delivered_to = {
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Delivered-To"]
        for f in files
    }
    assert delivered_to == {"b@example.net", "c@example.net"}


async def test_a_line_break_never_gets_into_the_delivery_lines(tmp_path: Path) -> None:
    upstream = open_upstream(UpstreamConfig(url=f"maildir:{tmp_path}"))
    outcome = await upstream.send("a@example.com", ["b@x.net\r\nBcc: e@x.net"], MESSAGE)
    data = (tmp_path / "new" / outcome.queue_id).read_bytes()
    assert b"\r\nBcc:" not in data
    assert b"Delivered-To: b@x.netBcc: e@x.net\r\n" in data


async def test_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    upstream = open_upstream(UpstreamConfig(url="maildir:./outbox"))
    outcome = await upstream.send("", ["b@example.net"], MESSAGE)
    assert outcome.status == "delivered"
    assert [p.name for p in (tmp_path / "outbox" / "new").iterdir()] == [outcome.queue_id]


async def test_write_failure_is_temporary(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    upstream = open_upstream(UpstreamConfig(url=f"maildir:{outbox}"))
    shutil.rmtree(outbox / "new")
    (outbox / "new").write_text("a file where the directory should be")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    assert outcome.status == "temporary"
    assert str(outbox) in outcome.reply
    assert list((outbox / "tmp").iterdir()) == []


def test_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"upstream\.url"):
        open_upstream(UpstreamConfig(url=f"maildir:{blocker}/outbox"))


async def test_outbox_folders_are_created_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: a plain mkdir would give 0755
    try:
        outbox = tmp_path / "outbox"
        upstream = open_upstream(UpstreamConfig(url=f"maildir:{outbox}"))
        outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
        await upstream.close()
    finally:
        os.umask(old)
    assert outcome.status == "delivered"
    for folder in (outbox, outbox / "tmp", outbox / "new", outbox / "cur"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_a_failed_recipient_file_takes_back_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = open_upstream(UpstreamConfig(url=f"maildir:{tmp_path}"))
    rename = os.rename
    calls = []

    def second_fails(source: Path, target: Path) -> None:
        """The disk fills up as the second recipient's file goes into new/."""
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        rename(source, target)

    monkeypatch.setattr(os, "rename", second_fails)
    outcome = await upstream.send("a@example.com", ["b@example.net", "c@example.net"], MESSAGE)
    assert outcome.status == "temporary"
    assert len(calls) == 2
    assert list((tmp_path / "new").iterdir()) == []  # a retry writes both again, once each
    assert list((tmp_path / "tmp").iterdir()) == []
