"""Archive v2: the journal under kills inside commits, the snapshot reader, the writer lease
(two writers, two hosts), a full disk, version-1 files and the single None encoding."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from lassi_batch.core.errors import ArchiveError, TrialInterrupted
from lassi_batch.core.records import Candidate
from lassi_batch.store import EXIT_INTERRUPTED, TrialArchive, open_trial, read_trial_summary
from lassi_batch.store.archive import journal_dir
from lassi_batch.store.schema import attr, put_value
from test_archive import PACKAGE_ROOT, PREAMBLE, WRITER, Child, check_crashed_archive, new_archive

DATA = Path(__file__).resolve().parent / "data"
CRASH_POINTS = ("entry_begin", "entry_written", "entry_linked", "entry_done", "consolidate_written",
                "consolidate_renamed", "journal_pruned")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), str(Path(__file__).parent),
                                                      env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run_writer(path: Path, limit: int, crash: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRITER, str(path), str(limit)], capture_output=True, text=True,
                          env=_env(LASSI_ARCHIVE_CRASH_AT=crash), timeout=timeout)


def test_sigkill_inside_commits_and_consolidations_then_resume(tmp_path: Path) -> None:
    """Kills at every publication point of commits and consolidations (random pass numbers);
    each resume loses nothing committed and redoes nothing; the end is one complete file."""
    path = tmp_path / "crash.h5"
    rng = random.Random(7)
    limit, durable = 12, 0
    for point in CRASH_POINTS * 2:
        p = _run_writer(path, limit, f"{point}:{rng.randint(1, 6)}")
        done = [int(x.split()[1]) for x in p.stdout.split("\n") if x.startswith("committed ")]
        assert done == list(range(durable, durable + len(done))), (point, p.stderr[-1500:])
        if p.returncode == 0:  # the trial ended before the chosen pass: start over next time
            break
        assert p.returncode == -signal.SIGKILL, p.stderr[-1500:]
        if done:
            durable = done[-1] + 1
        durable = check_crashed_archive(path, durable)
    p = _run_writer(path, limit)
    assert p.returncode == 0 and "finished" in p.stdout, p.stderr[-1500:]
    assert check_crashed_archive(path, 2 * limit) == 2 * limit
    assert not list(journal_dir(path).glob("*")) and not list(tmp_path.glob(".*.tmp"))
    with open_trial(path) as t:  # the finished trial is the one file, complete without the journal
        assert len(t.steps()) == 2 * limit and len(t.candidates()) == limit


def test_snapshot_sees_one_state_while_the_trial_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        arc.add_candidate(Candidate(key="a", stage=0))
        arc.checkpoint()
        with open_trial(path) as snap:
            assert [c.key for c in snap.candidates()] == ["a"]
            arc.add_candidate(Candidate(key="b", stage=3))
            assert [c.key for c in open_trial(path).candidates()] == ["a"]  # committed, not yet consolidated
            arc.checkpoint()
            assert [c.key for c in snap.candidates()] == ["a"] and snap.summary().n_candidates == 1  # same view
            with open_trial(path) as later:
                assert [c.key for c in later.candidates()] == ["a", "b"] and later.summary().n_candidates == 2


def test_commit_cost_is_what_the_step_adds(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        for i in range(30):
            arc.add_candidate(Candidate(key=f"c{i}", stage=3, stdout=os.urandom(20_000).hex()))
        before = arc.stats.bytes_written
        arc.add_candidate(Candidate(key="small", stage=3, stdout="ok"))
        assert arc.stats.bytes_written - before < 10_000  # not the ~1.2 MB the trial holds by now
        assert len(list(journal_dir(path).glob("*.h5"))) == 31


def test_second_writer_on_this_host_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    new_archive(path).close()
    holder = Child(PREAMBLE + "arc = TrialArchive.open(sys.argv[1]); print('locked', flush=True); time.sleep(120)",
                   str(path))
    try:
        holder.wait_for("locked")
        os.kill(holder.proc.pid, signal.SIGSTOP)  # frozen, but alive: still the owner
        with pytest.raises(ArchiveError, match=rf"host \S+ pid {holder.proc.pid}, lease generation 2"):
            TrialArchive.open(path)
    finally:
        os.kill(holder.proc.pid, signal.SIGCONT)
        holder.kill()
    with TrialArchive.open(path) as arc:  # a dead owner's lease is taken over
        assert arc._lease.owner is not None and arc._lease.owner.generation == 3


# Writer A (this host) commits until told to stop; it is frozen long enough for its lease to
# expire, and writer B on another host (a UTS namespace with another hostname) takes over.
LEASED = PREAMBLE + """
from lassi_batch.core.errors import ArchiveError
path, name = sys.argv[1], sys.argv[2]
arc = TrialArchive.open(path, lease_ttl_s=1.0)
print("open", arc._lease.owner.generation, flush=True)
for i in range(int(sys.argv[3])):
    try:
        arc.add_candidate(Candidate(key=f"{name}{i}", stage=3))
    except ArchiveError as e:
        print("refused", e, flush=True)
        break
    print("published", i, flush=True)
    time.sleep(0.02)
arc.close()
"""


def test_two_writers_on_two_hosts_cannot_both_publish(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give the second writer another host name")
    path = tmp_path / "t.h5"
    new_archive(path).close()
    a = Child(LEASED, str(path), "A", "400")
    try:
        a.wait_for("published 3")
        os.kill(a.proc.pid, signal.SIGSTOP)  # a zombie node: alive, not renewing its lease
        time.sleep(1.5)
        script = f"hostname othernode && exec {sys.executable} -c \"$0\" \"$@\""
        b = subprocess.Popen(["unshare", "--uts", "sh", "-c", script, LEASED, str(path), "B", "60"], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert b.stdout is not None
        first = b.stdout.readline()  # B has taken the lease
        os.kill(a.proc.pid, signal.SIGCONT)
        out_b, err_b = b.communicate(timeout=120)
        out_b = first + out_b
        a.proc.wait(120)
    finally:
        a.kill()
    assert b.returncode == 0, err_b
    assert "open 3" in out_b and "published 59" in out_b and "refused" not in out_b
    refused = [x for x in a.lines if x.startswith("refused")]
    assert len(refused) == 1 and "lease lost (now held by host othernode" in refused[0], a.lines[-3:]
    a_published = sum(1 for x in a.lines if x.startswith("published"))
    with TrialArchive.open(path) as arc:
        keys = [c.key for c in arc.candidates()]
    # A's work before the take-over survives, then only B's: nothing of A after B took over
    n_a = sum(1 for k in keys if k.startswith("A"))
    assert keys == [f"A{i}" for i in range(n_a)] + [f"B{i}" for i in range(60)]
    assert n_a <= a_published


def test_an_entry_published_by_another_writer_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        arc.add_candidate(Candidate(key="mine", stage=0))
        journal_dir(path).joinpath(f"{arc._seq:08d}.h5").write_bytes(b"someone else's entry")
        with pytest.raises(ArchiveError, match="published by another writer"):
            arc.add_candidate(Candidate(key="second", stage=3))
        assert journal_dir(path).joinpath(f"{arc._seq:08d}.h5").read_bytes() == b"someone else's entry"
        journal_dir(path).joinpath(f"{arc._seq:08d}.h5").unlink()


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test (needs root): {p.stderr.strip()}")


DISK_FILLER = WRITER.replace('print("ready", flush=True)', 'print("ready", flush=True)\nimport os').replace(
    'stdout="out " * 2000)', 'stdout=os.urandom(30000).hex())')


def test_disk_full_during_a_commit_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "1m")
    try:
        path = mnt / "full.h5"
        script = ("import sys\nfrom lassi_batch.core.errors import ArchiveError\n"
                  "try:\n    exec(compile(open(sys.argv[3]).read(), 'writer', 'exec'))\n"
                  "except ArchiveError as e:\n    print(f'error: {e}', file=sys.stderr)\n    sys.exit(1)\n")
        body = tmp_path / "writer.py"
        body.write_text(DISK_FILLER)
        p = subprocess.run([sys.executable, "-c", script, str(path), "40", str(body)], capture_output=True,
                           text=True, env=_env(), timeout=120)
        assert p.returncode == 1, p.stderr[-2000:]
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "disk full while" in lines[0], p.stderr
        done = [int(x.split()[1]) for x in p.stdout.split("\n") if x.startswith("committed ")]
        assert 0 < len(done) < 80
        with open_trial(path) as t:  # the published file is readable
            assert t.summary().status == "running"
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        assert check_crashed_archive(path, len(done)) >= len(done)  # nothing committed was lost
        p = subprocess.run([sys.executable, "-c", script, str(path), "40", str(body)], capture_output=True,
                           text=True, env=_env(), timeout=120)
        assert p.returncode == 0 and "finished" in p.stdout, p.stderr[-2000:]
        assert check_crashed_archive(path, 80) == 80
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_version_1_file_is_read_but_not_resumed(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    shutil.copy(DATA / "trial_v1.h5", path)
    with open_trial(path) as t:
        assert t.version == 1
        s = t.summary()
        assert (s.status, s.app, s.reduction, s.best_candidate, s.n_candidates) == ("done", "jacobi", 0.2, 1, 2)
        cands = t.candidates()
        assert cands[0].stdout == "PASS\n" and cands[0].files == {"main.cpp": "int main(){}"}
        assert cands[1].parent == 0 and cands[0].parent is None and cands[1].temperature == 0.2
        assert t.measurements(0)[0].trace.power_instant_w.size == 50
        assert t.llm_calls()[0].temperature is None and t.llm_calls()[0].reply.startswith("```cpp")
    assert read_trial_summary(path).status == "done"
    with pytest.raises(ArchiveError, match="schema version 1 can be read but not resumed") as e:
        TrialArchive.open(path)
    assert "\n" not in str(e.value)


def test_none_has_one_encoding(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as f:
        put_value(f, "a", None)
        put_value(f, "a", 1.5)
        assert set(f.attrs) == {"a"} and attr(f, "a") == 1.5
        put_value(f, "a", None)
        assert set(f.attrs) == {"a"} and attr(f, "a") is None and isinstance(f.attrs["a"], h5py.Empty)
    path = tmp_path / "t.h5"
    with new_archive(path) as arc:
        c = Candidate(key="k", stage=3, energy_j=1.0, parent=0)
        cid = arc.add_candidate(c)
        c.energy_j = None
        arc.update_candidate(cid, c)
    with h5py.File(path, "r") as f:
        g = f["candidates/000000"]
        assert isinstance(g.attrs["energy_j"], h5py.Empty) and "energy_j_json" not in g.attrs
        assert attr(g, "parent") == 0


def test_interrupted_exit_code_is_the_schedulers_requeue_code() -> None:
    assert TrialInterrupted.exit_code == EXIT_INTERRUPTED == 75
    assert not issubclass(TrialInterrupted, Exception)  # no `except Exception` swallows a stop
