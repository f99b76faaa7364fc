"""Bubblewrap sandbox for builds and runs of generated code on the host.

What one sandboxed command sees: the system trees and toolchain folders read-only, its own
folder (the build or run folder) as the only writable path, private tmpfs /tmp, /var/tmp and
/dev/shm, a /proc of its own PID namespace, no network, no home, and the GPU device nodes of its
platform. Everything else of the host (homes, study and archive folders, other trials' folders
under /tmp) does not exist inside.

The launch chain, each link a trusted system tool that ends in exec:

    [sh: join the run's cgroup] prlimit ... bwrap --seccomp FD ... bash REPORT [setpriv: drop root] program

- A PID namespace: when the program exits, bwrap's init ends and the kernel kills every process
  left in the namespace (setsid daemons and double forks included); `--die-with-parent` ends it
  all when lassi-batch dies. The wait4() rusage of bwrap then holds the CPU time of every process
  of the run, since the namespace's init reaps them all.
- A small report script inside, between bwrap's init and the program: after the program exits
  it counts the processes still alive in the namespace and writes `rc=N left=M` to a pipe that
  the program itself never inherits, so leftovers are recorded as a failure before they die.
- Run as root, the chain drops to an unused uid for the run after the report shell: the kernel
  exempts root from RLIMIT_NPROC, and a root program could read any root-owned file that stays
  visible. The shell itself stays root with only the capabilities setpriv needs, out of the
  program's reach: another uid cannot signal it, trace it or open its memory.
- A seccomp filter (syscall_filter.py) on the shell and everything it starts: no tracing, no
  nested namespaces, no sockets but AF_UNIX without connect, no mounts, bpf or keyrings. As a
  plain user the shell shares the program's uid, so the filter also refuses signals to it, and
  the shell runs from an execute-only copy of bash, which leaves it not dumpable: its memory
  (/proc/<pid>/mem) is closed to the program as well.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ToolchainError
from . import syscall_filter
from .limits import Limits, RunCgroup, prlimit_argv, user_process_count

SYSTEM_TREES = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Variables naming toolchain folders: bound read-only when they lie outside the system trees.
TOOLCHAIN_VARS = ("CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "ROCM_HOME", "HIP_PATH", "HIP_CLANG_PATH", "HSA_PATH",
                  "DEVICE_LIB_PATH")
TOOLCHAIN_LISTS = ("LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH")
TMPFS_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # private to each sandbox
GPU_NODES = {"cuda": ("/dev/nvidia*",), "hip": ("/dev/kfd", "/dev/dri")}
# the nodes of one GPU each (all others: control nodes every GPU program needs)
ONE_GPU_NODE = re.compile(r"nvidia[0-9]+|card[0-9]+|renderD[0-9]+")  # a node's file name
DRI = "/dev/dri"
RUN_UID_BASE = 2_100_000_000  # far above any site's user ids; one uid per run when lassi-batch is root
EXTRA_PROCS = 4  # bwrap's monitor and init, the report shell (when they run under the same uid)
REPORT_PID = 2  # the report shell's PID inside: bwrap's init is 1 and forks the command first
# As root, what bwrap's command (the report shell) keeps: setpriv needs the first three to change uid,
# groups and the bounding set; bwrap needs the last to enter the run folder, owned by the run uid.
SHELL_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH")

# Runs between bwrap's init and the program (bash: the pipe's fd number may exceed 9, which
# dash cannot redirect). $1: the report pipe's fd number (closed for the
# program), the rest: the program's argv. Zombies are not counted: the init reaps them.
REPORT_SCRIPT = r"""fd=$1; shift
eval '"$@"' "$fd>&-"
rc=$?
n=0
for p in /proc/[0-9]*; do
  q=${p#/proc/}
  if [ "$q" = 1 ] || [ "$q" = "$$" ]; then continue; fi
  s=
  { read -r s < "$p/stat"; } 2>/dev/null || continue
  s=${s##*) }
  case $s in Z*|X*|'') continue;; esac
  n=$((n+1))
done
eval 'printf "rc=%d left=%d\n" "$rc" "$n" >&'"$fd"
exit $rc
"""

REPORT_SHELL = "/bin/bash"
# A plain user's sandbox runs the shell from an execute-only copy: the kernel marks a process that
# execs a file it cannot read as not dumpable, which closes its /proc/<pid>/mem to the same uid.
SHELL_COPY = "/.lassi-report-shell"
_UIDS = itertools.count()


def _under(p: str, root: str) -> bool:
    return p == root or p.startswith(root.rstrip("/") + "/")


def _real(p: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(p)))


@dataclass
class Launch:
    """Everything run_process needs to start one sandboxed command and read its outcome."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    report_fd: int = -1  # read end of the report pipe (ours)
    cgroup: RunCgroup | None = None
    uid: int | None = None  # the run uid when root drops privileges
    notes: list[str] = field(default_factory=list)
    tools: tuple[str, ...] = ()  # trusted programs of the chain that must exist on PATH


class SandboxUnavailable(ToolchainError):
    """bubblewrap cannot build a sandbox on this machine; the message says why."""


class BwrapRunner:
    """Runs each command in its own bubblewrap sandbox (see the module docstring)."""

    name = "bwrap"
    isolated = True

    def __init__(self, platform_kind: str = "cpu", binds: Sequence[str] = (), hide: Sequence[str | Path] = (),
                 gpu_only: Sequence[str] | None = None):
        self.platform_kind = platform_kind
        self.gpu_only = None if gpu_only is None else tuple(gpu_only)  # the pinned GPU's node(s); None: all
        self.binds = [b for b in binds if b]
        self.hide = [_real(h) for h in hide if str(h)]
        self.warnings: list[str] = []
        self.drop_root = os.geteuid() == 0

    # ------------------------------------------------------------ probing

    def check(self) -> str:
        """'' when a sandbox can be built here, else the one-line reason (cached per process)."""
        return _probe(self.drop_root, shutil.which("bwrap") or "")

    # ------------------------------------------------------------ command line

    def hidden(self) -> list[str]:
        home = os.environ.get("HOME") or os.path.expanduser("~")
        out = [_real(home)] if home and home != "/" else []
        return [*out, *self.hide]

    def _extra_ro(self, env: dict[str, str], argv0: str) -> tuple[list[str], list[str]]:
        """Toolchain folders outside the system trees: (to bind, skipped with reason)."""
        want: list[str] = []
        for var in TOOLCHAIN_VARS:
            if env.get(var):
                want.append(env[var])
        for var in TOOLCHAIN_LISTS:
            want += [p for p in env.get(var, "").split(":") if p]
        if argv0 and "/" not in argv0:
            found = shutil.which(argv0, path=env.get("PATH"))
            if found:
                d = Path(_real(found)).parent
                want.append(str(d.parent if d.name == "bin" else d))
        want += self.binds
        binds, skipped = [], []
        hidden = self.hidden()
        for w in want:
            p = _real(w)
            if not os.path.isdir(p) or any(_under(p, t) for t in SYSTEM_TREES) or p in binds:
                continue
            if p == "/" or any(_under(p, h) for h in hidden):
                skipped.append(f"not bound: {w} (inside a hidden folder)")
                continue  # a hidden folder below a bound one is masked in bwrap_argv
            binds.append(p)
        return binds, skipped

    def bwrap_argv(self, workdir: Path, env: dict[str, str], argv0: str = "",
                   ro_files: Sequence[str | Path] = (), tmp_bytes: int = 0) -> tuple[list[str], list[str]]:
        """The bwrap options for a command whose writable folder is `workdir`; (argv, notes).

        As root, bwrap runs privileged without a user namespace and the command drops to the run
        uid inside (setpriv); otherwise bwrap needs an unprivileged user namespace.
        """
        wd = os.path.abspath(workdir)
        if self.drop_root:
            ns = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                  "--cap-drop", "ALL", *[a for c in SHELL_CAPS for a in ("--cap-add", c)]]
        else:
            ns = ["--unshare-all", "--cap-drop", "ALL"]
        # by absolute path, found on this process's PATH: the run's own PATH (the toolchain's) need
        # not hold it (a bwrap unpacked under a prefix, a site module)
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [bwrap, *ns, "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        for t in SYSTEM_TREES:
            if os.path.islink(t):
                args += ["--symlink", os.readlink(t), t]
            elif os.path.isdir(t):
                args += ["--ro-bind", t, t]
        args += ["--ro-bind-try", "/sys", "/sys", "--proc", "/proc", "--dev", "/dev"]
        for t in TMPFS_DIRS:  # before the binds: a run folder may live under /tmp
            args += ["--perms", "1777"]
            if tmp_bytes > 0:
                args += ["--size", str(tmp_bytes)]
            args += ["--tmpfs", t]
        extra, notes = self._extra_ro(env, argv0)
        made: set[str] = set()
        for p in extra:
            args += [*_parents(p, made), "--ro-bind", p, p]
        for h in self.hidden():  # a hidden folder inside a visible tree is masked by an empty tmpfs
            if any(_under(h, t) for t in [*SYSTEM_TREES, *extra]) and os.path.isdir(h):
                args += ["--tmpfs", h]
        for node in only_pinned(gpu_nodes(self.platform_kind), self.gpu_only):
            args += ["--dev-bind", node, node]
        for f in ro_files:
            args += [*_parents(str(f), made), "--ro-bind", str(f), str(f)]
        args += [*_parents(wd, made), "--bind", wd, wd, "--chdir", wd]
        return args, notes

    def launch(self, argv: list[str], workdir: Path, env: dict[str, str], limits: Limits,
               ro_files: Sequence[str | Path] = ()) -> Launch:
        """Argv, environment and report pipe of one sandboxed command (the caller starts it)."""
        env = dict(env)
        env["TMPDIR"] = "/tmp"  # private to the sandbox
        inner, notes = self.bwrap_argv(workdir, env, argv[0] if argv else "", ro_files,
                                       limits.tmp_mb << 20 if limits.tmp_mb > 0 else 0)
        try:  # check() has built it already where the runner came from make_runner
            built = syscall_filter.build(0 if self.drop_root else REPORT_PID)
        except (syscall_filter.FilterUnavailable, OSError) as e:
            raise SandboxUnavailable(f"no sandbox for generated code: no seccomp filter: {e}") from None
        cg = RunCgroup.create(limits)
        if cg is None:
            notes.append("no cgroup for the run: limits by rlimits, CPU time from the PID namespace")
        prefix: list[str] = []
        if cg is not None:
            prefix += ["/bin/sh", "-c", 'echo 0 > "$0" 2>/dev/null; exec "$@"', str(cg.procs_file)]
        uid = None
        drop: list[str] = []
        if self.drop_root:
            uid = RUN_UID_BASE + (os.getpid() % 100_000) * 1000 + next(_UIDS) % 1000
            groups = sorted({_gid(n) for n in only_pinned(gpu_nodes(self.platform_kind), self.gpu_only)} - {0})
            drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                    f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            nproc = limits.processes  # the run uid is the program's alone; bwrap and the shell stay root
        else:
            nproc = user_process_count(os.getuid()) + limits.processes + EXTRA_PROCS
        fds = [syscall_filter.filter_fd(built)]
        shell = ["--", REPORT_SHELL]  # bwrap's last options, then the command
        if not self.drop_root:  # as root the shell is another uid than the program already
            fds.append(os.open(f"/proc/self/fd/{_shell_image()}", os.O_RDONLY))  # a fresh offset 0
            shell = ["--perms", "0111", "--ro-bind-data", str(fds[-1]), SHELL_COPY, "--", SHELL_COPY]
        r, w = os.pipe()
        os.set_inheritable(w, True)
        full = [*prefix, *prlimit_argv(limits, nproc), *inner, "--seccomp", str(fds[0]), *shell, "-c", REPORT_SCRIPT,
                "lassi-run", str(w), *drop, *argv]
        return Launch(argv=full, env=env, pass_fds=(w, *fds), report_fd=r, cgroup=cg, uid=uid, notes=notes,
                      tools=(inner[0], "prlimit"))

    def wrap(self, argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The Runner protocol's plain form (no report pipe, no limits, no seccomp filter: it
        needs an open fd): for display only; builds and runs go through launch()."""
        inner, _ = self.bwrap_argv(workdir, env, argv[0] if argv else "")
        return [*inner, "--", *argv], dict(env)


@functools.lru_cache(maxsize=1)
def _shell_image() -> int:
    """A memfd holding the report shell's binary (read once per process), for SHELL_COPY."""
    with open(REPORT_SHELL, "rb") as fh:
        data = fh.read()
    fd = os.memfd_create("lassi-report-shell")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _parents(path: str, made: set[str]) -> list[str]:
    """`--dir` options that create the folders above `path` traversable (0755) where they are
    new in the sandbox (inside a tmpfs or the empty root), instead of copying the host's modes:
    a host folder of mode 0700 would lock the run uid out of its own run folder."""
    out: list[str] = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        d = str(Path(*parts[:i]))
        if d in made or any(_under(d, t) for t in SYSTEM_TREES) or d in TMPFS_DIRS or d in ("/proc", "/dev", "/sys"):
            continue
        made.add(d)
        out += ["--perms", "0755", "--dir", d]
    return out


def _gid(path: str) -> int:
    try:
        return os.stat(path).st_gid
    except OSError:
        return 0


def gpu_nodes(platform_kind: str) -> list[str]:
    """The device nodes a GPU platform's runtime opens (none for CPU)."""
    out: list[str] = []
    for pattern in GPU_NODES.get(platform_kind, ()):
        out += [str(n) for n in sorted(Path("/dev").glob(pattern[len("/dev/"):]))]
    return out


def only_pinned(nodes: Sequence[str], only: Sequence[str] | None) -> list[str]:
    """`nodes` without the per-GPU nodes (/dev/nvidiaN, /dev/dri/cardN, /dev/dri/renderDN) not in
    `only`; control nodes (nvidiactl, nvidia-uvm, nvidia-modeset, kfd) stay. A bound /dev/dri folder
    is opened up into its entries so that one GPU's node can be left out. `only` None: all nodes."""
    if only is None:
        return list(nodes)
    keep = set(only)
    out: list[str] = []
    for n in nodes:
        if n == DRI and os.path.isdir(n):
            out += only_pinned(sorted(str(p) for p in Path(n).iterdir() if not p.is_dir()), only)
        elif not ONE_GPU_NODE.fullmatch(os.path.basename(n)) or n in keep:
            out.append(n)
    return out


def chown_tree(root: Path, uid: int) -> None:
    """Give a folder and everything in it to the run uid (root only; symlinks not followed)."""
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            try:
                os.lchown(os.path.join(dirpath, n), uid, uid)
            except OSError:
                pass


@functools.lru_cache(maxsize=None)
def _probe(drop_root: bool, bwrap: str) -> str:
    """Build a throwaway sandbox once and check the isolation really holds inside it."""
    missing = [t for t in ("prlimit", *(["setpriv"] if drop_root else [])) if shutil.which(t) is None]
    if not bwrap:
        missing.insert(0, "bwrap")
    if not os.access(REPORT_SHELL, os.X_OK):
        missing.append(REPORT_SHELL)
    if missing:
        return f"{', '.join(missing)} not found on PATH (Debian packages bubblewrap, util-linux)"
    why = syscall_filter.problem()
    if why:
        return f"no seccomp filter: {why}"
    runner = BwrapRunner("cpu")
    runner.drop_root = drop_root
    with tempfile.TemporaryDirectory(prefix="lassi-probe-") as tmp:
        launch = runner.launch(["/bin/sh", "-c", "readlink /proc/self/ns/net; echo $$; id -u; "
                                "sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status; echo $PPID"], Path(tmp),
                               {"PATH": os.defpath}, Limits(time_s=30))
        if launch.uid is not None:
            chown_tree(Path(tmp), launch.uid)
        try:
            p = subprocess.run(launch.argv, env=launch.env, cwd=tmp, pass_fds=launch.pass_fds, capture_output=True,
                               text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap failed to start: {e}"
        finally:
            for fd in (*launch.pass_fds, launch.report_fd):
                os.close(fd)
            if launch.cgroup is not None:
                launch.cgroup.remove()
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            return f"bwrap cannot create a sandbox here: {why}"
        lines = p.stdout.split()
        if len(lines) < 3 or lines[0] == os.readlink("/proc/self/ns/net") or not lines[1].isdigit() \
                or int(lines[1]) > 8:
            return f"bwrap ran but the namespaces were not private ({' '.join(lines)})"
        if drop_root and lines[2] != str(launch.uid):
            return f"the sandbox did not drop root (uid {lines[2]} inside)"
        if lines[3:4] != ["2"]:  # 2: a filter is loaded (the kernel's seccomp mode "filter")
            return f"bwrap ran but no seccomp filter was in force inside (Seccomp: {' '.join(lines[3:4]) or '?'})"
        if lines[4:5] != [str(REPORT_PID)]:  # the filter's signal rules name the shell by this PID
            return f"the report shell is not PID {REPORT_PID} inside ({' '.join(lines[4:5]) or '?'})"
    return ""
