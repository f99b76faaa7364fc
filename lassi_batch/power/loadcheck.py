"""Which GPU did a known load land on? Per-GPU utilisation and power, read and judged.

Numbering can fool every other check: CUDA counts devices fastest-first unless told otherwise,
NVML and amdsmi count in PCI order, and visible-devices variables renumber what a program sees.
So a trial proves its pinning physically: a short load run on "its" GPU must raise that GPU's
utilisation or power, and no other GPU's. `judge_load` is the pure verdict over readings taken
before and during the load; `GpuReadings` reads every GPU of the node through the vendor library,
each opened by UUID (PCI bus id where a GPU has none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import MeterUnavailable
from ..system.gpus import GpuInfo, amdsmi_gpus, import_pynvml, nvml_gpus, parse_pci
from .amdsmi import import_amdsmi, power_readings, valid_number
from .nvml import FI_POWER_INSTANT, _field_value

UTIL_RISE_PCT = 30.0  # a busy kernel takes utilisation from ~0 to ~100 %
POWER_RISE_W = 15.0  # and power well above idle: at least this ...
POWER_RISE_FRAC = 0.15  # ... and this fraction of the level before


@dataclass(frozen=True)
class Reading:
    """One GPU over a window: utilisation (%) and power (W); None where not readable."""

    util_pct: float | None = None
    power_w: float | None = None


@dataclass
class Verdict:
    ok: bool
    reason: str = ""
    rose: list[str] = field(default_factory=list)  # GPUs (by key) whose readings rose with the load

    def record(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "rose": list(self.rose)}


def rose(before: Reading, during: Reading) -> bool:
    """Did this GPU's utilisation or power rise clearly while the load ran?"""
    if before.util_pct is not None and during.util_pct is not None \
            and during.util_pct - before.util_pct >= UTIL_RISE_PCT:
        return True
    if before.power_w is not None and during.power_w is not None:
        return during.power_w - before.power_w >= max(POWER_RISE_W, POWER_RISE_FRAC * before.power_w)
    return False


def _fmt(r: Reading) -> str:
    parts = []
    if r.util_pct is not None:
        parts.append(f"{r.util_pct:.0f} %")
    if r.power_w is not None:
        parts.append(f"{r.power_w:.0f} W")
    return ", ".join(parts) or "unreadable"


def judge_load(pinned: GpuInfo, gpus: Sequence[GpuInfo], before: Mapping[str, Reading],
               during: Mapping[str, Reading], reported_pci: str = "") -> Verdict:
    """The verdict on one test load run on `pinned`: ok when its readings rose and no other
    GPU's did, and (when the program named the PCI address of the device it ran on) that
    address is the pinned GPU's. Readings are keyed by GpuInfo.key."""
    names = {g.key: f"{g.key} (PCI {g.pci_bus_id}, position {g.index})" for g in gpus}
    key = pinned.key
    if reported_pci and parse_pci(reported_pci) != parse_pci(pinned.pci_bus_id):
        return Verdict(False, f"the test program's runtime ran on PCI {reported_pci}, not on the pinned GPU "
                              f"{names.get(key, key)}")
    b, d = before.get(key, Reading()), during.get(key, Reading())
    if (b.util_pct is None or d.util_pct is None) and (b.power_w is None or d.power_w is None):
        return Verdict(False, f"neither utilisation nor power of the pinned GPU {names.get(key, key)} can be read: "
                              "its pinning cannot be checked")
    up = [g.key for g in gpus if g.key in before and g.key in during and rose(before[g.key], during[g.key])]
    if key not in up:
        where = (f"; it showed on {', '.join(names.get(k, k) for k in up)} instead" if up
                 else "; no GPU's readings rose")
        return Verdict(False, f"a test load on the pinned GPU {names.get(key, key)} did not raise its readings "
                              f"({_fmt(b)} before, {_fmt(d)} during){where}", up)
    others = [k for k in up if k != key]
    if others:
        return Verdict(False, f"a test load on the pinned GPU {names.get(key, key)} also raised "
                              f"{', '.join(names.get(k, k) for k in others)}: the program may see more than its GPU "
                              "(or another job started there at the same time)", up)
    return Verdict(True, f"a test load raised {names.get(key, key)} alone ({_fmt(b)} before, {_fmt(d)} during)", up)


def combine(samples: Sequence[Mapping[str, Reading]], how: str) -> dict[str, Reading]:
    """Per GPU over a window of samples: `mean` (the level before a load) or `max` (during it)."""
    keys = {k for s in samples for k in s}
    out: dict[str, Reading] = {}
    for k in keys:
        vals: dict[str, list[float]] = {"util_pct": [], "power_w": []}
        for s in samples:
            r = s.get(k)
            if r is None:
                continue
            for name in vals:
                v = getattr(r, name)
                if v is not None and math.isfinite(v):
                    vals[name].append(v)
        pick = (lambda xs: sum(xs) / len(xs)) if how == "mean" else max
        out[k] = Reading(**{n: (pick(v) if v else None) for n, v in vals.items()})
    return out


class GpuReadings:
    """Utilisation and power of every GPU of the node, through NVML (cuda) or amdsmi (hip)."""

    def __init__(self, platform_kind: str) -> None:
        self.kind = platform_kind
        if platform_kind == "cuda":
            try:
                self._lib = import_pynvml()
            except ImportError as e:
                raise MeterUnavailable("nvidia-ml-py (pynvml) is not installed") from e
            self._lib.nvmlInit()
            self.gpus, _ = nvml_gpus(self._lib)
            self._h = {g.key: self._lib.nvmlDeviceGetHandleByUUID(g.uuid) for g in self.gpus}
        elif platform_kind == "hip":
            self._lib = import_amdsmi()
            self._lib.amdsmi_init()
            self.gpus, self._h = amdsmi_gpus(self._lib)
        else:
            raise MeterUnavailable(f"no GPU readings on the {platform_kind} platform")

    def read(self) -> dict[str, Reading]:
        return {k: (self._nvml(h) if self.kind == "cuda" else self._amd(h)) for k, h in self._h.items()}

    def _nvml(self, h: Any) -> Reading:
        nv = self._lib
        util = power = None
        try:
            util = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        except (nv.NVMLError, AttributeError, TypeError, ValueError):
            pass
        try:
            fv = nv.nvmlDeviceGetFieldValues(h, [FI_POWER_INSTANT])[0]  # follows a load within ~0.1 s
            if int(fv.nvmlReturn) == 0:
                power = _field_value(fv) / 1000.0
        except (nv.NVMLError, AttributeError, IndexError, TypeError, ValueError):
            pass
        if power is None:
            try:
                power = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            except (nv.NVMLError, AttributeError, TypeError):
                pass
        return Reading(util, power)

    def _amd(self, h: Any) -> Reading:
        lib = self._lib
        util = power = None
        try:
            u = valid_number(lib.amdsmi_get_gpu_activity(h).get("gfx_activity"))
            util = u if math.isfinite(u) else None
        except Exception:
            pass
        try:
            inst, avg = power_readings(lib.amdsmi_get_power_info(h))
            p = inst if math.isfinite(inst) else avg
            power = p if math.isfinite(p) else None
        except Exception:
            pass
        return Reading(util, power)

    def close(self) -> None:
        try:
            if self.kind == "cuda":
                self._lib.nvmlShutdown()
            else:
                self._lib.amdsmi_shut_down()
        except Exception:
            pass
