"""`lassi-batch status STUDY_DIR`: where a study stands, and why trials failed or stopped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table

from ..batch.status import StudyStatus, collect
from ..store.summary import STATUSES
from . import _out


def render(s: StudyStatus) -> Group:
    counts = Table(title=f"{s.study}: {sum(s.totals.values())} trials ({s.folder})")
    counts.add_column("app")
    for st in STATUSES:
        counts.add_column(st, justify="right")
    for app, c in sorted(s.counts.items()):
        counts.add_row(app, *(str(c.get(st, 0) or "") for st in STATUSES))
    counts.add_row("[bold]all[/]", *(f"[bold]{s.totals.get(st, 0)}[/]" for st in STATUSES))
    parts: list = [counts]
    if s.jobs:
        parts.append(f"scheduler ({s.scheduler}): " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(s.jobs.items())))
    if s.triage:
        tri = Table(title="failed and interrupted trials")
        for col in ("trial", "state", "reason", "node", "job", "restarts", "last stderr"):
            tri.add_column(col, overflow="fold")
        for r in s.triage:
            job = f"{r.job} {r.job_state.lower()}".strip()
            tri.add_row(r.key, r.status, r.reason or "-", r.host or "-", job or "-", str(r.restarts),
                        "\n".join(r.stderr_tail[-5:]) or "-")
        parts.append(tri)
    return Group(*parts)


@click.command("status")
@click.argument("study_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (every trial with --all).")
@click.option("--all", "all_rows", is_flag=True, help="With --json: one entry per trial.")
@click.option("--watch", is_flag=True, help="Refresh until every trial is done or failed (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(min=1.0), default=10.0, show_default=True, help="Seconds between refreshes.")
def command(study_dir: str, as_json: bool, all_rows: bool, watch: bool, interval: float) -> None:
    """Counts per app and state, scheduler state of the jobs, and a triage table."""
    root = Path(study_dir)
    if as_json:
        click.echo(json.dumps(collect(root).to_json(with_rows=all_rows), indent=1))
        return
    console = _out.console()
    if not watch:
        console.print(render(collect(root)))
        return
    s = collect(root)
    if not console.is_terminal:  # a log or a pipe: a dated block whenever the counts change
        shown = None
        while True:
            key = (sorted(s.totals.items()), sorted(s.jobs.items()))
            if key != shown:
                console.print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}", highlight=False)
                console.print(render(s))
                shown = key
            if _ended(s):
                return
            time.sleep(interval)
            s = collect(root)
    with Live(render(s), console=console, refresh_per_second=1) as live:
        while not _ended(s):
            time.sleep(interval)
            s = collect(root)
            live.update(render(s))


def _ended(s: StudyStatus) -> bool:
    return sum(s.totals.get(k, 0) for k in ("done", "failed")) >= sum(s.totals.values())
