"""One measurement as a picture, in the spirit of the paper's Figure 3.

Instant and averaged power against time from launch, the power the energy counter implies
between its updates, the idle baseline, the run window shaded, the tail until settled shaded
lighter, and the net energy written on it. Draws on an Agg canvas without pyplot: works on
headless nodes and leaves global state alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import energy
from .trace import Measurement


def plot_measurement(m: Measurement, path: str | Path, title: str | None = None) -> None:
    """Write a PNG of `m` to `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tr, w, f = m.trace, m.window, m.figures
    t0 = w.t_launch
    fig = Figure(figsize=(9, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t = tr.t - t0
    if energy.has_data(tr.power_instant_w):
        ax.plot(t, tr.power_instant_w, lw=1.0, color="tab:blue", label="instant power")
    if energy.has_data(tr.power_average_w):
        ax.plot(t, tr.power_average_w, lw=1.0, color="tab:orange", label="sensor average (paper)")
    if tr.counter_t.size >= 3:
        ct, cp = energy.counter_power(tr.counter_t, tr.counter_j, tr.counter_update_s)
        if ct.size:
            ax.step(ct - t0, cp, where="mid", lw=0.8, color="tab:green", alpha=0.8, label="from energy counter")
    idle = f.get("idle_w", math.nan)
    if math.isfinite(idle):
        ax.axhline(idle, color="grey", ls="--", lw=0.8, label=f"idle {idle:.1f} W")
    ax.axvspan(0.0, w.t_exit - t0, color="tab:red", alpha=0.12, label="run")
    if w.t_settled > w.t_exit:
        ax.axvspan(w.t_exit - t0, w.t_settled - t0, color="tab:red", alpha=0.05, label="tail until settled")
    ax.axvspan(w.t_idle_start - t0, 0.0, color="grey", alpha=0.08, label="idle window")

    method = str(m.attrs.get("energy_method", ""))
    est = " ESTIMATE" if tr.estimate else ""
    lines = [f"net energy{est}: {_j(f.get('energy_net_j'))} ({method})",
             f"runtime {_num(f.get('runtime_s'), 's')}, avg power {_num(f.get('power_avg_w'), 'W')}"]
    if math.isfinite(f.get("energy_eq4_paper_j", math.nan)):
        lines.append(f"paper Eq. 4 as published: {_j(f.get('energy_eq4_paper_j'))}")
    elif math.isfinite(f.get("energy_eq4_settled_j", math.nan)):
        lines.append(f"paper Eq. 4, settled idle: {_j(f.get('energy_eq4_settled_j'))}")
    if math.isfinite(f.get("energy_tail_j", math.nan)):
        lines.append(f"tail after exit: {_j(f.get('energy_tail_j'))}")
    ax.text(0.99, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.85, "ec": "0.8"})
    ax.set_xlabel("time from launch (s)")
    ax.set_ylabel("power (W)")
    rc = "" if m.returncode in (0, None) else f", exit {m.returncode}"
    ax.set_title(title or f"{tr.device} [{tr.meter}]{est}{rc}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=4, frameon=False)
    ax.grid(alpha=0.3)
    ymax = np.nanmax(np.concatenate([a for a in (tr.power_instant_w, tr.power_average_w, [1.0]) if len(a)]))
    ax.set_ylim(0, float(ymax) * 1.25 if math.isfinite(float(ymax)) else None)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def _num(v: float | None, unit: str) -> str:
    return f"{v:.2f} {unit}" if v is not None and math.isfinite(v) else "n/a"


def _j(v: float | None) -> str:
    return _num(v, "J")
