"""Request bodies shared by `/api/compute/*` and `/v0/*` (camelCase, strict types)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from runtime.api.bodies import Body
from runtime.compute.jobs import JobSpec
from runtime.store.jobs import TERMINAL, JobState

# Every integer that reaches SQL fits SQLite's 64-bit INTEGER; paging stays far below it (offset = page x size).
SQL_INT_MAX = 2**63 - 1
MAX_PAGE = 1_000_000
MAX_FILTERS = 20  # label and state filters per list request: each is a condition in one SQL expression


def _label_key(key: str) -> str:
    """Label keys become quoted JSON paths in SQL (`$."key"`), where a double quote cannot appear."""
    if '"' in key:
        raise PydanticCustomError("label_key", 'label keys cannot contain a double quote (")')
    return key


Label = Annotated[StrictStr, Field(max_length=200)]
LabelKey = Annotated[StrictStr, Field(max_length=200), AfterValidator(_label_key)]


_TERMINAL_NAMES = ", ".join(f"'{s}'" for s in TERMINAL[:-1]) + f" or '{TERMINAL[-1]}'"


def _terminal(state: JobState) -> JobState:
    """A result's state: one of the terminal ones."""
    if state not in TERMINAL:
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": _TERMINAL_NAMES})
    return state


class SubmitJob(Body):
    type: Literal["COMMAND"] = "COMMAND"
    command: Annotated[StrictStr, Field(min_length=1, max_length=20_000)]
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=7 * 86400)] = Field(3600, alias="timeoutSeconds")
    labels: dict[LabelKey, Label] = Field(default_factory=dict, max_length=50)
    env: dict[Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")],
              Annotated[StrictStr, Field(max_length=32_768)]] = Field(default_factory=dict, max_length=200)
    priority: Annotated[StrictInt, Field(ge=-100, le=100)] = 0
    max_attempts: Annotated[StrictInt, Field(ge=1, le=20)] | None = Field(None, alias="maxAttempts")
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")

    def spec(self) -> JobSpec:
        return JobSpec(self.type, self.command, self.timeout_seconds, dict(self.labels), dict(self.env),
                       self.priority, self.max_attempts)


class JobRef(Body):
    job_id: StrictStr = Field(alias="jobId")
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")


class ListJobs(Body):
    state: list[JobState] | None = Field(None, max_length=MAX_FILTERS)
    labels: dict[LabelKey, Label] | None = Field(None, max_length=MAX_FILTERS)
    since: StrictStr | None = None
    until: StrictStr | None = None
    page: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE)] = 1
    page_size: Annotated[StrictInt, Field(ge=1, le=500)] = Field(50, alias="pageSize")
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")


class RegisterNode(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    labels: dict[LabelKey, Label] = Field(default_factory=dict, max_length=50)
    capacity: Annotated[StrictInt, Field(ge=1, le=256)] = 1
    version: StrictStr | None = None
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")


class RunningJob(Body):
    job_id: StrictStr = Field(alias="jobId")
    attempt: Annotated[StrictInt, Field(ge=1, le=SQL_INT_MAX)]


class Heartbeat(Body):
    running: list[RunningJob] = Field(default_factory=list, max_length=256)
    labels: dict[LabelKey, Label] | None = Field(None, max_length=50)


class Poll(Body):
    max: Annotated[StrictInt, Field(ge=1, le=256)] = 1
    wait_seconds: Annotated[float, Field(ge=0, le=60, strict=True)] = Field(0.0, alias="waitSeconds")


class LogLine(Body):
    seq: Annotated[StrictInt, Field(ge=1, le=SQL_INT_MAX)]
    stream: Literal["stdout", "stderr"] = "stdout"
    text: Annotated[StrictStr, Field(max_length=65_536)]
    time: StrictStr | None = None


class PushLogs(Body):
    job_id: StrictStr = Field(alias="jobId")
    attempt: Annotated[StrictInt, Field(ge=1, le=SQL_INT_MAX)]
    lines: Annotated[list[LogLine], Field(max_length=5000)]


class Result(Body):
    job_id: StrictStr = Field(alias="jobId")
    attempt: Annotated[StrictInt, Field(ge=1, le=SQL_INT_MAX)]
    state: Annotated[JobState, AfterValidator(_terminal)]
    exit_code: Annotated[StrictInt, Field(ge=-(2**31), le=2**32 - 1)] | None = Field(None, alias="exitCode")
    runtime_ms: Annotated[StrictInt, Field(ge=0, le=SQL_INT_MAX)] | None = Field(None, alias="runtimeMs")
    cpu_seconds: Annotated[float, Field(ge=0)] = Field(0.0, alias="cpuSeconds")
    gpu_seconds: Annotated[float, Field(ge=0)] = Field(0.0, alias="gpuSeconds")
    gb_seconds: Annotated[float, Field(ge=0)] = Field(0.0, alias="gbSeconds")
    reason: Annotated[StrictStr, Field(max_length=500)] | None = None

    def outcome(self) -> dict[str, object]:
        return {"state": self.state, "exitCode": self.exit_code, "runtimeMs": self.runtime_ms,
                "cpuSeconds": self.cpu_seconds, "gpuSeconds": self.gpu_seconds, "gbSeconds": self.gb_seconds,
                "reason": self.reason}


class NodeRef(Body):
    node_id: StrictStr | None = Field(None, alias="nodeId")
    workspace_id: StrictStr | None = Field(None, alias="workspaceId")


class PresignUpload(Body):
    job_id: StrictStr = Field(alias="jobId")
    name: Annotated[StrictStr, Field(min_length=1, max_length=255)]


class PresignDownload(Body):
    job_id: StrictStr = Field(alias="jobId")
    artifact_id: StrictStr = Field(alias="artifactId")


class CreateWebhook(Body):
    url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)]
    events: Annotated[list[Literal["job.created", "job.transitioned", "job.terminal", "billing.soft_cap_reached"]],
                      Field(min_length=1)]


class Limits(Body):
    soft_cpu_seconds: Annotated[float, Field(ge=0)] | None = Field(None, alias="softCpuSeconds")
    hard_cpu_seconds: Annotated[float, Field(ge=0)] | None = Field(None, alias="hardCpuSeconds")
    soft_gpu_seconds: Annotated[float, Field(ge=0)] | None = Field(None, alias="softGpuSeconds")
    hard_gpu_seconds: Annotated[float, Field(ge=0)] | None = Field(None, alias="hardGpuSeconds")
