"""The execution stream's events as the client types them (tarx_console/client/workflow_events.py): the state each
leaves its node and the execution in, which one ends the stream, and refusals of what is not an event. The stream
itself, against a real runtime, is exercised in test_workflows_console.py."""

from __future__ import annotations

import pytest

from tarx_console.client.errors import UnexpectedResponse
from tarx_console.client.workflow_events import execution_event


def test_events_carry_node_and_execution_states() -> None:
    start = execution_event("2", "node_start", '{"type": "node_start", "node_id": "draft", "node_type": "agentNode"}')
    assert (start.seq, start.node_id, start.node_state, start.execution_state, start.final) == (
        2, "draft", "running", None, False)
    wait = execution_event("5", "approval_required", '{"node_id": "review", "status": "waiting_approval"}')
    assert wait.node_state == "waiting_approval" and wait.execution_state == "waiting_approval" and not wait.final
    failed = execution_event("6", "node_failed", '{"node_id": "x", "error": "boom", "duration_ms": 3}')
    assert failed.node_state == "failed" and failed.data["error"] == "boom"
    done = execution_event("9", "execution_complete", '{"execution_id": "exec_1", "status": "completed"}')
    assert done.node_id is None and done.execution_state == "completed" and done.final
    cancelled = execution_event("10", "execution_failed", '{"status": "cancelled", "error": "cancelled"}')
    assert cancelled.execution_state == "cancelled" and cancelled.final
    newer = execution_event("11", "node_paused", '{"node_id": "x", "status": "paused"}')  # a newer runtime's event
    assert newer.node_state == "paused" and not newer.final


def test_what_is_not_an_event_is_refused() -> None:
    with pytest.raises(UnexpectedResponse, match="not JSON"):
        execution_event("1", "node_start", "{not json")
    with pytest.raises(UnexpectedResponse, match="not a number"):
        execution_event("one", "node_start", "{}")
    assert execution_event(None, "", '{"type": "node_start"}').name == "node_start"  # the type in the data
