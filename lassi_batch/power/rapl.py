"""CPU package energy from the Linux powercap RAPL interface.

Reads /sys/class/powercap/intel-rapl:<N>/energy_uj for every package zone (the top-level zones;
sub-zones such as core and dram are contained in or beside them and are not added). Each zone
wraps at its max_energy_range_uj, so each is unwrapped on its own before the sum. Since Linux
5.10 (CVE-2020-8694) energy_uj is readable by root only on most distributions: that is reported
as the reason the meter is unavailable.

RAPL has no power reading: the instant channel is the energy difference between consecutive
samples (RAPL updates about every 1 ms), and there is no averaged channel.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.config import PlatformConfig
from .base import Meter, MeterUnavailable
from .energy import unwrap_delta

NAN = math.nan
POWERCAP = Path("/sys/class/powercap")
_ZONE = re.compile(r"intel-rapl:(\d+)")


@dataclass
class _Zone:
    name: str
    path: Path
    wrap_uj: float
    last_raw: float
    total_uj: float = 0.0


def _read_number(p: Path) -> float:
    return float(p.read_text().strip())


def find_zones(root: Path = POWERCAP) -> list[tuple[str, Path]]:
    """Package zones under `root` as (name, folder), e.g. ("package-0", .../intel-rapl:0)."""
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        if _ZONE.fullmatch(d.name) and (d / "energy_uj").exists():
            name_file = d / "name"
            name = name_file.read_text().strip() if name_file.is_file() else d.name
            out.append((name, d))
    return out


class RaplMeter(Meter):
    """Sum of the package zones' energy counters; power derived from counter differences."""

    name = "rapl"
    counter_interval_s = 0.01  # a sysfs read is cheap; read at the sample rate (see energy.counter_steps)
    counter_update_s = 0.001  # RAPL updates its energy status about every millisecond
    cold_start_s = 0.0
    wait_cap_s = 2.0  # no GPU to cool: never wait long for a CPU package to settle
    settle_hold_s = 0.2

    def __init__(self, zones: list[_Zone]) -> None:
        names = ", ".join(z.name for z in zones)
        super().__init__(device=f"CPU packages ({names})", device_id=",".join(str(z.path) for z in zones))
        self._zones = zones
        self._last_t: float | None = None
        self._last_j = 0.0
        self.notes.append("rapl: package energy covers the whole CPU socket(s), other processes included")

    @classmethod
    def open(cls, platform: PlatformConfig, env: Mapping[str, str], root: Path = POWERCAP) -> RaplMeter:
        found = find_zones(root)
        if not found:
            raise MeterUnavailable(f"no RAPL package zones under {root} (not an x86 host, or powercap not loaded)")
        zones: list[_Zone] = []
        for name, d in found:
            try:
                raw = _read_number(d / "energy_uj")
            except PermissionError:
                raise MeterUnavailable(
                    f"{d / 'energy_uj'} is readable by root only (Linux >= 5.10 restricts RAPL, CVE-2020-8694)"
                ) from None
            except (OSError, ValueError) as e:
                raise MeterUnavailable(f"cannot read {d / 'energy_uj'}: {e}") from None
            try:
                wrap = _read_number(d / "max_energy_range_uj")
            except (OSError, ValueError):
                wrap = 0.0
            zones.append(_Zone(name=name, path=d, wrap_uj=wrap, last_raw=raw))
        meter = cls(zones)
        if any(z.wrap_uj <= 0 for z in zones):
            meter.notes.append("rapl: max_energy_range_uj unreadable for a zone: wraps there are stitched as resets")
        return meter

    def _total_j(self) -> float:
        """Unwrapped energy of all zones since the meter opened (J)."""
        for z in self._zones:
            raw = _read_number(z.path / "energy_uj")
            z.total_uj += max(unwrap_delta(z.last_raw, raw, z.wrap_uj), 0.0)
            z.last_raw = raw
        return sum(z.total_uj for z in self._zones) / 1e6

    @property
    def has_counter(self) -> bool:
        return True

    @property
    def channels(self) -> str:
        return "energy counter (power derived from it)"

    def read_power(self) -> tuple[float, float, float]:
        now = time.monotonic()
        j = self._total_j()
        p = NAN
        if self._last_t is not None and now > self._last_t:
            p = (j - self._last_j) / (now - self._last_t)
        self._last_t, self._last_j = now, j
        return p, NAN, NAN

    def read_counter_j(self) -> float | None:
        return self._total_j()
