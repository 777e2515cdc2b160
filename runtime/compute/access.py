"""Who may touch what on the compute plane: the node behind a node key, and a job of the caller's workspace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from runtime.auth.access import READ, ProjectContext, require
from runtime.auth.principal import AuthError, Principal
from runtime.errors import NotFound
from runtime.store import Database
from runtime.store import jobs as job_store
from runtime.store import nodes as node_store
from runtime.store.jobs import Job
from runtime.store.nodes import Node

# The caller's workspace, resolved only when needed: a node acting for itself has none to resolve.
ProjectSource = Callable[[], Awaitable[ProjectContext]]


async def node_of(db: Database, principal: Principal) -> Node:
    """The node behind a node key; other credentials cannot act as a node."""
    if principal.via != "node" or principal.key is None or principal.key.subject_id is None:
        raise AuthError("This endpoint needs a node key (tnn_…), sent as X-API-Key.", "node_key_required")
    node = await node_store.get(db, principal.key.subject_id)
    if node is None or node.state == "deleted":
        raise AuthError("This node was deregistered.", "node_deregistered")
    return node


async def project_job(db: Database, ctx: ProjectContext, job_id: str) -> Job:
    """A job of the caller's workspace; another workspace's job is "not found"."""
    await require(db, ctx, READ, "job.read")
    job = await job_store.get(db, job_id)
    if job is None or job.project_id != ctx.project.id:
        raise NotFound(f"Job '{job_id}' was not found.")
    return job
