"""Jobs, their transitions and log lines. State changes are guarded updates, so racing writers cannot both win."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, iso_in, utcnow
from runtime.store.ids import new_id


class JobState(StrEnum):
    """The one definition of a job's states (the API families, the domain and the node all use it)."""

    QUEUED = "QUEUED"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


ACTIVE = (JobState.ASSIGNED, JobState.RUNNING)  # held by a node under a lease
TERMINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT)
UNFINISHED = (JobState.QUEUED, *ACTIVE)


def _in(states: tuple[JobState, ...]) -> str:
    """`state IN (...)` with the states spelled as SQL literals (they are constants, never input)."""
    return f"state IN ({', '.join(repr(s.value) for s in states)})"


@dataclass
class Job:
    id: str
    project_id: str
    type: str
    command: str
    env: dict[str, str]
    labels: dict[str, str]
    priority: int
    timeout_seconds: int
    state: JobState
    attempt: int
    max_attempts: int
    node_id: str | None
    lease_expires_at: str | None
    cancel_requested: bool
    exit_code: int | None
    runtime_ms: int | None
    reason: str | None
    cpu_seconds: float
    gpu_seconds: float
    gb_seconds: float
    created_by: str | None
    key_id: str | None
    idempotency_key: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _job(row: Any) -> Job:
    data = dict(row)
    data["env"] = json.loads(data["env"])
    data["labels"] = json.loads(data["labels"])
    data["state"] = JobState(data["state"])
    data["cancel_requested"] = bool(data["cancel_requested"])
    return Job(**data)


JOB_INSERT = (
    "INSERT INTO jobs (id, project_id, type, command, env, labels, priority, timeout_seconds, state, max_attempts, "
    "created_by, key_id, idempotency_key, created_at, updated_at) "
    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{JobState.QUEUED}', ?, ?, ?, ?, ?, ?)")
TRANSITION_INSERT = ("INSERT INTO job_transitions (job_id, attempt, state, reason, node_id, time) "
                     "VALUES (?, ?, ?, ?, ?, ?)")


def new_job(*, project_id: str, type: str, command: str, env: dict[str, str], labels: dict[str, str],
            priority: int, timeout_seconds: int, max_attempts: int, created_by: str | None, key_id: str | None,
            idempotency_key: str | None) -> tuple[Job, list[tuple[str, tuple[Any, ...]]]]:
    """A new QUEUED job and the rows that store it (the job and its first transition), not yet written."""
    now = utcnow()
    job = Job(new_id("job"), project_id, type, command, env, labels, priority, timeout_seconds, JobState.QUEUED, 1,
              max_attempts, None, None, False, None, None, None, 0.0, 0.0, 0.0, created_by, key_id, idempotency_key,
              now, now, None, None)
    rows = [
        (JOB_INSERT, (job.id, project_id, type, command, json.dumps(env), json.dumps(labels), priority,
                      timeout_seconds, max_attempts, created_by, key_id, idempotency_key, now, now)),
        (TRANSITION_INSERT, (job.id, 1, JobState.QUEUED.value, None, None, now)),
    ]
    return job, rows


async def insert(tx: aiosqlite.Connection, *, project_id: str, type: str, command: str, env: dict[str, str],
                 labels: dict[str, str], priority: int, timeout_seconds: int, max_attempts: int,
                 created_by: str | None, key_id: str | None, idempotency_key: str | None) -> Job:
    job, rows = new_job(project_id=project_id, type=type, command=command, env=env, labels=labels, priority=priority,
                        timeout_seconds=timeout_seconds, max_attempts=max_attempts, created_by=created_by,
                        key_id=key_id, idempotency_key=idempotency_key)
    for sql, params in rows:
        await tx.execute(sql, params)
    return job


async def record_transition(tx: aiosqlite.Connection, job_id: str, attempt: int, state: str, reason: str | None,
                            node_id: str | None, time: str | None = None) -> None:
    await tx.execute(TRANSITION_INSERT, (job_id, attempt, state, reason, node_id, time or utcnow()))


async def get(db: Database | aiosqlite.Connection, job_id: str) -> Job | None:
    async with connection(db).execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
        row = await cur.fetchone()
    return _job(row) if row else None


async def by_idempotency_key(db: Database | aiosqlite.Connection, project_id: str, key: str) -> Job | None:
    async with connection(db).execute("SELECT * FROM jobs WHERE project_id = ? AND idempotency_key = ?",
                                      (project_id, key)) as cur:
        row = await cur.fetchone()
    return _job(row) if row else None


# What a job list may be sorted by: the wire name (job_view's) -> its column. An allow-list: the name is never
# put into SQL itself.
JOB_SORTS = {"id": "id", "state": "state", "command": "command", "labels": "labels", "agentId": "node_id",
             "attempt": "attempt", "exitCode": "exit_code", "createdAt": "created_at", "updatedAt": "updated_at",
             "priority": "priority"}


async def list_jobs(db: Database, project_id: str, *, states: list[str] | None = None,
                    labels: dict[str, str] | None = None, since: str | None = None, until: str | None = None,
                    limit: int = 50, offset: int = 0, sort: str = "createdAt", descending: bool = True
                    ) -> tuple[list[Job], int]:
    where, params = ["project_id = ?"], [project_id]
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        params += states
    for k, v in (labels or {}).items():
        where.append("json_extract(labels, ?) = ?")
        params += [f'$."{k}"', v]
    if since:
        where.append("created_at >= ?")
        params.append(since)
    if until:
        where.append("created_at < ?")
        params.append(until)
    clause = " AND ".join(where)
    total = await db.fetchone(f"SELECT COUNT(*) AS n FROM jobs WHERE {clause}", params)
    column, direction = JOB_SORTS[sort], "DESC" if descending else "ASC"  # KeyError: not a sort the list allows
    tie = "" if column == "id" else f", created_at {direction}, id {direction}"  # a stable order across pages
    rows = await db.fetchall(f"SELECT * FROM jobs WHERE {clause} ORDER BY {column} {direction}{tie} "
                             "LIMIT ? OFFSET ?", (*params, limit, offset))
    return [_job(r) for r in rows], total["n"] if total else 0


async def transitions(db: Database, job_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT attempt, state, reason, node_id, time FROM job_transitions WHERE job_id = ? "
                             "ORDER BY seq", (job_id,))
    return [dict(r) for r in rows]


async def queued_for(tx: aiosqlite.Connection, project_id: str, node_labels: dict[str, str], limit: int
                     ) -> list[Job]:
    """The next queued jobs a node with `node_labels` may take: every label of the job must match the node's.

    Matching happens in SQL, so jobs no node can take never hide the ones behind them.
    """
    async with tx.execute(
            f"SELECT * FROM jobs WHERE project_id = ? AND state = '{JobState.QUEUED}' AND NOT EXISTS ("
            "  SELECT 1 FROM json_each(jobs.labels) AS l"
            "  WHERE json_extract(?, '$.\"' || l.key || '\"') IS NOT l.value)"
            " ORDER BY priority DESC, created_at, id LIMIT ?", (project_id, json.dumps(node_labels), limit)) as cur:
        return [_job(r) for r in await cur.fetchall()]


async def set_state(tx: aiosqlite.Connection, job: Job, state: JobState, *, expect_states: tuple[JobState, ...],
                    reason: str | None = None, fields: dict[str, Any] | None = None,
                    expect_node: str | None = None) -> Job | None:
    """Move `job` to `state` if it is still in `expect_states` at the same attempt (and node), and record the
    transition. Returns the job as it now is, or None when another writer changed it first."""
    now = utcnow()
    values = {"state": state, "updated_at": now, **(fields or {})}
    if reason is not None:
        values["reason"] = reason
    sets = ", ".join(f"{k} = ?" for k in values)
    sql = (f"UPDATE jobs SET {sets} WHERE id = ? AND attempt = ? "
           f"AND state IN ({', '.join('?' for _ in expect_states)})")
    params: list[Any] = [*values.values(), job.id, job.attempt, *expect_states]
    if expect_node is not None:
        sql += " AND node_id = ?"
        params.append(expect_node)
    cur = await tx.execute(sql, params)
    if cur.rowcount != 1:
        return None
    after = replace(job, **{k: bool(v) if k == "cancel_requested" else v for k, v in values.items()})
    await record_transition(tx, job.id, after.attempt, state, reason, after.node_id, now)
    return after


async def expired_leases(db: Database, now: str) -> list[Job]:
    rows = await db.fetchall(f"SELECT * FROM jobs WHERE {_in(ACTIVE)} AND lease_expires_at < ?", (now,))
    return [_job(r) for r in rows]


async def expire_leases(tx: aiosqlite.Connection, node_id: str) -> None:
    """Let the lease reaper take this node's jobs back at its next pass."""
    await tx.execute(f"UPDATE jobs SET lease_expires_at = ? WHERE node_id = ? AND {_in(ACTIVE)}", (iso_in(-1), node_id))


async def renew_leases(tx: aiosqlite.Connection, node_id: str, job_ids: list[str], until: str) -> None:
    """Extend the leases of these jobs of the node (the ones it says it runs); its others are left to lapse."""
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start:start + 500]
        await tx.execute(f"UPDATE jobs SET lease_expires_at = ? WHERE node_id = ? AND {_in(ACTIVE)} "
                         f"AND id IN ({', '.join('?' for _ in chunk)})", (until, node_id, *chunk))


async def request_cancel(tx: aiosqlite.Connection, job_id: str) -> None:
    """Flag a job its node is running: the node learns it at its next heartbeat or poll and stops it."""
    await tx.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (utcnow(), job_id))


async def active_on_node(db: Database | aiosqlite.Connection, node_id: str) -> list[Job]:
    async with connection(db).execute(f"SELECT * FROM jobs WHERE node_id = ? AND {_in(ACTIVE)}", (node_id,)) as cur:
        return [_job(r) for r in await cur.fetchall()]


async def count_by_key(db: Database, key_id: str, since: str | None = None, active_only: bool = False) -> int:
    sql, params = "SELECT COUNT(*) AS n FROM jobs WHERE key_id = ?", [key_id]
    if since:
        sql += " AND created_at >= ?"
        params.append(since)
    if active_only:
        sql += f" AND {_in(UNFINISHED)}"
    row = await db.fetchone(sql, params)
    return row["n"] if row else 0


async def usage(db: Database, project_id: str, since: str, until: str) -> dict[str, float]:
    row = await db.fetchone(
        "SELECT COUNT(*) AS jobs, COALESCE(SUM(cpu_seconds), 0) AS cpu, COALESCE(SUM(gpu_seconds), 0) AS gpu, "
        "COALESCE(SUM(gb_seconds), 0) AS gb FROM jobs WHERE project_id = ? AND finished_at >= ? AND finished_at < ?",
        (project_id, since, until))
    assert row is not None
    return {"jobs": row["jobs"], "cpuSeconds": row["cpu"], "gpuSeconds": row["gpu"], "gbSeconds": row["gb"]}


# ---- logs ------------------------------------------------------------------------------------------------------

async def add_log_lines(tx: aiosqlite.Connection, job_id: str, attempt: int, lines: list[dict[str, Any]]) -> int:
    """Insert pushed lines; a line already stored (same job, attempt and line number) is skipped: pushes are
    idempotent."""
    added = 0
    for line in lines:
        cur = await tx.execute(
            "INSERT OR IGNORE INTO job_logs (job_id, attempt, line_no, stream, text, time) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, attempt, line["seq"], line.get("stream", "stdout"), line["text"], line.get("time") or utcnow()))
        added += cur.rowcount
    return added


async def log_lines(db: Database, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT seq, attempt, line_no, stream, text, time FROM job_logs "
                             "WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                             (job_id, after_seq, limit))
    return [dict(r) for r in rows]


async def count_by_state(db: Database) -> dict[str, int]:
    """How many jobs are in each state, across every workspace (states with none are absent)."""
    return {r["state"]: r["n"] for r in await db.fetchall("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}
