"""The audit commands that read or change the stored log: `query`, `prune`, `report`; and
opening the store the settings name."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.files import write_private
from gateway.settings import Settings, load_settings


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _store_url(args: argparse.Namespace) -> str:
    url: str = args.store or settings_of(args).audit_store
    return url


def with_store(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from gateway.audit.setup import open_store
    from gateway.audit.store import StoreUnavailable

    async def run() -> int:
        store = open_store(_store_url(args))
        try:
            await store.open()
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


COLUMNS = ["time", "tenant", "requested_model", "decision", "status", "deployment", "country"]


def _row(record: dict[str, Any]) -> list[str]:
    dep = record.get("deployment") or {}
    return [
        str(record.get("time")),
        str(record.get("tenant")),
        str(record.get("requested_model")),
        str(record.get("decision")),
        str(record.get("status")),
        str(dep.get("id", "-")),
        str(dep.get("inference_country", "-")),
    ]


def run_query(args: argparse.Namespace) -> int:
    from gateway.audit.query import RecordFilter, requests_of
    from gateway.audit.store import Query

    async def work(store: Any) -> int:
        query = Query(tenant=args.tenant, since=args.since, until=args.until)
        found = requests_of(orjson.loads(r.body) for r in await store.read(query))
        wanted = RecordFilter.from_mapping(vars(args))
        found = [r for r in found if wanted.matches(r)][: args.limit]
        if args.format == "json":
            for record in found:
                sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
        elif args.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(COLUMNS)
            writer.writerows(_row(r) for r in found)
            sys.stdout.write(buffer.getvalue())
        else:
            rows = [COLUMNS, *(_row(r) for r in found)]
            widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
            for row in rows:
                print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            print(f"{len(found)} record(s)")
        return 0

    return with_store(args, work)


def run_prune(args: argparse.Namespace) -> int:
    from gateway.audit.merkle import Frontier

    before: str = args.before

    async def work(store: Any) -> int:
        for log_id in await store.log_ids():
            base = await store.base(log_id)
            eligible = [
                cp
                for cp in await store.checkpoints(log_id)
                if cp.time < before and cp.size > base.size
            ]
            if not eligible:
                print(f"{log_id}: nothing to prune")
                continue
            target = max(eligible, key=lambda cp: cp.size)
            frontier: Frontier = base.copy()
            for leaf in (await store.leaves(log_id))[: target.size - base.size]:
                frontier.append(leaf)
            if frontier.root().hex() != target.root:
                print(f"error: {log_id}: stored records do not match checkpoint {target.size}")
                return 1
            deleted = await store.prune(log_id, target.size, frontier)
            print(f"{log_id}: removed {deleted} record(s) below {target.size}; checkpoints kept")
        return 0

    return with_store(args, work)


def run_report(args: argparse.Namespace) -> int:
    from gateway.audit.report import build_report, render_html, render_text
    from gateway.audit.signing import load_public_key

    key = load_public_key(args.public_key.read_bytes()) if args.public_key else None

    revision = _revision_in_force(args)

    async def work(store: Any) -> int:
        report = await build_report(
            store,
            args.since,
            args.until,
            key,
            tenant=args.tenant,
            log_ids=args.log_id or None,
            revision_in_force=revision,
        )
        print(render_text(report))
        if args.html:
            write_private(args.html, render_html(report).encode())
            print(f"wrote {args.html}")
        return 0

    return with_store(args, work)


def _revision_in_force(args: argparse.Namespace) -> str | None:
    """The revision of the policy directory in the settings, if it loads."""
    from gateway.policy.load import PolicyLoadError, load_policy_dir

    try:
        return load_policy_dir(settings_of(args).policy_dir).revision
    except (PolicyLoadError, OSError):
        return None
