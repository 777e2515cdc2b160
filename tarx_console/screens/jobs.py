"""Jobs: a live table updated by diff and coloured by state, one page at a time (`[`/`]`), sorted by any column
(`o`, or a click on its header: the runtime sorts all the jobs, then pages), filtered by state (`f`); space marks
rows for a bulk cancel or retry (k9s); submit; a detail view whose log follows like `tail -f`. Cancel and retry
always ask first."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from tarx_console import fmt
from tarx_console.client.api import JOB_STATES, TERMINAL_STATES, TarxClient
from tarx_console.client.errors import ClientError
from tarx_console.screens.base import TableView, ViewScreen
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog
from tarx_console.widgets.difftable import Row
from tarx_console.widgets.logtail import LogTail

STATE_STYLE = {"QUEUED": "yellow", "ASSIGNED": "cyan", "RUNNING": "bold cyan", "SUCCEEDED": "green",
               "FAILED": "bold red", "CANCELLED": "dim", "TIMED_OUT": "magenta"}
JOB_COLUMNS = [("id", "ID"), ("state", "STATE"), ("command", "COMMAND"), ("labels", "LABELS"), ("node", "NODE"),
               ("attempt", "TRY"), ("exit", "EXIT"), ("created", "CREATED")]
# What each column sorts by: the job's own values, not their display (times sort as times).
SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "id": lambda j: j["id"], "state": lambda j: j["state"], "command": lambda j: j["command"],
    "labels": lambda j: fmt.labels(j["labels"]), "node": lambda j: j.get("agentId") or "",
    "attempt": lambda j: j["attempt"], "exit": lambda j: (j.get("exitCode") is None, j.get("exitCode") or 0),
    "created": lambda j: j["createdAt"],
}
# The runtime's name of each column's sort (GET /v0/jobs?sort=): sorting orders every job, not just one page.
API_SORTS = {"id": "id", "state": "state", "command": "command", "labels": "labels", "node": "agentId",
             "attempt": "attempt", "exit": "exitCode", "created": "createdAt"}
MARK = "✓ "
RETRYABLE = frozenset({"FAILED", "CANCELLED", "TIMED_OUT"})


def job_row(job: dict[str, Any], stable: bool = False) -> Row:
    exit_code = job.get("exitCode")
    return Row(job["id"], (
        fmt.ident(job["id"], stable), job["state"], job["command"].replace("\n", " ")[:60], fmt.labels(job["labels"]),
        fmt.ident(job.get("agentId"), stable), f"{job['attempt']}/{job['maxAttempts']}",
        "" if exit_code is None else str(exit_code), fmt.when(job["createdAt"], stable),
    ), STATE_STYLE.get(job["state"], ""))


def job_version(job: dict[str, Any]) -> Any:
    """What changes whenever the job's row would."""
    return job["updatedAt"], job["state"]


def format_rows(jobs: list[dict[str, Any]], cache: dict[str, tuple[Any, Row]], stable: bool
                ) -> tuple[list[Row], dict[str, tuple[Any, Row]]]:
    """The jobs' rows, reusing those of jobs unchanged since `cache` was made; and the cache for the next time.
    Reads only its arguments (it runs in a thread)."""
    rows, fresh = [], {}
    for job in jobs:
        version = job_version(job)
        hit = cache.get(job["id"])
        row = hit[1] if hit is not None and hit[0] == version else job_row(job, stable)
        fresh[job["id"]] = (version, row)
        rows.append(row)
    return rows, fresh


def job_columns(width: int) -> tuple[list[str], dict[str, int]]:
    """The columns that fit `width` terminal cells and how wide each may grow: the key ones always show (id,
    state, command, try), the command takes what is left, and a long id or node id is clipped, never pushing
    columns off screen."""
    pad, chrome = 2, 4  # cell padding; the table's border and scrollbar
    if width >= 150:
        caps = {"labels": 24, "node": 28, "id": 28}
        keys = [k for k, _ in JOB_COLUMNS]
        fixed = {"id": 28, "state": 9, "labels": 24, "node": 28, "attempt": 5, "exit": 4, "created": 14}
    elif width >= 100:
        keys = ["id", "state", "command", "labels", "node", "attempt", "exit", "created"]
        caps = {"id": 12, "labels": 14, "node": 12}
        fixed = {"id": 12, "state": 9, "labels": 14, "node": 12, "attempt": 5, "exit": 4, "created": 14}
    else:
        keys = ["id", "state", "command", "attempt", "created"]
        caps = {"id": 12}
        fixed = {"id": 12, "state": 9, "attempt": 5, "created": 14}
    caps["command"] = max(16, width - chrome - sum(fixed.values()) - pad * len(keys))
    return keys, caps


class JobActions:
    """Cancel and retry, shared by the table and the detail view; both ask before they act."""

    tarx: Any

    async def cancel(self: Any, job: dict[str, Any]) -> None:
        if job["state"] in TERMINAL_STATES:
            self.notify(f"The job is already {job['state']}.", severity="warning")
            return
        shown = fmt.ident(job["id"], self.tarx.config.stable)
        if await self.app.push_screen_wait(ConfirmDialog(f"Cancel job {shown} ({job['state']})?", "Cancel job",
                                                         "Keep it")):
            if await self.attempt(lambda c: c.cancel_job(job["id"])) is not None:
                self.notify("Cancel requested.")
                self.schedule_refresh(0)

    async def retry(self: Any, job: dict[str, Any]) -> bool:
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Retry job {fmt.ident(job['id'], self.tarx.config.stable)} ({job['state']})?", "Retry", "Don't",
                detail=f"It runs `{job['command'][:60]}` again on a node.")):
            return False
        if await self.attempt(lambda c: c.retry_job(job["id"])) is not None:
            self.notify("Job queued again.")
            self.schedule_refresh(0)
            return True
        return False


class JobsScreen(JobActions, TableView):
    VIEW_TITLE = "Jobs"
    COLUMNS = JOB_COLUMNS
    BINDINGS = [
        Binding("s", "submit", "Submit", id="jobs.submit"),
        Binding("c", "cancel", "Cancel", id="jobs.cancel"),
        Binding("r", "retry", "Retry", id="jobs.retry"),
        Binding("enter", "open", "Logs", id="jobs.open"),
        Binding("space", "mark", "Mark", id="jobs.mark", key_display="space",
                tooltip="Mark the row; c and r then act on every marked job"),
        Binding("f", "state_filter", "State", id="jobs.state", tooltip="Show only one state (cycles)"),
        Binding("o", "sort", "Sort", id="jobs.sort"),
        Binding("O", "reverse", "Reverse sort", id="jobs.reverse", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", id="jobs.next", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", id="jobs.previous", key_display="[",
                show=False),
        Binding("ctrl+backslash", "unmark", "Clear marks", id="jobs.unmark", key_display="ctrl+\\", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = 0  # pages of config.jobs_limit jobs, newest first
        self.total = 0
        self.state_filter: str | None = None
        self.sort_column: str | None = None  # None: newest first, as the runtime lists them
        self.sort_reverse = False
        self.fetched_sort: tuple[str | None, bool] = (None, False)  # the sort the rows held were fetched in
        self.marked: set[str] = set()

    def on_mount(self) -> None:
        self.fit_columns(self.app.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_columns(event.size.width)

    def fit_columns(self, width: int) -> None:
        keys, caps = job_columns(width)
        self.table.set_layout(keys, caps, tails={"id", "node"})

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        limit = self.tarx.config.jobs_limit
        asked = (self.sort_column, self.sort_reverse)
        sort = API_SORTS[asked[0]] if asked[0] else None

        async def page() -> tuple[list[dict[str, Any]], int]:
            return await client.list_jobs(limit, self.state_filter, offset=self.page * limit, sort=sort,
                                          descending=asked[1])

        jobs, self.total = await page()
        if not jobs and self.page > 0 and self.total:  # the page emptied (jobs deleted, a filter): go back one
            self.page = max(0, (self.total - 1) // limit)
            jobs, self.total = await page()
        self.fetched_sort = asked
        return jobs

    def row(self, job: dict[str, Any]) -> Row:
        return job_row(job, self.tarx.config.stable)

    def version(self, job: dict[str, Any]) -> Any:
        return job_version(job)

    async def load(self, client: TarxClient) -> None:
        """As TableView's, with the rows of a page (up to 1,000 jobs, most of them new under load) formatted in a
        thread: the event loop keeps answering keys meanwhile. Adopted on the loop, all at once."""
        jobs = await self.fetch(client)
        cache, stable = dict(self._row_cache), self.tarx.config.stable
        rows, fresh = await asyncio.to_thread(format_rows, jobs, cache, stable)
        self._row_cache, self.items, self.rows = fresh, {job["id"]: job for job in jobs}, rows
        await self.input_quiet()  # keys pressed while the fetch was out come first
        self.render_rows()

    def render_rows(self) -> None:
        rows = self.visible(self.rows)
        if self.sort_column is not None and self.fetched_sort != (self.sort_column, self.sort_reverse):
            # the sort just changed: order this page at once; the refresh it started brings the runtime's order
            by = SORT_KEYS[self.sort_column]
            rows = sorted(rows, key=lambda r: by(self.items[r.key]), reverse=self.sort_reverse)
        if self.marked:
            rows = [Row(r.key, r.values, f"{r.style} reverse".strip(), MARK) if r.key in self.marked else r
                    for r in rows]
        self.table.sync(rows)
        self.table.border_subtitle = self.subtitle(len(rows))

    def subtitle(self, shown: int) -> str:
        limit = self.tarx.config.jobs_limit
        start = self.page * limit
        parts = [f"{start + 1}-{start + len(self.rows)} of {self.total}" if self.rows else f"0 of {self.total}"]
        if shown != len(self.rows):
            parts.append(f"{shown} shown")
        if self.total > limit:
            parts.append(f"page {self.page + 1}/{(self.total - 1) // limit + 1} ([ ])")
        parts.append(f"state {self.state_filter or 'all'} (f)")
        if self.sort_column:
            parts.append(f"sort {self.sort_column} {'↑' if self.sort_reverse else '↓'} (o)")
        if self.marked:
            parts.append(f"{len(self.marked)} marked")
        return " · ".join(parts)

    def extra_help(self) -> list[tuple[str, str]]:
        return [("header click", "Sort by that column (again: reverse)")]

    # ---- paging, sorting, the state filter, marks -------------------------------------------------------------

    def action_page(self, step: int) -> None:
        last = max(0, (self.total - 1) // self.tarx.config.jobs_limit)
        page = min(max(0, self.page + step), last)
        if page == self.page:
            self.notify("No more pages that way.", severity="information")
            return
        self.page = page
        self.schedule_refresh(0)

    def action_state_filter(self) -> None:
        """Cycle all → QUEUED → … → TIMED_OUT → all; the runtime does the filtering (it pages too)."""
        order: list[str | None] = [None, *JOB_STATES]
        self.state_filter = order[(order.index(self.state_filter) + 1) % len(order)]
        self.page = 0
        self.table.border_subtitle = self.subtitle(0)
        self.schedule_refresh(0)

    def action_sort(self) -> None:
        order: list[str | None] = [None, *(k for k, _ in self.table.column_spec)]
        current = self.sort_column if self.sort_column in order else None
        self.sort_column = order[(order.index(current) + 1) % len(order)]
        self.sorted_again()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.sorted_again()

    def sorted_again(self) -> None:
        """A new sort orders every job: back to the first page of it, fetched in the runtime's order."""
        self.page = 0
        self.render_rows()
        self.schedule_refresh(0)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self.sorted_again()

    def action_mark(self) -> None:
        key = self.table.current_key
        if key is None:
            return
        self.marked ^= {key}
        self.render_rows()
        self.table.action_cursor_down()

    def action_unmark(self) -> None:
        self.marked.clear()
        self.render_rows()

    def action_back(self) -> None:
        if self.marked and not self.prompt.is_open:
            self.action_unmark()
        else:
            super().action_back()

    def chosen(self) -> list[dict[str, Any]]:
        """The marked jobs, or else the one under the cursor."""
        if self.marked:
            return [self.items[k] for k in self.marked if k in self.items]
        item = self.require_selection()
        return [item] if item is not None else []

    # ---- actions -------------------------------------------------------------------------------------------------

    @work(group="jobs-submit")
    async def action_submit(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("Submit a job", [
            Field("command", "Command (run by sh on a node)", placeholder="echo hello", required=True),
            Field("labels", "Labels (key=value, space separated; only nodes with them take it)",
                  placeholder="gpu=a100", check=labels_problem),
            Field("timeout", "Timeout (seconds)", "3600", check=timeout_problem),
        ], submit="Submit"))
        if not form:
            return
        labels = parse_labels(form["labels"])
        job = await self.attempt(lambda c: c.submit_job(form["command"], labels=labels,
                                                        timeout_seconds=int(form["timeout"] or 3600)))
        if job is not None:
            self.notify(f"Submitted {job['id']}.")
            self.schedule_refresh(0)

    @work(group="jobs-cancel")
    async def action_cancel(self) -> None:
        jobs = self.chosen()
        if len(jobs) == 1 and not self.marked:
            await self.cancel(jobs[0])
            return
        live = [j for j in jobs if j["state"] not in TERMINAL_STATES]
        if not live:
            self.notify("None of the marked jobs is still running or queued.", severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmDialog(
                f"Cancel {len(live)} marked job{'s' * (len(live) != 1)}?", "Cancel jobs", "Keep them",
                detail=f"{len(jobs) - len(live)} marked ones already ended." if len(live) < len(jobs) else "")):
            await self.bulk(live, "cancelled", lambda c, j: c.cancel_job(j["id"]))

    @work(group="jobs-retry")
    async def action_retry(self) -> None:
        jobs = self.chosen()
        if len(jobs) == 1 and not self.marked:
            await self.retry(jobs[0])
            return
        ended = [j for j in jobs if j["state"] in RETRYABLE]
        if not ended:
            self.notify("Only failed, cancelled or timed-out jobs can be retried.", severity="warning")
            return
        if await self.app.push_screen_wait(ConfirmDialog(
                f"Retry {len(ended)} marked job{'s' * (len(ended) != 1)}?", "Retry", "Don't",
                detail=f"{len(jobs) - len(ended)} marked ones have not failed." if len(ended) < len(jobs) else "")):
            await self.bulk(ended, "queued again", lambda c, j: c.retry_job(j["id"]))

    async def bulk(self, jobs: list[dict[str, Any]], done: str, call: Callable[[TarxClient, dict[str, Any]], Any]
                   ) -> None:
        client = self.tarx.client
        if client is None:
            return
        failed: list[str] = []
        for job in jobs:
            try:
                await call(client, job)
            except ClientError as exc:
                failed.append(f"{job['id']}: {exc}")
        self.marked.clear()
        ok = len(jobs) - len(failed)
        self.notify(f"{ok} job{'s' * (ok != 1)} {done}." + (f" {len(failed)} refused: {failed[0]}" if failed else ""),
                    severity="warning" if failed else "information")
        self.schedule_refresh(0)

    def action_open(self) -> None:
        if (job := self.require_selection()) is not None:
            self.app.push_screen(JobDetailScreen(job["id"]))


def parse_labels(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(text))


def labels_problem(text: str) -> str | None:
    try:
        items = shlex.split(text)
    except ValueError as exc:
        return f"Labels: {exc}."
    bad = [item for item in items if "=" not in item or item.startswith("=")]
    return f"Labels look like key=value: not '{bad[0]}'." if bad else None


def timeout_problem(text: str) -> str | None:
    return None if text.isdigit() and int(text) > 0 else "The timeout is a whole number of seconds above 0."


class JobDetailScreen(JobActions, ViewScreen):
    BINDINGS = [
        Binding("c", "cancel", "Cancel", id="job.cancel"),
        Binding("r", "retry", "Retry", id="job.retry"),
        Binding("end,G", "follow", "Follow", id="job.follow", key_display="End/G"),
    ]
    DEFAULT_CSS = """
    JobDetailScreen #summary { height: auto; max-height: 8; padding: 0 1; border: round $panel; }
    """

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: dict[str, Any] | None = None
        self.log_seq = 0  # the last log line shown; a new attempt's lines follow on from it

    def compose(self) -> ComposeResult:
        self.VIEW_TITLE = f"Jobs > {fmt.ident(self.job_id, self.tarx.config.stable)}"
        yield from super().compose()

    def compose_body(self) -> ComposeResult:
        yield Static("loading…", id="summary")
        yield LogTail()

    def on_mount(self) -> None:
        self.follow()

    def focus_main(self) -> None:
        self.set_focus(self.query_one(LogTail).log_widget)

    def action_follow(self) -> None:
        self.query_one(LogTail).action_follow()

    async def load(self, client: TarxClient) -> None:
        self.job = job = await client.job(self.job_id)
        stable = self.tarx.config.stable
        transitions = " → ".join(t["state"] for t in job.get("transitions", []))
        lines = [
            f"[b]{job['state']}[/b]  try {job['attempt']}/{job['maxAttempts']}  exit {job.get('exitCode')}"
            f"  node {fmt.ident(job.get('agentId'), stable) or '-'}  runtime {job.get('runtimeMs') or '-'} ms",
            f"command: {escape(job['command'])}",
            f"labels: {escape(fmt.labels(job['labels'])) or '-'}   created {fmt.when(job['createdAt'], stable)}"
            f"   reason {escape(job.get('reason') or '-')}",
        ]
        if transitions:
            lines.append(f"states: {transitions}")
        self.query_one("#summary", Static).update(Text.from_markup("\n".join(lines)))

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
        if self.job is not None and await self.retry(self.job):
            self.query_one(LogTail).write(["── retried: following the new attempt"])
            self.follow()
