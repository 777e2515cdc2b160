"""Jobs: a live table updated by diff and coloured by state; submit, cancel, retry; a detail view whose log
follows like `tail -f`."""

from __future__ import annotations

import shlex
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from tarx_console import fmt
from tarx_console.client.api import TERMINAL_STATES, TarxClient
from tarx_console.client.errors import ClientError
from tarx_console.screens.base import TableView, ViewScreen
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog
from tarx_console.widgets.difftable import Row
from tarx_console.widgets.logtail import LogTail

STATE_STYLE = {"QUEUED": "yellow", "ASSIGNED": "cyan", "RUNNING": "bold cyan", "SUCCEEDED": "green",
               "FAILED": "bold red", "CANCELLED": "dim", "TIMED_OUT": "magenta"}
JOB_COLUMNS = [("id", "ID"), ("state", "STATE"), ("command", "COMMAND"), ("labels", "LABELS"), ("node", "NODE"),
               ("attempt", "TRY"), ("exit", "EXIT"), ("created", "CREATED")]


def job_row(job: dict[str, Any], stable: bool = False) -> Row:
    exit_code = job.get("exitCode")
    return Row(job["id"], (
        fmt.ident(job["id"], stable), job["state"], job["command"].replace("\n", " ")[:60], fmt.labels(job["labels"]),
        fmt.ident(job.get("agentId"), stable), f"{job['attempt']}/{job['maxAttempts']}",
        "" if exit_code is None else str(exit_code), fmt.when(job["createdAt"], stable),
    ), STATE_STYLE.get(job["state"], ""))


class JobActions:
    """Cancel and retry, shared by the table and the detail view."""

    tarx: Any

    async def cancel(self: Any, job: dict[str, Any]) -> None:
        if job["state"] in TERMINAL_STATES:
            self.notify(f"The job is already {job['state']}.", severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Cancel job {job['id']} ({job['state']})?", "Cancel job")):
            if await self.attempt(lambda c: c.cancel_job(job["id"])) is not None:
                self.notify("Cancel requested.")
                self.schedule_refresh(0)

    async def retry(self: Any, job: dict[str, Any]) -> None:
        if await self.attempt(lambda c: c.retry_job(job["id"])) is not None:
            self.notify("Job queued again.")
            self.schedule_refresh(0)


class JobsScreen(JobActions, TableView):
    VIEW_TITLE = "Jobs"
    COLUMNS = JOB_COLUMNS
    BINDINGS = [
        Binding("s", "submit", "Submit", id="jobs.submit"),
        Binding("c", "cancel", "Cancel", id="jobs.cancel"),
        Binding("r", "retry", "Retry", id="jobs.retry"),
        Binding("enter", "open", "Logs", id="jobs.open"),
    ]

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        jobs, total = await client.list_jobs(self.tarx.config.jobs_limit)
        self.query_one("DiffTable").border_subtitle = f"{len(jobs)} of {total}"
        return jobs

    def row(self, job: dict[str, Any]) -> Row:
        return job_row(job, self.tarx.config.stable)

    def version(self, job: dict[str, Any]) -> Any:
        return job["updatedAt"], job["state"]

    @work(group="jobs-submit")
    async def action_submit(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("Submit a job", [
            Field("command", "Command (run by sh on a node)", placeholder="echo hello"),
            Field("labels", "Labels (key=value, space separated): only nodes carrying them take the job",
                  placeholder="gpu=a100"),
            Field("timeout", "Timeout (seconds)", "3600"),
        ], submit="Submit"))
        if not form:
            return
        try:
            labels = dict(item.split("=", 1) for item in shlex.split(form["labels"]))
            timeout = int(form["timeout"] or 3600)
        except ValueError:
            self.notify("Labels look like key=value and the timeout is a number of seconds.", severity="error")
            return
        job = await self.attempt(lambda c: c.submit_job(form["command"], labels=labels, timeout_seconds=timeout))
        if job is not None:
            self.notify(f"Submitted {job['id']}.")
            self.schedule_refresh(0)

    @work(group="jobs-cancel")
    async def action_cancel(self) -> None:
        if (job := self.require_selection()) is not None:
            await self.cancel(job)

    @work(group="jobs-retry")
    async def action_retry(self) -> None:
        if (job := self.require_selection()) is not None:
            await self.retry(job)

    def action_open(self) -> None:
        if (job := self.require_selection()) is not None:
            self.app.push_screen(JobDetailScreen(job["id"]))


class JobDetailScreen(JobActions, ViewScreen):
    BINDINGS = [
        Binding("c", "cancel", "Cancel", id="job.cancel"),
        Binding("r", "retry", "Retry", id="job.retry"),
    ]
    DEFAULT_CSS = """
    JobDetailScreen #summary { height: auto; padding: 0 1; border: round $panel; }
    """

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: dict[str, Any] | None = None
        self.log_seq = 0  # the last log line shown; a new attempt's lines follow on from it
        self.VIEW_TITLE = f"Jobs > {job_id}"

    def compose_body(self) -> ComposeResult:
        yield Static("loading…", id="summary")
        yield LogTail()

    def on_mount(self) -> None:
        self.follow()

    async def load(self, client: TarxClient) -> None:
        self.job = job = await client.job(self.job_id)
        stable = self.tarx.config.stable
        transitions = " → ".join(t["state"] for t in job.get("transitions", []))
        lines = [
            f"[b]{job['state']}[/b]  try {job['attempt']}/{job['maxAttempts']}  exit {job.get('exitCode')}"
            f"  node {fmt.ident(job.get('agentId'), stable) or '-'}  runtime {job.get('runtimeMs') or '-'} ms",
            f"command: {job['command']}",
            f"labels: {fmt.labels(job['labels']) or '-'}   created {fmt.when(job['createdAt'], stable)}"
            f"   reason {job.get('reason') or '-'}",
        ]
        if transitions:
            lines.append(f"states: {transitions}")
        self.query_one("#summary", Static).update("\n".join(lines))

    @work(group="job-log", exclusive=True)
    async def follow(self) -> None:
        tail = self.query_one(LogTail)
        while self.tarx.client is None:
            await self.tarx.connected.wait()
        try:
            async for record in self.tarx.client.follow_job_log(self.job_id, after=self.log_seq):
                if "end" in record:
                    end = record["end"]
                    tail.write([f"── end: {end.get('state')} exit {end.get('exitCode')} "
                                f"{end.get('reason') or ''}".rstrip()])
                    self.schedule_refresh(0)
                    return
                self.log_seq = record["seq"]
                tail.write([record["text"]])
        except ClientError as exc:  # the job is gone, or the key no longer reaches it
            tail.write([f"── the log is not available: {exc}"])

    @work(group="job-cancel")
    async def action_cancel(self) -> None:
        if self.job is not None:
            await self.cancel(self.job)

    @work(group="job-retry")
    async def action_retry(self) -> None:
        if self.job is not None:
            await self.retry(self.job)
            self.query_one(LogTail).write(["── retried: following the new attempt"])
            self.follow()
