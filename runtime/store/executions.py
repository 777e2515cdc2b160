"""Executions of workflows: the run, its per-node results and its numbered event stream (execution_events)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id

PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED, REJECTED = (
    "pending", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected")
STATES = (PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED, REJECTED)
UNFINISHED = (PENDING, RUNNING, WAITING)
FINISHED = (COMPLETED, FAILED, CANCELLED, REJECTED)


@dataclass(frozen=True)
class Execution:
    id: str
    project_id: str
    workflow_id: str
    workflow_version: int
    graph: dict[str, Any]  # {"nodes": [...], "edges": [...]} of the version that ran
    status: str
    trigger: str
    input: Any
    output: Any
    error: str | None
    reason: str | None
    actor_user_id: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    updated_at: str

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class NodeResult:
    node_id: str
    node_type: str
    status: str  # running | completed | failed | skipped | waiting_approval | cancelled | rejected
    input: Any
    output: Any
    error: str | None
    attempts: int
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None


@dataclass(frozen=True)
class Event:
    seq: int
    event: str
    data: dict[str, Any]
    created_at: str


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _execution(row: Any) -> Execution:
    return Execution(row["id"], row["project_id"], row["workflow_id"], row["workflow_version"],
                     json.loads(row["graph"]), row["status"], row["trigger"], _loads(row["input"]),
                     _loads(row["output"]), row["error"], row["reason"], row["actor_user_id"], row["created_at"],
                     row["started_at"], row["completed_at"], row["updated_at"])


def _node(row: Any) -> NodeResult:
    return NodeResult(row["node_id"], row["node_type"], row["status"], _loads(row["input"]), _loads(row["output"]),
                      row["error"], row["attempts"], row["started_at"], row["completed_at"], row["duration_ms"])


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# ---- the execution ---------------------------------------------------------------------------------------------

async def count_since(tx: aiosqlite.Connection, project_id: str, since: str) -> int:
    """Executions the project started since `since` (the hourly limit counts them)."""
    async with tx.execute("SELECT COUNT(*) FROM executions WHERE project_id = ? AND created_at >= ?",
                          (project_id, since)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def oldest_since(tx: aiosqlite.Connection, project_id: str, since: str) -> str | None:
    async with tx.execute("SELECT MIN(created_at) FROM executions WHERE project_id = ? AND created_at >= ?",
                          (project_id, since)) as cur:
        row = await cur.fetchone()
    return row[0] if row else None


async def insert(tx: aiosqlite.Connection, *, project_id: str, workflow_id: str, workflow_version: int,
                 graph: dict[str, Any], trigger: str, input: Any, actor_user_id: str | None) -> Execution:
    now = utcnow()
    ex = Execution(new_id("exec"), project_id, workflow_id, workflow_version, graph, PENDING, trigger, input, None,
                   None, None, actor_user_id, now, None, None, now)
    await tx.execute(
        "INSERT INTO executions (id, project_id, workflow_id, workflow_version, graph, status, trigger, input, "
        "actor_user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ex.id, project_id, workflow_id, workflow_version, dumps(graph), PENDING, trigger, dumps(input),
         actor_user_id, now, now))
    return ex


async def get(db: Database | aiosqlite.Connection, execution_id: str, project_id: str | None = None
              ) -> Execution | None:
    """The execution; with `project_id`, only if it is that project's."""
    sql, args = "SELECT * FROM executions WHERE id = ?", [execution_id]
    if project_id is not None:
        sql, args = sql + " AND project_id = ?", [execution_id, project_id]
    async with connection(db).execute(sql, args) as cur:
        row = await cur.fetchone()
    return _execution(row) if row else None


async def list_for(db: Database, project_id: str, *, workflow_id: str | None = None, status: str | None = None,
                   before: str | None = None, limit: int = 20) -> list[Execution]:
    """Newest first; `before` is the cursor (the last id of the previous page)."""
    sql, args = "SELECT * FROM executions WHERE project_id = ?", [project_id]
    if workflow_id is not None:
        sql, args = sql + " AND workflow_id = ?", [*args, workflow_id]
    if status is not None:
        sql, args = sql + " AND status = ?", [*args, status]
    if before is not None:
        sql, args = sql + " AND id < ?", [*args, before]
    rows = await db.fetchall(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
    return [_execution(r) for r in rows]


async def unfinished(db: Database) -> list[Execution]:
    rows = await db.fetchall(
        f"SELECT * FROM executions WHERE status IN ({', '.join('?' for _ in UNFINISHED)}) ORDER BY id", UNFINISHED)
    return [_execution(r) for r in rows]


async def set_status(tx: aiosqlite.Connection, execution_id: str, status: str, *, expect: tuple[str, ...],
                     output: Any = None, error: str | None = None, reason: str | None = None) -> bool:
    """Move an execution to `status` if it is in one of `expect`; False if it was not (someone else moved it)."""
    now = utcnow()
    fields: dict[str, Any] = {"status": status, "updated_at": now}
    if status == RUNNING:
        fields["started_at"] = now
    if status in FINISHED:
        fields.update(completed_at=now, output=dumps(output) if output is not None else None, error=error,
                      reason=reason)
    cur = await tx.execute(
        f"UPDATE executions SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ? AND status IN "
        f"({', '.join('?' for _ in expect)})",
        [*fields.values(), execution_id, *expect])
    return cur.rowcount > 0


async def resume_running(tx: aiosqlite.Connection, execution_id: str) -> None:
    """Back to running after an approval (started_at kept)."""
    await tx.execute("UPDATE executions SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                     (RUNNING, utcnow(), execution_id, WAITING))


async def prune(tx: aiosqlite.Connection, finished_before: str) -> int:
    """Delete finished executions (their nodes and events go with them) completed before `finished_before`."""
    cur = await tx.execute(
        f"DELETE FROM executions WHERE status IN ({', '.join('?' for _ in FINISHED)}) AND completed_at < ?",
        [*FINISHED, finished_before])
    return cur.rowcount


# ---- nodes -----------------------------------------------------------------------------------------------------

async def node_started(tx: aiosqlite.Connection, execution_id: str, node_id: str, node_type: str, input: Any,
                       started_at: str) -> None:
    await tx.execute(
        "INSERT INTO execution_nodes (execution_id, node_id, node_type, status, input, attempts, started_at) "
        "VALUES (?, ?, ?, 'running', ?, 1, ?) ON CONFLICT (execution_id, node_id) DO UPDATE SET "
        "status = 'running', input = excluded.input, output = NULL, error = NULL, "
        "attempts = execution_nodes.attempts + 1, started_at = excluded.started_at, completed_at = NULL, "
        "duration_ms = NULL", (execution_id, node_id, node_type, dumps(input), started_at))


NODE_RAN = (
    "INSERT INTO execution_nodes (execution_id, node_id, node_type, status, input, output, attempts, started_at, "
    "completed_at, duration_ms) VALUES (?, ?, ?, 'completed', ?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id, node_id) "
    "DO UPDATE SET status = 'completed', input = excluded.input, output = excluded.output, error = NULL, "
    "attempts = execution_nodes.attempts + excluded.attempts, started_at = excluded.started_at, "
    "completed_at = excluded.completed_at, duration_ms = excluded.duration_ms")


def node_ran(execution_id: str, node_id: str, node_type: str, *, input: Any, output: Any, attempts: int,
             started_at: str, completed_at: str, duration_ms: int) -> tuple[str, tuple[Any, ...]]:
    """The row of a node that started and completed between two writes, for a batch (`executemany`)."""
    return NODE_RAN, (execution_id, node_id, node_type, dumps(input), None if output is None else dumps(output),
                      attempts, started_at, completed_at, duration_ms)


async def node_attempt(tx: aiosqlite.Connection, execution_id: str, node_id: str, error: str) -> None:
    """A failed attempt that will be retried: counted, its error kept until the next outcome."""
    await tx.execute("UPDATE execution_nodes SET attempts = attempts + 1, error = ? WHERE execution_id = ? "
                     "AND node_id = ?", (error, execution_id, node_id))


async def node_status(tx: aiosqlite.Connection, execution_id: str, node_id: str, status: str) -> None:
    await tx.execute("UPDATE execution_nodes SET status = ? WHERE execution_id = ? AND node_id = ?",
                     (status, execution_id, node_id))


async def node_finished(tx: aiosqlite.Connection, execution_id: str, node_id: str, node_type: str, status: str, *,
                        output: Any = None, error: str | None = None, completed_at: str,
                        duration_ms: int | None) -> None:
    """The node's outcome. A node that never started (skipped) gets its row here."""
    await tx.execute(
        "INSERT INTO execution_nodes (execution_id, node_id, node_type, status, output, error, attempts, "
        "completed_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (execution_id, node_id) DO UPDATE "
        "SET status = excluded.status, output = excluded.output, error = excluded.error, "
        "completed_at = excluded.completed_at, duration_ms = excluded.duration_ms",
        (execution_id, node_id, node_type, status, None if output is None else dumps(output), error, completed_at,
         duration_ms))


async def nodes(db: Database | aiosqlite.Connection, execution_id: str) -> list[NodeResult]:
    async with connection(db).execute(
            "SELECT * FROM execution_nodes WHERE execution_id = ? ORDER BY started_at IS NULL, started_at, node_id",
            (execution_id,)) as cur:
        rows = await cur.fetchall()
    return [_node(r) for r in rows]


# ---- events ----------------------------------------------------------------------------------------------------

async def add_events(tx: aiosqlite.Connection, rows: list[tuple[str, int, str, dict[str, Any]]]) -> None:
    """Many events at once: (execution_id, seq, event, data)."""
    now = utcnow()
    await tx.executemany(
        "INSERT INTO execution_events (execution_id, seq, event, data, created_at) VALUES (?, ?, ?, ?, ?)",
        [(execution_id, seq, event, dumps(data), now) for execution_id, seq, event, data in rows])


async def events_after(db: Database, execution_id: str, after: int, limit: int = 500) -> list[Event]:
    rows = await db.fetchall("SELECT seq, event, data, created_at FROM execution_events WHERE execution_id = ? "
                             "AND seq > ? ORDER BY seq LIMIT ?", (execution_id, after, limit))
    return [Event(r["seq"], r["event"], json.loads(r["data"]), r["created_at"]) for r in rows]


async def last_seq(db: Database, execution_id: str) -> int:
    row = await db.fetchone("SELECT MAX(seq) FROM execution_events WHERE execution_id = ?", (execution_id,))
    return int(row[0]) if row and row[0] is not None else 0
