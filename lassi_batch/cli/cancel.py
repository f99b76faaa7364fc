"""`lassi-batch cancel STUDY_DIR`: cancel a study's queued and running Slurm jobs."""

from __future__ import annotations

from pathlib import Path

import click

from ..batch import slurm
from ..batch.manifest import StudyFolder, read_manifest
from ..core.errors import ConfigError
from . import _out


@click.command("cancel")
@click.argument("study_dir", type=click.Path(file_okay=False))
def command(study_dir: str) -> None:
    """Cancel every job of the study that is still queued or running.

    Running trials get SIGTERM and stop at a step boundary as `interrupted`; every archive stays
    readable, and `submit` resumes them later.
    """
    folder = StudyFolder(Path(study_dir).resolve())
    m = read_manifest(folder)
    if m is None:
        raise ConfigError(f"{study_dir}: no study here (no manifest.json)")
    jobs = [j for j in m.last_job().values() if j != "local"]
    console = _out.console()
    if not jobs:
        console.print("no Slurm jobs recorded for this study")
        return
    if not slurm.have_slurm():
        raise ConfigError("scancel not found: run cancel on the cluster's login node")
    conf = slurm.cluster_config()
    states = slurm.job_states(jobs, slurm.accounting_enabled(conf))
    active = sorted({j for j, s in states.items() if slurm.is_active(s)})
    if not active:
        console.print("no queued or running jobs: nothing to cancel")
        return
    arrays = slurm.cancel(active)
    console.print(f"cancelled {len(active)} job(s) in {len(arrays)} array(s): {', '.join(arrays)}")
