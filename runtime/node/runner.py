"""A worker node: registers, heartbeats, long-polls for jobs, runs each in its own directory and process group,
streams log lines in batches, uploads artifacts, and reports a result with the resources it used.

It honours cancel (kills the process group), timeouts, drain (finishes what runs, takes nothing new) and key
rotation. It speaks only the HTTP API, through whichever httpx client it is given (a remote URL, or the
runtime's own app in-process).

At most one running attempt: a job reports RUNNING by a heartbeat sent as it starts; heartbeats go one at a time
and list every job the node holds (the runtime takes back the ones left out); a job's process group dies with the
node (see guard.py) and with its command (what the command leaves behind is killed when it exits); a node whose
heartbeats have not got through for most of the lease grace kills its jobs itself, before the runtime gives them
to another node; and a node that stops hands its jobs back (killed, then left out of a last heartbeat).

Pipes and exits are watched with the event loop's `add_reader` on file descriptors this module alone owns and
closes, after unregistering them: never through transports over file objects, whose two owners (uvloop closes the
fd when the transport closes, the file object when it is collected) once let a reused fd number meet a stale
registration (EEXIST from `connect_read_pipe`, or libuv aborting the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runtime import __version__
from runtime.node.guard import Guard
from runtime.store.db import utcnow
from runtime.store.jobs import JobState

log = logging.getLogger("tarx.node")

LOG_BATCH_SECONDS = 0.2
LOG_BATCH_LINES = 500
KILL_GRACE_SECONDS = 2.0
LINE_MAX_BYTES = 65_536  # a longer line is pushed in pieces of this size (a pushed line holds 64 Ki characters)
OUTPUT_AFTER_EXIT_SECONDS = 5.0  # how long output may still arrive once the command's group is gone
FENCE_FRACTION = 0.75  # silent this part of the lease grace, the node stops its jobs itself
START_REPORT_SECONDS = 0.2  # a job is reported RUNNING at most this long after it starts


class LeaseLost(Exception):
    pass


def machine_labels() -> dict[str, str]:
    labels = {"os": platform.system().lower(), "arch": platform.machine(), "cores": str(os.cpu_count() or 1)}
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                labels["gpu"] = out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return labels


@dataclass
class Running:
    job: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    outcome: JobState | None = None  # CANCELLED or TIMED_OUT when we stopped it
    task: asyncio.Task[None] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    handed_back: bool = False  # killed by the node (stopping, or its lease about to lapse): no result, requeued
    output_done: asyncio.Event = field(default_factory=asyncio.Event)  # the command's output is all read

    def add_line(self, stream: str, data: bytes) -> None:
        self.seq += 1
        self.lines.append({"seq": self.seq, "stream": stream, "text": data.decode(errors="replace"),
                           "time": utcnow()})


class NodeRunner:
    def __init__(self, http: httpx.AsyncClient, key: str, *, name: str, labels: dict[str, str] | None = None,
                 capacity: int = 1, workdir: Path, state_file: Path | None = None,
                 heartbeat_seconds: float | None = None, rotate_every: float | None = None,
                 workspace: str | None = None) -> None:
        self.http = http
        self.key = key
        self.name = name
        self.labels = {**machine_labels(), **(labels or {})}
        self.capacity = capacity
        self.workdir = workdir
        self.state_file = state_file
        self.heartbeat_seconds = heartbeat_seconds
        self.rotate_every = rotate_every
        self.workspace = workspace  # needed when registering with a user's key that reaches several workspaces
        self.node_id: str | None = None
        self.poll_wait = 20.0
        self.lease_grace: float | None = None  # the runtime's, once it has said
        self.draining = False
        self.running: dict[str, Running] = {}
        self.guard = Guard()
        self._slot = asyncio.Event()
        self._beat = asyncio.Event()  # set: send a heartbeat now (a job started)
        self._beat_lock = asyncio.Lock()
        self._last_beat = time.monotonic()  # when a heartbeat last got through

    # ---- HTTP ------------------------------------------------------------------------------------------------

    async def _call(self, path: str, body: dict[str, Any], read_seconds: float = 30.0) -> dict[str, Any]:
        r = await self.http.post(path, json=body, headers={"X-API-Key": self.key}, timeout=read_seconds)
        data = r.json() if r.content else {}
        if r.status_code == 409:
            raise LeaseLost(data.get("message", "lease lost"))
        if r.status_code >= 400:
            raise httpx.HTTPStatusError(f"{path}: {r.status_code} {data.get('message', r.text[:200])}",
                                        request=r.request, response=r)
        return data.get("payload") or {}

    async def _retrying(self, path: str, body: dict[str, Any], attempts: int = 20) -> dict[str, Any]:
        delay = 0.2
        for attempt in range(attempts):
            try:
                return await self._call(path, body)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
                if (status is not None and status < 500 and status != 429) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    # ---- identity --------------------------------------------------------------------------------------------

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"nodeId": self.node_id, "nodeKey": self.key}, fh)
        tmp.replace(self.state_file)

    async def register(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            saved = json.loads(self.state_file.read_text())
            self.node_id, self.key = saved["nodeId"], saved["nodeKey"]
        if self.key.startswith("tnn_"):  # already a node: say hello with a heartbeat
            await self._heartbeat_once()
            return
        reg = await self._retrying("/api/compute/nodes/register", {
            "name": self.name, "labels": self.labels, "capacity": self.capacity, "version": __version__,
            **({"workspaceId": self.workspace} if self.workspace else {})})
        self.node_id, self.key = reg["id"], reg["nodeKey"]
        self.poll_wait = float(reg.get("pollWaitSeconds", self.poll_wait))
        self.lease_grace = float(reg["leaseGraceSeconds"]) if reg.get("leaseGraceSeconds") else None
        if self.heartbeat_seconds is None:
            self.heartbeat_seconds = float(reg.get("heartbeatSeconds", 30))
        self._save_state()
        log.info("registered as node %s (%s) with labels %s", self.node_id, self.name, self.labels)

    async def rotate_key(self) -> None:
        rotated = await self._call("/api/compute/nodes/rotate-key", {})
        self.key = rotated["nodeKey"]
        self._save_state()
        log.info("node key rotated (%s)", rotated["keyId"])

    # ---- loops -----------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.register()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.guard.start()
        loops = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._poll_loop()),
                 asyncio.create_task(self._fence_loop())]
        if self.rotate_every:
            loops.append(asyncio.create_task(self._rotate_loop()))
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            # Stopping hands the running jobs back rather than cancelling them: killed, with no result, and left
            # out of a last heartbeat, so the runtime queues them again at once.
            for run in list(self.running.values()):
                run.handed_back = True
                self._kill(run, JobState.CANCELLED)
            await asyncio.gather(*loops, *(r.task for r in self.running.values() if r.task), return_exceptions=True)
            with contextlib.suppress(httpx.HTTPError, LeaseLost, ValueError):
                await self._heartbeat_once()
            await asyncio.to_thread(self.guard.close)

    async def _heartbeat_once(self) -> None:
        # One at a time, each listing every job held when it was sent: a job left out of a heartbeat is one this
        # node no longer runs, and the runtime takes it back at once.
        async with self._beat_lock:
            running = [{"jobId": r.job["id"], "attempt": r.job["attempt"]} for r in self.running.values()
                       if not r.handed_back]
            read = min(30.0, max(1.0, self.lease_grace / 2)) if self.lease_grace else 30.0
            answer = await self._call("/api/compute/nodes/heartbeat", {"running": running, "labels": self.labels},
                                      read_seconds=read)
            self._last_beat = time.monotonic()
            if answer.get("leaseGraceSeconds"):
                self.lease_grace = float(answer["leaseGraceSeconds"])
            self._apply(answer)

    def _apply(self, answer: dict[str, Any]) -> None:
        for job_id in answer.get("cancel", []):
            run = self.running.get(job_id)
            if run is not None:
                self._kill(run, JobState.CANCELLED)
        if answer.get("drain") and not self.draining:
            log.info("draining: finishing %d running job(s), taking no new ones", len(self.running))
        self.draining = bool(answer.get("drain"))

    async def _heartbeat_loop(self) -> None:
        while True:
            wait = self.heartbeat_seconds or 30.0
            if self.lease_grace:
                wait = min(wait, self.lease_grace / 3)  # never so rare that the node would fence itself
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._beat.wait()
                    await asyncio.sleep(START_REPORT_SECONDS)  # one heartbeat for the starts of a burst
            self._beat.clear()
            try:
                await self._heartbeat_once()
            except (httpx.HTTPError, LeaseLost, ValueError) as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _fence_loop(self) -> None:
        """Past most of the lease grace without a heartbeat getting through, the runtime is about to requeue this
        node's jobs: stop them first, so that no attempt runs twice at once (fenced jobs report no result)."""
        while True:
            if not self.lease_grace:
                await asyncio.sleep(1.0)
                continue
            silent = time.monotonic() - self._last_beat
            if silent < self.lease_grace * FENCE_FRACTION:
                await asyncio.sleep(self.lease_grace * FENCE_FRACTION - silent)
                continue
            for run in self.running.values():
                if not run.handed_back:
                    log.warning("job %s: no heartbeat got through for %.1f s (lease grace %.0f s); stopping it, the "
                                "runtime will requeue it", run.job["id"], silent, self.lease_grace)
                    run.handed_back = True
                    self._kill(run, JobState.CANCELLED, hard=True)
            await asyncio.sleep(min(1.0, self.lease_grace / 10))

    async def _rotate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rotate_every or 86400)
            try:
                await self.rotate_key()
            except (httpx.HTTPError, LeaseLost) as exc:
                log.warning("key rotation failed: %s", exc)

    async def _poll_loop(self) -> None:
        while True:
            free = self.capacity - len(self.running)
            if free <= 0 or self.draining:
                self._slot.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._slot.wait()
                if self.draining:
                    with contextlib.suppress(httpx.HTTPError, LeaseLost):
                        await self._heartbeat_once()  # learn when the drain is lifted or a cancel arrives
                continue
            try:
                answer = await self._call("/api/compute/nodes/poll", {"max": free, "waitSeconds": self.poll_wait},
                                          read_seconds=self.poll_wait + 30)
            except (httpx.HTTPError, LeaseLost, ValueError) as exc:
                log.warning("poll failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self._apply(answer)
            for job in answer.get("jobs", []):
                run = Running(job)
                self.running[job["id"]] = run
                run.task = asyncio.create_task(self._run_job(run))

    # ---- one job ---------------------------------------------------------------------------------------------

    def _kill(self, run: Running, outcome: JobState, hard: bool = False) -> None:
        if run.outcome is None:
            run.outcome = outcome
        if run.process is not None and run.process.returncode is None:
            _killpg(run.process.pid, signal.SIGKILL if hard else signal.SIGTERM)
            if hard:
                return

            async def hard_kill(process: subprocess.Popen[bytes]) -> None:
                await asyncio.sleep(KILL_GRACE_SECONDS)
                if process.returncode is None:  # set once reaped, so the pid is still this job's group
                    _killpg(process.pid, signal.SIGKILL)

            asyncio.get_running_loop().create_task(hard_kill(run.process))

    async def _flush(self, run: Running) -> None:
        while run.lines:
            batch, run.lines = run.lines[:LOG_BATCH_LINES], run.lines[LOG_BATCH_LINES:]
            try:
                await self._retrying("/api/compute/nodes/logs", {"jobId": run.job["id"], "attempt": run.job["attempt"],
                                                                 "lines": batch})
            except LeaseLost:
                self._kill(run, JobState.CANCELLED)
                raise

    async def _flusher(self, run: Running) -> None:
        """Push lines every LOG_BATCH_SECONDS until the output is all read. It is never cancelled mid-push: a
        batch taken off `run.lines` whose request was cut would be lost."""
        with contextlib.suppress(LeaseLost):
            while not run.output_done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.output_done.wait(), LOG_BATCH_SECONDS)
                await self._flush(run)

    def _spawn(self, run: Running, workdir: Path, env: dict[str, str]) -> list[_Pipe]:
        """Start the command in its own session and process group, its stdout and stderr on pipes read here."""
        job, loop = run.job, asyncio.get_running_loop()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            # Popen, not asyncio's subprocess, so that wait4() reads the job's resource use when it ends.
            run.process = subprocess.Popen(
                ["/bin/sh", "-c", job["command"]], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=out_write, stderr=err_write, start_new_session=True)
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)  # the child has its copies: end-of-file comes when the job's last one closes
            os.close(err_write)
        self.guard.add(run.process.pid)
        pipes: list[_Pipe] = []
        try:
            for fd, name in ((out_read, "stdout"), (err_read, "stderr")):
                pipes.append(_Pipe(loop, fd, name, run.add_line))
        except BaseException:
            for pipe in pipes:
                pipe.close()
            for fd in (out_read, err_read)[len(pipes):]:
                os.close(fd)
            raise
        return pipes

    def _end_group(self, process: subprocess.Popen[bytes]) -> Any:
        """The command has exited (a zombie, so its pid and group are still its own): kill whatever it left
        running in its group, then reap it. Returns its resource use."""
        _killpg(process.pid, signal.SIGKILL)
        self.guard.discard(process.pid)
        _, status, rusage = os.wait4(process.pid, 0)  # returns at once: the process has exited
        process.returncode = os.waitstatus_to_exitcode(status)
        return rusage

    async def _run_job(self, run: Running) -> None:
        job = run.job
        workdir = self.workdir / job["id"] / str(job["attempt"])
        artifacts = workdir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **job.get("env", {}), "TARX_JOB_ID": job["id"], "TARX_JOB_ATTEMPT": str(job["attempt"]),
               "TARX_ARTIFACTS_DIR": str(artifacts)}
        started = time.monotonic()
        pipes: list[_Pipe] = []
        flusher: asyncio.Task[None] | None = None
        try:
            pipes = self._spawn(run, workdir, env)
            process = run.process
            assert process is not None
            self._beat.set()  # report RUNNING now rather than at the next heartbeat
            if run.outcome is not None:  # cancelled while starting
                self._kill(run, run.outcome)
            flusher = asyncio.create_task(self._flusher(run))
            if not await _exited(process.pid, job["timeoutSeconds"]):
                self._kill(run, JobState.TIMED_OUT)
                await _exited(process.pid, None)
            rusage = self._end_group(process)
            wall = time.monotonic() - started
            await _drain(pipes)
            run.output_done.set()
            await asyncio.gather(flusher, return_exceptions=True)
            if run.handed_back:  # the runtime queues it again (and would refuse a result once it has)
                return
            await self._flush(run)  # every line is stored before the result, so followers see them all
            await self._upload_artifacts(job, artifacts)
            await self._report(run, rusage, wall)
        except LeaseLost as exc:
            log.warning("job %s: %s", job["id"], exc)
        except Exception:
            log.exception("job %s failed on this node", job["id"])
            with contextlib.suppress(Exception):
                await self._retrying("/api/compute/nodes/result", {
                    "jobId": job["id"], "attempt": job["attempt"], "state": JobState.FAILED, "reason": "node_error"})
        finally:
            if flusher is not None:
                flusher.cancel()
            for pipe in pipes:
                pipe.close()
            if run.process is not None and run.process.returncode is None:  # left early: leave nothing behind
                _killpg(run.process.pid, signal.SIGKILL)
                self.guard.discard(run.process.pid)
                asyncio.get_running_loop().run_in_executor(None, _reap, run.process.pid)
            self.running.pop(job["id"], None)
            self._slot.set()

    async def _upload_artifacts(self, job: dict[str, Any], folder: Path) -> None:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            url = await self._retrying("/api/compute/jobs/artifacts/presign-upload",
                                       {"jobId": job["id"], "name": path.name})
            r = await self.http.put(url["url"], content=path.read_bytes(), timeout=300)
            if r.status_code >= 400:
                log.warning("artifact %s of job %s not stored: %s", path.name, job["id"], r.text[:200])

    async def _report(self, run: Running, rusage: Any, wall: float) -> None:
        job, code = run.job, run.process.returncode if run.process else None
        if run.outcome is not None:
            state, reason = run.outcome, run.outcome.lower()
        elif code == 0:
            state, reason = JobState.SUCCEEDED, None
        else:
            state = JobState.FAILED
            reason = f"exit code {code}" if code is not None and code >= 0 else f"signal {-code}"
        gpu = wall if "gpu" in job.get("labels", {}) and "gpu" in self.labels else 0.0
        rss_gb = rusage.ru_maxrss / 1024 / 1024  # ru_maxrss is in KiB on Linux
        await self._retrying("/api/compute/nodes/result", {
            "jobId": job["id"], "attempt": job["attempt"], "state": state, "exitCode": code, "reason": reason,
            "runtimeMs": int(wall * 1000), "cpuSeconds": round(rusage.ru_utime + rusage.ru_stime, 4),
            "gpuSeconds": round(gpu, 3), "gbSeconds": round(rss_gb * wall, 6),
        })


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class _Pipe:
    """The read end of a job's stdout or stderr, read on the event loop into lines.

    It alone owns the fd: `close()` unregisters it from the loop and then closes it, once, on every loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, name: str,
                 emit: Callable[[str, bytes], None]) -> None:
        self.loop, self.fd, self.name, self.emit = loop, fd, name, emit
        self.pending = b""
        self.closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65_536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        while len(self.pending) >= LINE_MAX_BYTES:
            lines.append(self.pending[:LINE_MAX_BYTES])
            self.pending = self.pending[LINE_MAX_BYTES:]
        for line in lines:
            for start in range(0, max(len(line), 1), LINE_MAX_BYTES):
                self.emit(self.name, line[start:start + LINE_MAX_BYTES])

    def close(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        if self.pending:
            self.emit(self.name, self.pending)
            self.pending = b""
        if not self.closed.done():
            self.closed.set_result(None)


async def _exited(pid: int, within: float | None) -> bool:
    """Wait until our child `pid` has exited, without reaping it; False if `within` seconds pass first."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has exited
    except (AttributeError, OSError):
        waiter = loop.run_in_executor(None, os.waitid, os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        done, _ = await asyncio.wait({waiter}, timeout=within)
        return bool(done)
    exited: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        done, _ = await asyncio.wait({exited}, timeout=within)
        return bool(done)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _drain(pipes: list[_Pipe]) -> None:
    """Read what the job wrote until its pipes close; stop waiting if something outside its group (a process that
    left the group) keeps one open."""
    await asyncio.wait([p.closed for p in pipes], timeout=OUTPUT_AFTER_EXIT_SECONDS)
    for pipe in pipes:
        pipe.close()
