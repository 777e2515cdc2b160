"""`tarx rag`: list RAG sources, add one, and follow a source's indexing (state, documents and chunks, live)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tarx_console.client.api import TarxClient

POLL_SECONDS = 0.5


class IndexingFailed(Exception):
    """The followed source ended in state `error` (its reason is printed)."""


def add_parser(sub: Any) -> None:
    rag = sub.add_parser("rag", help="RAG sources: list, add, and follow indexing").add_subparsers(
        dest="action", required=True)
    listing = rag.add_parser("list", help="the project's sources with their state and counts")
    listing.add_argument("--json", action="store_true")
    status = rag.add_parser("status", help="a source's indexing state and counts; --follow until it settles")
    status.add_argument("id")
    status.add_argument("--follow", "-f", action="store_true", help="print progress until ready or error")
    status.add_argument("--json", action="store_true")
    add = rag.add_parser("add", help="add a source (it indexes in the background; --follow shows progress)")
    add.add_argument("--name", required=True)
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="inline text")
    what.add_argument("--dir", help="a directory on the runtime's disk (watched: edits re-index)")
    what.add_argument("--url", dest="source_url", help="a public http(s) URL, fetched once")
    add.add_argument("--follow", "-f", action="store_true")
    add.add_argument("--json", action="store_true")
    for p in (listing, status, add):
        p.add_argument("--project", help="project slug or id (default: `default`, else the first)")


def _line(source: dict[str, Any]) -> str:
    text = (f"{source['id']}  {source['name']}  {source['state']}: {source['documents']} documents, "
            f"{source['chunks']} chunks")
    return text + (f"  ({source['error']})" if source.get("error") else "")


async def follow(client: TarxClient, source_id: str, out: Any = sys.stdout) -> dict[str, Any]:
    """Print a line whenever the source's state or counts change, until it is ready or failed."""
    last: tuple[Any, ...] | None = None
    started = time.monotonic()
    while True:
        source = await client.rag_source(source_id)
        now = (source["state"], source["documents"], source["chunks"])
        if now != last:
            print(f"[{time.monotonic() - started:6.1f}s] {_line(source)}", file=out, flush=True)
            last = now
        if source["state"] == "error":
            raise IndexingFailed(source.get("error") or "indexing failed")
        if source["state"] == "ready":
            return source
        await asyncio.sleep(POLL_SECONDS)


async def run(args: argparse.Namespace, client: TarxClient) -> None:
    if args.action == "list":
        sources = await client.rag_sources()
        if args.json:
            print(json.dumps(sources, indent=2))
        else:
            print("\n".join(_line(s) for s in sources) or "no RAG sources in this project")
        return
    if args.action == "add":
        kind, config = (("text", {"text": args.text}) if args.text is not None
                        else ("directory", {"path": args.dir}) if args.dir is not None
                        else ("url", {"url": args.source_url}))
        source = await client.create_rag(args.name, kind, config)
    else:
        source = await client.rag_source(args.id)
    if args.follow:
        source = await follow(client, source["id"], sys.stderr if args.json else sys.stdout)
    print(json.dumps(source, indent=2) if args.json else _line(source))
