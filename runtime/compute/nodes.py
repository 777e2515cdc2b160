"""The worker-node plane: registration with a node key, drain, deregistration, key rotation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.auth import keys
from runtime.auth.access import ADMIN, READ, WRITE, ProjectContext, require
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal
from runtime.compute.access import ProjectSource, node_of
from runtime.errors import InvalidRequest, NotFound
from runtime.store import Database, api_keys, audit
from runtime.store import jobs as job_store
from runtime.store import nodes as node_store
from runtime.store.nodes import Node


async def node_view(db: Database, node: Node) -> dict[str, Any]:
    active = await job_store.active_on_node(db, node.id)
    return {"id": node.id, "name": node.name, "labels": node.labels, "capacity": node.capacity,
            "state": node.state, "drained": node.state == "draining" and not active, "version": node.version,
            "lastHeartbeatAt": node.last_heartbeat_at, "registeredAt": node.registered_at,
            "currentJobs": [j.id for j in active], "workspaceId": node.project_id}


class NodeService:
    def __init__(self, db: Database, *, heartbeat_seconds: float, lease_grace_seconds: float,
                 poll_wait_seconds: float, keys_changed: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.keys_changed = keys_changed  # revoked node keys must stop working at once
        self.heartbeat_seconds = heartbeat_seconds
        self.lease_grace = lease_grace_seconds
        self.poll_wait = poll_wait_seconds

    async def register(self, ctx: ProjectContext, name: str, labels: dict[str, str], capacity: int,
                       version: str | None) -> dict[str, Any]:
        await require(self.db, ctx, WRITE, "node.register")
        plaintext = keys.generate(KeyKind.node)
        async with self.db.transaction() as tx:
            node = await node_store.insert(tx, ctx.project.id, name, labels, capacity, version)
            await api_keys.insert(tx, kind=KeyKind.node.value, user_id=ctx.principal.user.id, name=f"node {name}",
                                  key_hash=keys.hash_key(plaintext), display_prefix=keys.display_prefix(plaintext),
                                  project_id=ctx.project.id, subject_id=node.id)
            await audit.write(tx, ctx.principal.actor, "node.register", target=node.id, project_id=ctx.project.id,
                              detail={"name": name, "labels": labels, "capacity": capacity})
        return {**await node_view(self.db, node), "nodeKey": plaintext, "heartbeatSeconds": self.heartbeat_seconds,
                "leaseGraceSeconds": self.lease_grace, "pollWaitSeconds": self.poll_wait}

    async def authenticate(self, principal: Principal) -> Node:
        """The node behind a node key; other credentials cannot act as a node."""
        return await node_of(self.db, principal)

    # ---- users of the node's workspace ----------------------------------------------------------------------------

    async def _get(self, ctx: ProjectContext, node_id: str) -> Node:
        await require(self.db, ctx, READ, "node.read")
        node = await node_store.get(self.db, node_id)
        if node is None or node.project_id != ctx.project.id or node.state == "deleted":
            raise NotFound(f"Node '{node_id}' was not found.")
        return node

    async def detail(self, ctx: ProjectContext, node_id: str) -> dict[str, Any]:
        return await node_view(self.db, await self._get(ctx, node_id))

    async def list(self, ctx: ProjectContext) -> list[dict[str, Any]]:
        await require(self.db, ctx, READ, "node.list")
        return [await node_view(self.db, n) for n in await node_store.list_nodes(self.db, ctx.project.id)]

    async def drain(self, ctx: ProjectContext, node_id: str) -> dict[str, Any]:
        return await self._drain(ctx.principal, await self._get(ctx, node_id), ctx)

    async def delete(self, ctx: ProjectContext, node_id: str) -> None:
        node = await self._get(ctx, node_id)
        await require(self.db, ctx, ADMIN, "node.delete")
        async with self.db.transaction() as tx:
            await node_store.set_state(tx, node.id, "deleted")
            await api_keys.revoke_node_keys(tx, node.id)
            await job_store.expire_leases(tx, node.id)  # its jobs go back to the queue at the reaper's next pass
            await audit.write(tx, ctx.principal.actor, "node.delete", target=node.id, project_id=node.project_id)
        self.keys_changed()

    # ---- the node itself, or a user naming it ---------------------------------------------------------------------

    async def _target(self, caller: Principal, node_id: str | None, project: ProjectSource
                      ) -> tuple[Node, ProjectContext | None]:
        """The node itself (node key; no workspace check), or a node named by a user of its workspace."""
        if caller.via == "node":
            return await node_of(self.db, caller), None
        if not node_id:
            raise InvalidRequest("nodeId is required", extra={"error_code": "VALIDATION_ERROR"})
        ctx = await project()
        return await self._get(ctx, node_id), ctx

    async def drain_as(self, caller: Principal, node_id: str | None, project: ProjectSource) -> dict[str, Any]:
        node, ctx = await self._target(caller, node_id, project)
        return await self._drain(caller, node, ctx)

    async def rotate_key_as(self, caller: Principal, node_id: str | None, project: ProjectSource) -> dict[str, Any]:
        """A new node key; the one used for the call (or every old one, for an admin) stops working."""
        node, ctx = await self._target(caller, node_id, project)
        if ctx is not None:
            await require(self.db, ctx, ADMIN, "node.rotate_key")
        plaintext = keys.generate(KeyKind.node)
        async with self.db.transaction() as tx:
            await api_keys.revoke_node_keys(tx, node.id)
            key = await api_keys.insert(tx, kind=KeyKind.node.value, user_id=caller.user.id, name=f"node {node.name}",
                                        key_hash=keys.hash_key(plaintext),
                                        display_prefix=keys.display_prefix(plaintext), project_id=node.project_id,
                                        subject_id=node.id)
            await audit.write(tx, caller.actor, "node.rotate_key", target=node.id, project_id=node.project_id,
                              detail={"key_id": key.id})
        self.keys_changed()
        return {"nodeId": node.id, "nodeKey": plaintext, "keyId": key.id}

    async def _drain(self, actor: Principal, node: Node, ctx: ProjectContext | None) -> dict[str, Any]:
        if ctx is not None:
            await require(self.db, ctx, WRITE, "node.drain")
        async with self.db.transaction() as tx:
            await node_store.set_state(tx, node.id, "draining")
            await audit.write(tx, actor.actor, "node.drain", target=node.id, project_id=node.project_id)
        drained = await node_store.get(self.db, node.id)
        assert drained is not None
        return await node_view(self.db, drained)
