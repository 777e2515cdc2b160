"""The model runner processes of a runtime started by the tests, read from /proc."""

from __future__ import annotations

from pathlib import Path

from conftest import Runtime


def runner_pids(rt: Runtime) -> list[int]:
    """The pids of `rt`'s model runners (its children running runtime.inference.runner)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == rt.proc.pid and b"runtime.inference.runner" in cmd:
            pids.append(int(entry.name))
    return pids


def mapped_files(pid: int) -> str:
    """The process's memory map (/proc/<pid>/maps): which libraries and files it has loaded."""
    return Path(f"/proc/{pid}/maps").read_text()


def resident_mib(pid: int) -> float:
    """The process's resident memory (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
