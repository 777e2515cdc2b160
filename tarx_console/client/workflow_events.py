"""What an execution's event stream carries (seed 001's SSE events), as typed values; no textual, no httpx here.

Every event has the sequence number the runtime stored it under (its SSE id): a client that reconnects with
`Last-Event-ID: <seq>` gets exactly the events after it. Names this console does not know still arrive (a newer
runtime's), typed as a plain ExecutionEvent, so nothing is silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tarx_console.client.errors import BadRequest, UnexpectedResponse

# Execution states (issue 14); the last five are final.
EXECUTION_STATES = ("pending", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected")
FINISHED_STATES = frozenset({"completed", "failed", "cancelled", "rejected"})

# The state a node is in after each event about it.
NODE_STATE_AFTER = {
    "node_start": "running", "node_complete": "completed", "node_failed": "failed", "node_skipped": "skipped",
    "node_cancelled": "cancelled", "node_retry": "running", "approval_required": "waiting_approval",
    "node_waiting": "waiting_approval", "node_waiting_approval": "waiting_approval", "node_approved": "completed",
    "node_rejected": "rejected",
}
# The execution's state after each event about it.
EXECUTION_STATE_AFTER = {
    "execution_start": "running", "execution_started": "running", "execution_complete": "completed",
    "execution_failed": "failed", "execution_cancelled": "cancelled", "execution_rejected": "rejected",
    "approval_required": "waiting_approval", "node_waiting": "waiting_approval",
    "node_waiting_approval": "waiting_approval", "execution_waiting": "waiting_approval",
    "execution_resumed": "running", "node_approved": "running",
}


@dataclass(frozen=True)
class ExecutionEvent:
    seq: int
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def node_id(self) -> str | None:
        value = self.data.get("node_id")
        return str(value) if value is not None else None

    @property
    def node_state(self) -> str | None:
        """The state the event leaves its node in, when it is about a node."""
        if self.node_id is None:
            return None
        return NODE_STATE_AFTER.get(self.name) or (str(self.data["status"]) if "status" in self.data else None)

    @property
    def execution_state(self) -> str | None:
        """The state the event leaves the execution in, when it says."""
        if self.name.startswith("execution_") and "status" in self.data:
            return str(self.data["status"])
        return EXECUTION_STATE_AFTER.get(self.name)

    @property
    def final(self) -> bool:
        """The execution is over: nothing follows this event."""
        return self.execution_state in FINISHED_STATES and self.name.startswith("execution_")


def execution_event(seq: str | int | None, name: str, data: str) -> ExecutionEvent:
    try:
        body = json.loads(data) if data else {}
    except ValueError as exc:
        raise UnexpectedResponse(f"the execution stream sent a {name!r} event that is not JSON") from exc
    if not isinstance(body, dict):
        body = {"value": body}
    try:
        number = int(seq) if seq not in (None, "") else 0
    except ValueError as exc:
        raise UnexpectedResponse(f"the execution stream sent an event id that is not a number: {seq!r}") from exc
    return ExecutionEvent(number, name or str(body.get("type") or "message"), body)


class GraphRejected(BadRequest):
    """The runtime found the workflow's graph invalid (422); `node_ids` are the nodes at fault, when the answer
    lists them (else empty: the message names them)."""

    def __init__(self, status: int, message: str, code: str | None, node_ids: list[str]) -> None:
        super().__init__(status, message, code)
        self.node_ids = node_ids
