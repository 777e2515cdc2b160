"""Group commit for hot inserts: rows from many concurrent callers land in one transaction, with one
`executemany` per statement, so throughput does not hinge on one transaction per request.

Callers wait until their rows are committed; if the transaction fails, every caller in it sees the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiosqlite

from runtime.store.db import Database

Rows = list[tuple[str, Sequence[Any]]]  # (sql, parameters) in the order they must run


async def write_rows(tx: aiosqlite.Connection, rows: Rows) -> None:
    """Write rows built for the batcher inside the caller's own transaction instead."""
    for sql, params in rows:
        await tx.execute(sql, params)


class InsertBatcher:
    def __init__(self, db: Database, max_batch: int = 500) -> None:
        self.db = db
        self.max_batch = max_batch
        self._pending: list[tuple[Rows, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, rows: Rows) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            grouped: dict[str, list[Sequence[Any]]] = {}  # keeps first-seen statement order: parents first
            for rows, _ in batch:
                for sql, params in rows:
                    grouped.setdefault(sql, []).append(params)
            try:
                async with self.db.transaction() as tx:
                    for sql, params_list in grouped.items():
                        await tx.executemany(sql, params_list)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
