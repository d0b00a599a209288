"""`relay migrate` and `relay store-copy FROM TO`: the store's schema and its move to PostgreSQL.

A relay on SQLite migrates its file when it opens it; on PostgreSQL, which
several nodes share, the schema changes only when an operator runs `relay
migrate` (a node started on an older schema refuses with one line saying so).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from relay.core.config import StoreConfig, load_config
from relay.core.store import StoreUnavailable, migrate_store

EXIT_FAILED = 1
URL_SCHEMES = ("postgresql://", "postgres://")


def add_store_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "bring the store's schema up to this relay's (PostgreSQL: run once per upgrade)"
    migrate = sub.add_parser("migrate", help=text, description=text)
    migrate.add_argument("--config", type=Path, default=None, metavar="FILE",
                         help="TOML config file whose [store] to migrate")  # fmt: skip
    where = "this store instead of the config's (a postgresql:// URL or a file)"
    migrate.add_argument("--store", default=None, metavar="URL|PATH", help=where)
    text = "copy a SQLite store into an empty PostgreSQL database, ids and all"
    copy = sub.add_parser("store-copy", help=text, description=text)
    copy.add_argument("source", type=Path, metavar="FROM", help="the SQLite store file")
    copy.add_argument("target", metavar="TO", help="postgresql://user@host:port/database")
    copy.add_argument("--quiet", action="store_true", help="no progress bar")


def run_migrate(args: argparse.Namespace) -> int:
    config = load_config(args.config).store
    if args.store:
        config = _store_at(config, args.store)
    try:
        before, after = asyncio.run(migrate_store(config))
    except StoreUnavailable as exc:
        print(f"relay migrate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if before == after:
        print(f"the store's schema is at version {after} already: nothing to do")
    else:
        print(f"the store's schema went from version {before} to {after}")
    return 0


def run_store_copy(args: argparse.Namespace) -> int:
    from relay.core.store.copying import check_copy, copy_store, count_rows  # psycopg: here

    target = str(args.target)
    if not target.startswith(URL_SCHEMES):
        print("relay store-copy: TO must be a postgresql:// URL", file=sys.stderr)
        return EXIT_FAILED
    try:
        before, after = asyncio.run(migrate_store(StoreConfig(url=target)))
        if before == 0:
            print(f"the new database got the relay's schema (version {after})")
        check_copy(args.source, target)
        total = count_rows(args.source)
        with tqdm(total=total, unit="rows", disable=args.quiet, file=sys.stderr) as bar:

            def advance(rows: int) -> None:
                bar.update(rows)

            report = copy_store(args.source, target, advance)
    except StoreUnavailable as exc:
        print(f"relay store-copy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    width = max(len(table) for table in report.counts)
    print(f"{'table':<{width}}  {'SQLite':>10}  {'PostgreSQL':>10}")
    for table, (lite, pg) in report.counts.items():
        mark = "" if lite == pg else "  MISMATCH"
        print(f"{table:<{width}}  {lite:>10}  {pg:>10}{mark}")
    if not report.matches:
        print("relay store-copy: the counts differ; the database is not usable", file=sys.stderr)
        return EXIT_FAILED
    print("every table has the same number of rows on both sides: set [store] url to use it")
    return 0


def _store_at(config: StoreConfig, where: str) -> StoreConfig:
    if where.startswith(URL_SCHEMES):
        return replace(config, url=where)
    return replace(config, url="", path=where)
