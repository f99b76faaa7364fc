"""`submit`, `status` and `cancel` against the real single-node Slurm of slurm/local-cluster.sh.

Real sbatch/sacct/scontrol, real submitit job arrays, real g++ builds and trial archives; the
LLM is replayed from a transcript (with a per-call delay where a test must catch a trial
mid-run). The cluster's MaxArraySize is 4, so a study of more node groups is split.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from batchkit import REPO, ensure_cluster, release_requeued, run_cli, wait_for, write_study
from lassi_batch.batch import attempts
from lassi_batch.batch.manifest import StudyFolder, read_manifest
from lassi_batch.batch.status import collect
from lassi_batch.store.archive import TrialArchive

pytestmark = pytest.mark.skipif(subprocess.run(["which", "g++"], capture_output=True).returncode != 0,
                                reason="g++ not installed")


@pytest.fixture(scope="module")
def partition() -> str:
    return ensure_cluster()


def _steps(path: Path) -> list[str]:
    with TrialArchive.open(path, writable=False) as ar:
        return [s["key"] for s in ar.steps()]


def _finished(root: Path, n: int):
    def check():
        s = collect(root)
        return s if s.totals["done"] + s.totals["failed"] == n and not any(
            r.job_state.startswith(("PENDING", "RUNNING", "COMPLETING")) for r in s.rows) else None
    return check


@pytest.fixture(scope="module")
def finished(tmp_path_factory, partition):
    """A two-trial study submitted as one job array and run to the end."""
    tmp = tmp_path_factory.mktemp("slurm-study")
    study = write_study(tmp, trials=2, slurm_extra=f'partition = "{partition}"')
    r = run_cli("submit", str(study), "--executor", "slurm", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "submitted 2 trial(s) as 1 job array(s)" in r.stdout
    # what the array's %N says, not the study's array_parallelism (8) that submitit caps at the array size
    assert "at most 2 task(s) of each array at once (array_parallelism 8; arrays here hold at most 2 tasks)" in r.stdout
    root = tmp / "study-out"
    s = wait_for(_finished(root, 2), 480, "the study's jobs to finish", every=2)
    return tmp, study, root, s


def test_openmp_threads_follow_the_allocation(finished):
    """cpus_per_task = 1 on a 2-CPU node: the trial's programs run with OMP_NUM_THREADS=1."""
    tmp, study, root, s = finished
    with TrialArchive.open(root / "trials" / "app0.cpu.t000.h5", writable=False) as ar:
        env = ar.environment()
    assert env["env"].get("OMP_NUM_THREADS") == "1", env["env"]
    assert env["slurm"].get("SLURM_CPUS_PER_TASK") == "1", env["slurm"]


def test_submitted_study_finishes_with_one_archive_per_trial(finished):
    tmp, study, root, s = finished
    assert s.totals["done"] == 2 and s.scheduler == "sacct"
    assert set(s.jobs) == {"COMPLETED"}
    m = read_manifest(StudyFolder(root))
    assert m is not None and len(m.submissions) == 1
    jobs = m.submissions[0].jobs
    assert sorted(jobs) == ["app0.cpu.t000", "app0.cpu.t001"]
    base = m.submissions[0].arrays[0]
    assert sorted(jobs.values()) == [f"{base}_0", f"{base}_1"]
    assert (root / "study.toml").read_bytes() == study.read_bytes()
    for key in jobs:
        with TrialArchive.open(root / "trials" / f"{key}.h5", writable=False) as ar:
            assert ar.status == "done"
            assert ar.environment()["slurm"].get("SLURM_ARRAY_JOB_ID") == base


def test_resubmitting_a_finished_study_reruns_nothing(finished):
    tmp, study, root, _ = finished
    before = {p.name: p.stat().st_mtime_ns for p in (root / "trials").glob("*.h5")}
    r = run_cli("submit", str(study), "--executor", "slurm", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "2 trial(s) already done" in r.stdout and "nothing to do" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (root / "trials").glob("*.h5")} == before
    assert len(read_manifest(StudyFolder(root)).submissions) == 1


def test_status_json_reports_counts_and_scheduler(finished):
    tmp, study, root, _ = finished
    r = run_cli("status", str(root), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["counts"]["app0"]["done"] == 2 and d["totals"]["failed"] == 0 and d["scheduler"] == "sacct"


def test_dry_run_splits_arrays_at_max_array_size_and_writes_nothing(tmp_path, partition):
    study = write_study(tmp_path, trials=5, slurm_extra=f'partition = "{partition}"\narray_parallelism = 2')
    r = run_cli("submit", str(study), "--executor", "slurm", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # MaxArraySize = 4 on the local cluster: 5 trials -> arrays of 4 and 1 (a lone task is a plain job)
    assert "sbatch script 1 of 2" in r.stdout and "sbatch script 2 of 2" in r.stdout
    assert "#SBATCH --array=0-3%2" in r.stdout
    assert f"#SBATCH --partition={partition}" in r.stdout and "#SBATCH --signal=USR2@30" in r.stdout
    assert not (tmp_path / "study-out").exists()
    r = run_cli("submit", str(study), "--executor", "slurm", "--dry-run", "--trials-per-node", "3", cwd=tmp_path)
    assert "sbatch script 1 of 1" in r.stdout and "#SBATCH --array=0-1%2" in r.stdout


@pytest.mark.parametrize("flags, message", [
    (["--partition", "no-such-partition"], "partition 'no-such-partition' does not exist on this cluster"),
    (["--gres", "gpu:1"], "[slurm].gres = 'gpu:1': no node of partition"),
    (["--cpus-per-task", "4096"], "[slurm].cpus_per_task = 4096: the largest node of partition"),
    (["--slurm", "mem_gb=60000"], "[slurm].mem_gb = 60000: the largest node of partition"),
    (["--account", "no-such-account", "--qos", "no-such-qos"], "sbatch refuses the study's job settings"),
    (["--slurm", "no_such_key=1"], "slurm.no_such_key: unknown key"),
])
def test_refused_settings_give_one_line_and_write_nothing(tmp_path, partition, flags, message):
    study = write_study(tmp_path, trials=1, slurm_extra=f'partition = "{partition}"')
    r = run_cli("submit", str(study), "--executor", "slurm", *flags, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "study-out").exists()


def _slow_study(tmp: Path, partition: str, confirm_repeats: int = 3) -> tuple[Path, Path, str]:
    study = write_study(tmp, trials=1, delay_s=0.4, slurm_extra=f'partition = "{partition}"')
    study.write_text(study.read_text().replace("repeat = 1\n", f"repeat = 1\nconfirm_repeats = {confirm_repeats}\n", 1))
    r = run_cli("submit", str(study), "--executor", "slurm", cwd=tmp)
    assert r.returncode == 0, r.stderr
    root = tmp / "study-out"
    job = read_manifest(StudyFolder(root)).submissions[0].jobs["app0.cpu.t000"]
    return study, root, job


def _diagnostics(root: Path) -> str:
    """What the attempt log and submitit's job logs say, for a failure message."""
    parts = [f"attempts: {(root / 'attempts').glob('*.jsonl') and [p.read_text() for p in (root / 'attempts').glob('*.jsonl')]}"]
    for f in sorted((root / "slurm").glob("*/*_log.*")):
        parts.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
    jobs = subprocess.run(["sacct", "-X", "-P", "--format=JobID,State,ExitCode,Reason", "-S", "now-1hour"],
                          capture_output=True, text=True).stdout
    return "\n".join(parts + [jobs[-1500:]])


def _mid_run(path: Path, n: int = 6) -> None:
    def some_steps():
        try:
            return len(_steps(path)) >= n
        except Exception:  # noqa: BLE001 - not created yet
            return False
    wait_for(some_steps, 120, f"{n} steps in {path.name}")


def _in_confirmation(log: Path) -> None:
    """Until the trial's log says the stage-4 confirmation has begun (logs/<trial>.out)."""
    def confirming():
        return log.exists() and "confirmation s4/confirm0" in log.read_text(errors="replace")
    wait_for(confirming, 300, f"the confirmation to begin ({log.name})", every=0.2)


@pytest.mark.parametrize("how", ["scontrol-requeue", "usr2"])
@pytest.mark.parametrize("when", ["mid-run", "confirmation"])
def test_requeued_trial_resumes_without_lost_or_repeated_step(tmp_path, partition, how, when):
    """Requeued mid-run or during the stage-4 confirmation, the trial resumes and runs to its end.

    The end of stage 4 depends on the measurements, not on the requeue: the last step is
    `s4/report` when a candidate's saving was confirmed by the interleaved re-measurement, and the
    last confirmation tried when none was (on a loaded machine the interval may include no saving;
    the trial is then done with the source as its result). Either way the result names it.
    """
    # more confirmation runs in the second case: a window of seconds for the signal to land in
    study, root, job = _slow_study(tmp_path, partition, confirm_repeats=12 if when == "confirmation" else 3)
    arc = root / "trials" / "app0.cpu.t000.h5"
    if when == "confirmation":
        _in_confirmation(root / "logs" / "app0.cpu.t000.out")
    else:
        _mid_run(arc)
    before = _steps(arc)
    if how == "usr2":  # what Slurm sends signal_delay_s before the time limit (and on preemption)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
    else:
        subprocess.run(["scontrol", "requeue", job], check=True)
    release_requeued(job)
    try:
        wait_for(_finished(root, 1), 480, "the requeued trial to finish", every=2)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_diagnostics(root)}") from None
    after = _steps(arc)
    # Nothing lost: every step recorded before the stop is still there, first and in order.
    # Nothing repeated: each step once. (Which steps follow depends on measured energies.)
    assert after[:len(before)] == before
    assert len(after) == len(set(after))
    with TrialArchive.open(arc, writable=False) as ar:
        result, stages = ar.result(), ar.stage_times()
    assert "stage4_report" in stages, stages  # stage 4 ran to its end in the resumed attempt
    tried = int(result["confirm_tried"])
    assert tried >= 1 and [s for s in after if s.startswith("s4/confirm")] == [f"s4/confirm{i}" for i in range(tried)]
    if result["confirmed"]:
        assert after[-1] == "s4/report", (after, result["confirm_notes"])
    else:  # no saving confirmed: no report to ask for, the source is the result
        assert after[-1] == f"s4/confirm{tried - 1}" and "s4/report" not in after, (after, result["confirm_notes"])
        assert result["best_candidate"] == result["source_candidate"] and not result["improved"]
    if when == "confirmation":
        assert "s4/report" not in before and any(s.startswith("s4/confirm") for s in after)
    with TrialArchive.open(arc, writable=False) as ar:
        keys = [c.key for c in ar.llm_calls() if c.ok]
    assert len(keys) == len(set(keys))  # no LLM call made twice for one step
    info = attempts.read(root / "attempts" / "app0.cpu.t000.jsonl")
    assert info.starts == 2
    lines = [json.loads(x) for x in (root / "attempts" / "app0.cpu.t000.jsonl").read_text().splitlines()]
    ends = [x for x in lines if x["event"] == "end"]
    assert ends[0]["outcome"] == "interrupted" and ends[0]["exit"] == 75
    assert [x["restart"] for x in lines if x["event"] == "start"] == [0, 1]
    with TrialArchive.open(arc, writable=False) as ar:
        assert ar.status == "done"


def test_cancel_stops_the_study_and_status_reports_it(tmp_path, partition):
    study, root, job = _slow_study(tmp_path, partition)
    arc = root / "trials" / "app0.cpu.t000.h5"
    _mid_run(arc, 4)
    r = run_cli("cancel", str(root))
    assert r.returncode == 0 and "cancelled 1 job(s)" in r.stdout, r.stdout + r.stderr
    s = wait_for(lambda: (lambda s: s if s.rows[0].job_state.startswith("CANCELLED") and s.rows[0].status != "running" else None)(collect(root)),
                 60, "the cancelled job to end")
    row = s.rows[0]
    assert row.status == "interrupted" and row.job == job
    assert row in s.triage and row.reason
    with TrialArchive.open(arc, writable=False) as ar:  # still a readable archive, steps kept
        assert len(ar.steps()) >= 4
    r = run_cli("status", str(root))
    assert r.returncode == 0 and "interrupted" in r.stdout and "cancelled" in r.stdout.lower()
    r = run_cli("cancel", str(root))
    assert r.returncode == 0 and "nothing to cancel" in r.stdout


def test_shipped_cpu_demo_study_submits_to_the_bundled_cluster_and_finishes(tmp_path, partition):
    """`submit datasets/examples/demo.toml --executor slurm` as shipped: no GPU asked for, resources
    that fit the one-node cluster, the study folder under the working directory (one app, one trial
    of it here, to keep the test short; the full study is the same command)."""
    demo = REPO / "datasets" / "examples" / "demo.toml"
    r = run_cli("submit", str(demo), "--executor", "slurm", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--gres" not in r.stdout and "#SBATCH --cpus-per-task=2" in r.stdout
    r = run_cli("submit", str(demo), "--executor", "slurm", "--apps", "rowstats", "--trials", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    root = tmp_path / "runs" / "demo"
    assert f"folder {root}" in r.stdout and "submitted 1 trial(s)" in r.stdout
    s = wait_for(_finished(root, 1), 900, "the demo trial to finish", every=3)
    assert s.totals["done"] == 1, _diagnostics(root)
    with TrialArchive.open(root / "trials" / "rowstats.cpu.t000.h5", writable=False) as ar:
        assert ar.status == "done" and ar.result()["source_energy_j"] > 0
