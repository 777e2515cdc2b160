"""Joules for route evidence: measured where the machine allows, estimated otherwise.

- RAPL package energy counters (`/sys/class/powercap/intel-rapl:*/energy_uj`) read around the work when readable;
  they count the whole package, so concurrent work on the machine is included (documented, not hidden).
- NVIDIA GPU energy through NVML (`nvidia-ml-py`) when a GPU and the library are present.
- Otherwise the CPU time of the work multiplied by a per-core wattage from settings (`cpu_watts_per_core`).

`raw` is what was measured (None when nothing could be), `estimated` is the CPU-time model, and `billable` is
raw when measured else estimated, rounded up to a whole joule (at least 1 for any work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")


@dataclass
class Reading:
    rapl_uj: dict[Path, int]
    gpu_mj: dict[int, int]


@dataclass
class Joules:
    raw: float | None
    estimated: float
    billable: float
    method: str

    def evidence(self) -> dict[str, Any]:
        return {"raw_joules": None if self.raw is None else round(self.raw, 3),
                "estimated_joules": round(self.estimated, 3), "billable_joules": self.billable,
                "joules_method": self.method}


def billable(raw: float | None, estimated: float) -> float:
    basis = raw if raw is not None else estimated
    return float(max(math.ceil(basis), 1 if basis > 0 else 0))


class EnergyMeter:
    def __init__(self, watts_per_core: float) -> None:
        self.watts_per_core = watts_per_core
        self._rapl = [p for p in sorted(POWERCAP.glob("intel-rapl:*/energy_uj")) if p.parent.name.count(":") == 1
                      and _readable(p)]
        self._nvml: Any = None
        self._gpus: list[Any] = []
        try:  # optional: only on machines with an NVIDIA driver and nvidia-ml-py installed
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._gpus = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:
            self._nvml = None

    @property
    def methods(self) -> list[str]:
        return [*(["rapl"] if self._rapl else []), *(["nvml"] if self._gpus else []), "cpu_time_model"]

    def read(self) -> Reading:
        rapl = {}
        for p in self._rapl:
            try:
                rapl[p] = int(p.read_text())
            except (OSError, ValueError):
                pass
        gpu = {}
        for i, handle in enumerate(self._gpus):
            try:
                gpu[i] = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            except Exception:
                pass
        return Reading(rapl, gpu)

    def joules(self, before: Reading | None, after: Reading | None, cpu_seconds: float) -> Joules:
        estimated = cpu_seconds * self.watts_per_core
        raw, methods = 0.0, []
        if before and after:
            rapl = 0.0
            for path, start in before.rapl_uj.items():
                end = after.rapl_uj.get(path)
                if end is None:
                    continue
                delta = end - start
                if delta < 0:  # the counter wrapped
                    delta += _max_range(path)
                rapl += delta / 1e6
            if before.rapl_uj and after.rapl_uj:
                raw += rapl
                methods.append("rapl")
            gpu = sum(after.gpu_mj.get(i, s) - s for i, s in before.gpu_mj.items()) / 1e3
            if before.gpu_mj:
                raw += gpu
                methods.append("nvml")
        measured = raw if methods else None
        method = "+".join(methods) if methods else "cpu_time_model"
        return Joules(measured, estimated, billable(measured, estimated), method)


def _readable(path: Path) -> bool:
    try:
        int(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def _max_range(path: Path) -> int:
    try:
        return int((path.parent / "max_energy_range_uj").read_text())
    except (OSError, ValueError):
        return 2**32
