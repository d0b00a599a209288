"""`relay queue list | show ID | retry [ID] | delete ID`: the operator's view of the queue.

These open the configured store (the SQLite file or the PostgreSQL database)
next to a running relay: a retry or delete is one more writer among the relay's
own, and a delivery worker picks a retried copy up on its next poll, within a
second. ID is a copy id (a number, as
`list` shows) or a message id (all of that message's queued copies).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from relay.core.config import load_config
from relay.core.models import Copy
from relay.core.store import Store, StoreUnavailable, open_store

BATCH = 500  # copies per retry transaction: the relay's writer is never held for long
PAGE = 1000
BAR_WIDTH = 30
MAX_ID = 128


class QueueError(Exception):
    """What the operator asked for cannot be done (unknown id, store unreachable)."""


def add_config_option(cmd: argparse.ArgumentParser) -> None:
    """--config, as every command that reads the config takes it."""
    cmd.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML config file (default: ./relay.toml if present, else embedded defaults)",
    )


def add_queue_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "list, show, retry or delete queued copies"
    queue = sub.add_parser("queue", help=text, description=text)
    actions = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    helps = {
        "list": "the queued and deferred copies",
        "show": "one copy, or a message and its copies",
        "retry": "try these copies again now (all queued copies without ID)",
        "delete": "drop queued copies without a bounce",
    }
    for name, text in helps.items():
        cmd = actions.add_parser(name, help=text, description=text)
        add_config_option(cmd)
        if name != "list":
            cmd.add_argument(
                "id",
                nargs="?" if name == "retry" else None,
                metavar="ID",
                help="a copy id (a number, as list shows) or a message id (all its copies)",
            )


def run_queue_command(args: argparse.Namespace) -> int:
    """Exit 0 on success, 1 when the ID matches nothing (ConfigError goes to the caller)."""
    config = load_config(args.config)
    try:
        return asyncio.run(_run(open_store(config.store), args))
    except (QueueError, StoreUnavailable) as exc:
        print(f"relay queue: {exc}", file=sys.stderr)
        return 1


async def _run(store: Store, args: argparse.Namespace) -> int:
    await store.open()
    try:
        action = args.queue_command
        if action == "list":
            return await list_queue(store, sys.stdout)
        if action == "show":
            return await show(store, args.id, sys.stdout)
        if action == "retry" and args.id is None:
            return await retry_all(store, sys.stderr)
        ids = await resolve(store, args.id)
        if action == "retry":
            print(f"retrying {await store.retry_now(ids)} copies now")
        else:
            print(f"deleted {await store.delete_queued(ids)} copies")
        return 0
    finally:
        await store.close()


def when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _who(copy: Copy) -> str:
    return copy.recipient or ",".join(copy.rcpt_tos)


async def queued_pages(store: Store) -> list[list[Copy]]:
    """The whole queue, page by page (ids only grow, so a page never repeats)."""
    pages: list[list[Copy]] = []
    after = 0
    while page := await store.list_queue(after, PAGE):
        pages.append(page)
        after = page[-1].id
    return pages


async def list_queue(store: Store, out: TextIO) -> int:
    out.write(f"{'COPY':>8}  {'MESSAGE':<20}  {'STATE':<8} {'TRIES':>5}  {'NEXT':<20}  RECIPIENT\n")
    total = 0
    for page in await queued_pages(store):
        for c in page:
            out.write(
                f"{c.id:>8}  {c.message_id:<20}  {c.state:<8} {c.attempts:>5}  "
                f"{when(c.next_attempt_at):<20}  {_who(c)}\n"
            )
            if c.last_reply:
                out.write(f"{'':>10}{c.last_reply[:200]}\n")
        total += len(page)
    out.write(f"{total} copies in the queue\n")
    return 0


async def resolve(store: Store, ident: str) -> list[int]:
    """The queued copies an ID names; QueueError when it names none."""
    copies = await _copies(store, ident)
    ids = [c.id for c in copies if c.state in ("queued", "deferred")]
    if not ids:
        raise QueueError(f"{ident}: no queued copy with this id")
    return ids


async def _copies(store: Store, ident: str) -> list[Copy]:
    if len(ident) > MAX_ID:
        raise QueueError("ID is too long")
    if ident.isdigit():
        copy = await store.get_copy(int(ident))
        return [] if copy is None else [copy]
    return await store.copies_of(ident)


async def show(store: Store, ident: str, out: TextIO) -> int:
    copies = await _copies(store, ident)
    if not copies:
        raise QueueError(f"{ident}: no such copy or message")
    message = await store.get_message(copies[0].message_id)
    if message is not None:
        out.write(f"message     {message.id}\nfrom        <{message.mail_from}>\n")
        out.write(f"subject     {message.subject}\nreceived    {when(message.received_at)}\n")
    for c in copies:
        bounce = await store.bounce_state(c.id)
        out.write(f"\ncopy        {c.id}\nto          {_who(c)}\nstate       {c.state}\n")
        out.write(f"attempts    {c.attempts}\nlast reply  {c.last_reply or '-'}\n")
        if c.state in ("queued", "deferred"):
            out.write(f"next try    {when(c.next_attempt_at)}\n")
        out.write(f"queue id    {c.queue_id or '-'}\ndelivered   {when(c.delivered_at)}\n")
        if bounce is not None:
            out.write(f"bounce      {bounce}\n")
    return 0


async def retry_all(store: Store, bar: TextIO) -> int:
    """Every queued copy due now, in batches, with a progress bar on stderr."""
    ids = [c.id for page in await queued_pages(store) for c in page]
    if not ids:
        print("nothing to retry: no copy is queued or deferred")
        return 0
    done = retried = 0
    draw(bar, 0, len(ids))
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        retried += await store.retry_now(batch)
        done += len(batch)
        draw(bar, done, len(ids))
    bar.write("\n")
    print(f"retrying {retried} copies now")
    return 0


def draw(out: TextIO, done: int, total: int) -> None:
    """[#####.....] 50% 5/10 on one line, redrawn in place."""
    filled = BAR_WIDTH if total == 0 else BAR_WIDTH * done // total
    percent = 100 if total == 0 else 100 * done // total
    out.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}% {done}/{total}")
    out.flush()
