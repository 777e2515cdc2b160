"""A worker node: registers, heartbeats, long-polls for jobs, runs each in its own directory and process group,
streams log lines in batches, uploads artifacts, and reports a result with the resources it used.

It honours cancel (kills the process group), timeouts, drain (finishes what runs, takes nothing new) and key
rotation. It speaks only the HTTP API, through whichever httpx client it is given (a remote URL, or the
runtime's own app in-process).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runtime import __version__
from runtime.store.db import utcnow
from runtime.store.jobs import JobState

log = logging.getLogger("tarx.node")

LOG_BATCH_SECONDS = 0.2
LOG_BATCH_LINES = 500
KILL_GRACE_SECONDS = 2.0


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
        self.draining = False
        self.running: dict[str, Running] = {}
        self._slot = asyncio.Event()

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
        loops = [asyncio.create_task(self._heartbeat_loop()), asyncio.create_task(self._poll_loop())]
        if self.rotate_every:
            loops.append(asyncio.create_task(self._rotate_loop()))
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            for run in list(self.running.values()):
                self._kill(run, JobState.CANCELLED)
            await asyncio.gather(*loops, *(r.task for r in self.running.values() if r.task), return_exceptions=True)

    async def _heartbeat_once(self) -> None:
        running = [{"jobId": r.job["id"], "attempt": r.job["attempt"]} for r in self.running.values()]
        answer = await self._call("/api/compute/nodes/heartbeat", {"running": running, "labels": self.labels})
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
            await asyncio.sleep(self.heartbeat_seconds or 30)
            try:
                await self._heartbeat_once()
            except (httpx.HTTPError, LeaseLost, ValueError) as exc:
                log.warning("heartbeat failed: %s", exc)

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

    def _kill(self, run: Running, outcome: JobState) -> None:
        if run.outcome is None:
            run.outcome = outcome
        if run.process is not None and run.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGTERM)

            async def hard_kill(process: subprocess.Popen[bytes]) -> None:
                await asyncio.sleep(KILL_GRACE_SECONDS)
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)

            asyncio.get_running_loop().create_task(hard_kill(run.process))

    async def _read(self, run: Running, stream: asyncio.StreamReader, name: str) -> None:
        while line := await stream.readline():
            run.seq += 1
            run.lines.append({"seq": run.seq, "stream": name, "text": line.decode(errors="replace").rstrip("\n"),
                              "time": utcnow()})

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
        with contextlib.suppress(LeaseLost):
            while True:
                await asyncio.sleep(LOG_BATCH_SECONDS)
                await self._flush(run)

    async def _run_job(self, run: Running) -> None:
        job = run.job
        workdir = self.workdir / job["id"] / str(job["attempt"])
        artifacts = workdir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **job.get("env", {}), "TARX_JOB_ID": job["id"], "TARX_JOB_ATTEMPT": str(job["attempt"]),
               "TARX_ARTIFACTS_DIR": str(artifacts)}
        started = time.monotonic()
        try:
            # Its own session and process group: cancel and timeout kill everything the command started. Popen, not
            # asyncio's subprocess, so that wait4() below reaps it and reads its resource use.
            run.process = subprocess.Popen(  # noqa: ASYNC220 - fork/exec returns at once
                ["/bin/sh", "-c", job["command"]], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            if run.outcome is not None:  # cancelled while starting
                self._kill(run, run.outcome)
            assert run.process.stdout is not None and run.process.stderr is not None
            readers = asyncio.gather(self._read(run, await _reader(run.process.stdout), "stdout"),
                                     self._read(run, await _reader(run.process.stderr), "stderr"))
            flusher = asyncio.create_task(self._flusher(run))
            # wait4() in a thread gives the exit status and the CPU time and peak memory of the whole tree.
            waiter = asyncio.ensure_future(asyncio.to_thread(os.wait4, run.process.pid, 0))
            done, _ = await asyncio.wait({waiter}, timeout=job["timeoutSeconds"])
            if not done:
                self._kill(run, JobState.TIMED_OUT)
            _, status, rusage = await waiter
            run.process.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - started
            await readers
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
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


async def _reader(pipe: Any) -> asyncio.StreamReader:
    """An asyncio reader over a pipe of a process started with subprocess.Popen."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader
