"""`lassi-batch submit STUDY.toml`: run a whole study on Slurm (job arrays) or on this machine."""

from __future__ import annotations

import sys
import threading
import time

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..batch import submit as sub
from ..batch import attempts
from ..batch.manifest import TrialRef
from ..batch.trialproc import STAGE_MARK, elapsed
from ..store.summary import EXIT_FAILED
from ._trials import archive_row, summary_table
from . import _out


@click.command("submit")
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--executor", type=click.Choice(sub.EXECUTORS), default="auto", show_default=True,
              help="slurm (job arrays through submitit), local (this machine), auto: slurm when sbatch is here.")
@click.option("--partition", help="Slurm partition (default: the study's [slurm].partition).")
@click.option("--account", help="Slurm account.")
@click.option("--qos", help="Slurm QOS.")
@click.option("--time", "time_limit", help="Time limit per job, e.g. 04:00:00.")
@click.option("--gres", help="Generic resources per job, e.g. gpu:1 ('' for none).")
@click.option("--cpus-per-task", type=click.IntRange(min=1), help="CPUs per job (default: the study's [slurm].cpus_per_task).")
@click.option("--mem-gb", type=click.IntRange(min=0), help="Memory per job in GB, 0 = the partition's default.")
@click.option("--exclusive/--shared", default=None, help="Whole nodes per job (default from the study).")
@click.option("--slurm", "slurm_kv", multiple=True, metavar="KEY=VALUE",
              help="Any [slurm] key of the study, e.g. --slurm max_restarts=5 --slurm 'extra=[\"--constraint=a100\"]' "
                   "(VALUE is read as TOML, else as text); repeatable.")
@click.option("--trials", type=click.IntRange(min=1), help="Trials per app (default: the study's [study].trials).")
@click.option("--apps", "only_apps", help="Comma-separated subset of the study's apps.")
@click.option("--out", type=click.Path(file_okay=False), help="Study folder (default: the study's [study].out).")
@click.option("--array-parallelism", type=click.IntRange(min=1), help="At most N array tasks at once (%N).")
@click.option("--trials-per-node", type=click.IntRange(min=1),
              help="Trials sharing one node (Slurm) or run at once here (local).")
@click.option("--retry-failed", is_flag=True, help="Run failed trials again (done ones are never rerun).")
@click.option("--fresh", is_flag=True, help="Start the selected trials over, discarding their archives.")
@click.option("--dry-run", is_flag=True, help="Print the sbatch script(s) and container command lines; submit nothing.")
def command(study_file: str, executor: str, partition: str | None, account: str | None, qos: str | None,
            time_limit: str | None, gres: str | None, cpus_per_task: int | None, mem_gb: int | None,
            exclusive: bool | None, slurm_kv: tuple[str, ...], trials: int | None, only_apps: str | None,
            out: str | None, array_parallelism: int | None, trials_per_node: int | None, retry_failed: bool,
            fresh: bool, dry_run: bool) -> None:
    """Submit every trial of STUDY_FILE; again later to resume what did not finish."""
    over: dict[str, Any] = {}
    slurm_over = key_values(slurm_kv, "--slurm")
    slurm_over.update({k: v for k, v in (("partition", partition), ("account", account), ("qos", qos),
                                         ("time", time_limit), ("gres", gres), ("cpus_per_task", cpus_per_task),
                                         ("mem_gb", mem_gb), ("exclusive", exclusive)) if v is not None})
    if slurm_over:
        over["slurm"] = slurm_over
    if out:
        over["study"] = {"out": str(Path(out).resolve())}
    if trials:
        over.setdefault("study", {})["trials"] = trials
    apps = [a.strip() for a in only_apps.split(",") if a.strip()] if only_apps else None
    req = sub.Request(Path(study_file), executor=executor, overrides=over, apps=apps,
                      array_parallelism=array_parallelism, trials_per_node=trials_per_node,
                      retry_failed=retry_failed, fresh=fresh, dry_run=dry_run)
    sys.exit(run_request(req, _out.console()))


def key_values(items: tuple[str, ...], option: str) -> dict[str, Any]:
    """`KEY=VALUE` pairs as a dict; VALUE is read as a TOML value (5, true, "a", [..]) or else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"{option} '{item}': expected KEY=VALUE, e.g. {option} cpus_per_task=2")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def run_request(req: sub.Request, console: Console) -> int:
    """Prepare, then submit or run; returns the exit status (1 when a local trial failed)."""
    prep = sub.prepare(req)
    study = prep.study
    actions = Counter(p.action for p in prep.plan)
    console.print(f"[bold]{study.name}[/]: {len(prep.trials)} trials ({len(study.apps)} apps x {study.trials}) "
                  f"on {study.platform.kind}, executor {prep.executor}, folder {prep.folder.root}")
    for p in prep.plan:
        if p.action == "skip" and p.why == "already done":
            continue
        if p.action == "skip" or p.why:
            console.print(f"  {p.trial.key}: {'skipped' if p.action == 'skip' else p.action}" + (f" ({p.why})" if p.why else ""))
    done = sum(1 for p in prep.plan if p.why == "already done")
    if done:
        console.print(f"  {done} trial(s) already done (--fresh starts them again)")
    if req.dry_run:
        for i, s in enumerate(prep.scripts):
            console.print(f"[bold]# sbatch script {i + 1} of {len(prep.scripts)}[/]", highlight=False)
            click.echo(s)
        if prep.to_run:
            for line in sub.container_lines(study, prep.to_run[0]):
                click.echo(line)
        console.print(f"dry run: would {'submit' if prep.executor == 'slurm' else 'run'} {len(prep.to_run)} trial(s) "
                      f"({', '.join(f'{n} {a}' for a, n in sorted(actions.items()))}); nothing written")
        return 0
    if not prep.to_run:
        console.print("nothing to do: every trial is done, failed (see --retry-failed) or already queued")
        return 0
    submission, settings = sub.commit(prep)
    if prep.executor == "slurm":
        arrays = sub.submit_slurm(prep, submission, settings)
        console.print(f"submitted {len(prep.to_run)} trial(s) as {len(arrays)} job array(s): {', '.join(arrays)} "
                      f"(trials per node {study.slurm.trials_per_node}, {sub.at_once(prep)})")
        console.print(f"follow with: lassi-batch status {prep.folder.root}")
        return 0
    return _run_here(prep, settings, console)


STAGE_POLL_S = 2.0  # how often the running trials' logs are looked at for a new stage


def _run_here(prep: sub.Prepared, settings: Path, console: Console) -> int:
    parallel = prep.study.slurm.trials_per_node
    lock = threading.Lock()
    tally: Counter[str] = Counter()
    running: dict[str, list[Any]] = {}  # trial key -> [start time, log path, last stage shown]

    def on_event(kind: str, t: TrialRef, info: dict[str, Any]) -> None:
        with lock:
            if kind == "start":
                running[t.key] = [time.monotonic(), prep.folder.stdout(t), ""]
            elif kind == "end":
                t0 = running.pop(t.key, [time.monotonic()])[0]
                tally[info["outcome"]] += 1
                why = f": {info['reason']}" if info.get("reason") and info["outcome"] != "done" else ""
                console.print(f"  {t.key}: {info['outcome']} after {elapsed(time.monotonic() - t0)}{why}", highlight=False)

    def follow(stop: threading.Event) -> None:
        """A line per trial and stage, with the time since the trial started (from logs/<trial>.out)."""
        while not stop.wait(STAGE_POLL_S):
            with lock:
                for key, entry in running.items():
                    t0, log, shown = entry
                    stages = [ln for ln in attempts.tail(log, 40) if STAGE_MARK in ln]
                    stage = stages[-1].split(STAGE_MARK, 1)[1].strip() if stages else ""
                    if stage and stage != shown:
                        entry[2] = stage
                        console.print(f"  {key}: {stage} ({elapsed(time.monotonic() - t0)} so far)", highlight=False)

    console.print(f"running {len(prep.to_run)} trial(s) here, {min(parallel, len(prep.to_run))} at a time; each trial's steps in "
                  f"{prep.folder.root / 'logs'}/<trial>.out")
    stop = threading.Event()
    watcher = threading.Thread(target=follow, args=(stop,), daemon=True)
    watcher.start()
    try:
        results = sub.run_local(prep, settings, parallel, on_event)
    finally:
        stop.set()
        watcher.join(STAGE_POLL_S + 1)
    failed = sub.failed_reasons(prep.folder, results)
    rows = [archive_row(prep.folder.archive(r.trial), r.trial.app, r.trial.index) for r in results
            if prep.folder.archive(r.trial).exists() and r.outcome in ("done", "failed", "already done")]
    if rows:
        console.print(summary_table(sorted(rows, key=lambda x: (x["app"], x["trial"]))))
    summary = ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))
    console.print(f"finished: {summary or 'nothing ran'}; archives in {prep.folder.root / 'trials'}")
    for t, reason in failed:
        console.print(f"[red]failed[/] {t.key}: {reason}", highlight=False)
    if any(r.outcome == "interrupted" for r in results):
        console.print("interrupted trials resume with the same submit command")
    return EXIT_FAILED if failed else 0
