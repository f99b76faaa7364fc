"""The seccomp filter every bubblewrap build and run loads: system calls generated code never needs.

Namespaces, a read-only system and a dropped uid leave the kernel itself within reach. This
filter takes away the calls that reach other processes or widen that surface, and is built with
libseccomp (through its ctypes binding `pyseccomp`), never as hand-written BPF: libseccomp
resolves the numbers per architecture, checks the architecture word, and keeps x32 calls out.
bubblewrap loads it (`--seccomp FD`) just before it execs the command, after its own set-up.

Policy: everything not named below is allowed, so that compilers and GPU runtimes keep working
(g++, nvcc and hipcc builds run under it in the tests; a CUDA run is checked on a GPU by
scripts/gpu_campaign.sh's sandbox section).

- Other processes: `ptrace`, `process_vm_readv/writev`, `process_madvise`, `pidfd_getfd`, `kcmp`.
- Kernel surface: `bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*` (its queued operations
  would bypass the socket rules below), `kexec_*`, modules, `keyctl`/`add_key`/`request_key`,
  `mount` and the new mount API, `pivot_root`, `chroot`, swap, quota, `reboot`, `syslog`, `acct`,
  `iopl`/`ioperm`, file handles.
- Namespaces: `setns`; `unshare` and `clone` with any namespace flag; `clone3` answers ENOSYS
  (its flags sit in memory a filter cannot read), and the C library falls back to `clone`.
  (bubblewrap 0.8's `--disable-userns` covers user namespaces only, and only where bwrap made one:
  as root it makes none.)
- Sockets: only AF_UNIX, stream or seqpacket, and `connect` always fails with ENOENT. A socket
  file in a bound folder (a daemon's, world-writable) is reachable by path whatever the mount
  says, and a filter cannot read the path; with no `connect` and no datagrams, nothing outside
  the run can be addressed. AF_UNIX itself stays because GPU runtimes open one at start-up to
  look for an optional daemon (the CUDA driver probes the MPS control socket): ENOENT is what
  they see on any machine where that daemon is not running, so they go on without it.
  `socketpair` works (it needs no address).
- When the report shell runs under the program's own uid (a plain user's sandbox), signals and
  rlimit changes aimed at it (PID `guard_pid`, its process group, `-1`, `0`) are refused too;
  under root the shell keeps root and the kernel's uid checks already keep the program away.

A denied call fails with EPERM unless said otherwise, so a program sees an ordinary error.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from dataclasses import dataclass

MASK32 = 0xFFFF_FFFF  # pid and int arguments: the kernel reads only the low 32 bits of the register

DENIED = (
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    # kernel surface
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "keyctl", "add_key", "request_key",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr",
    "swapon", "swapoff", "quotactl", "quotactl_fd", "reboot", "syslog", "acct", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "uselib",
    # namespaces
    "setns",
)
CLONE_NAMESPACES = {  # CLONE_NEWTIME (0x80) is only valid for unshare: in clone's flags it is the exit signal
    "CLONE_NEWNS": 0x0002_0000, "CLONE_NEWCGROUP": 0x0200_0000, "CLONE_NEWUTS": 0x0400_0000,
    "CLONE_NEWIPC": 0x0800_0000, "CLONE_NEWUSER": 0x1000_0000, "CLONE_NEWPID": 0x2000_0000,
    "CLONE_NEWNET": 0x4000_0000,
}
CLONE_NEWTIME = 0x80
SOCK_TYPE_MASK = 0xF
SIGNAL_CALLS = ("kill", "tkill", "rt_sigqueueinfo", "pidfd_open", "prlimit64")  # first argument: a pid


class FilterUnavailable(RuntimeError):
    """The filter cannot be built here (no libseccomp, or its binding is missing)."""


@dataclass(frozen=True)
class Built:
    """A compiled filter: the BPF program bubblewrap loads, and what went into it."""

    bpf: bytes
    rules: int  # rules handed to libseccomp
    library: str  # binding and libseccomp version
    unknown: tuple[str, ...] = ()  # calls this libseccomp cannot name on this architecture (not filtered)

    @property
    def instructions(self) -> int:
        return len(self.bpf) // 8  # struct sock_filter is 8 bytes


def _lib():
    try:
        import pyseccomp  # ctypes over libseccomp.so.2; raises RuntimeError when that is missing
    except ImportError:
        raise FilterUnavailable("the Python package pyseccomp is not installed (pip install pyseccomp)") from None
    except (RuntimeError, OSError) as e:
        raise FilterUnavailable(f"libseccomp cannot be loaded ({e}; Debian package libseccomp2)") from None
    return pyseccomp


def _libseccomp_version(sc) -> str:
    import ctypes

    class Ver(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    try:
        fn = sc._libseccomp.seccomp_version  # noqa: SLF001 (the binding exposes no version call)
        fn.restype = ctypes.POINTER(Ver)
        v = fn().contents
        return f"{v.major}.{v.minor}.{v.micro}"
    except (AttributeError, ValueError):
        return "?"


@functools.lru_cache(maxsize=4)
def build(guard_pid: int = 0) -> Built:
    """Compile the filter (cached per process). `guard_pid` > 0: also refuse signals and rlimit
    changes aimed at that PID, its process group, every process (-1) and the caller's group (0)."""
    sc = _lib()
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # 32-bit calls from a 64-bit program: killed
    n = 0
    unknown: list[str] = []

    def rule(action: int, name: str, *args) -> None:
        nonlocal n
        if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:  # not a call of this architecture, or
            unknown.append(name)  # newer than this libseccomp; doctor names them
            return
        f.add_rule(action, name, *args)
        n += 1

    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        rule(eperm, name)
    for flag in (*CLONE_NAMESPACES.values(), CLONE_NEWTIME):
        rule(eperm, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for flag in CLONE_NAMESPACES.values():
        rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    unix = socket.AF_UNIX
    for call in ("socket", "socketpair"):
        rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.NE, unix))
        rule(sc.ERRNO(errno.EACCES), call, sc.Arg(0, sc.EQ, unix),
             sc.Arg(1, sc.MASKED_EQ, SOCK_TYPE_MASK, socket.SOCK_DGRAM))
    rule(sc.ERRNO(errno.ENOENT), "connect")
    if guard_pid > 0:
        for pid in (guard_pid, -guard_pid & MASK32, MASK32, 0):  # the shell, its group, all, ours
            rule(eperm, "kill", sc.Arg(0, sc.MASKED_EQ, MASK32, pid))
        for call in SIGNAL_CALLS[1:]:
            rule(eperm, call, sc.Arg(0, sc.MASKED_EQ, MASK32, guard_pid))
        for call in ("tgkill", "rt_tgsigqueueinfo"):
            rule(eperm, call, sc.Arg(0, sc.MASKED_EQ, MASK32, guard_pid))
            rule(eperm, call, sc.Arg(1, sc.MASKED_EQ, MASK32, guard_pid))
    fd = os.memfd_create("lassi-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as fh:
            f.export_bpf(fh)
        size = os.lseek(fd, 0, os.SEEK_END)
        bpf = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not bpf or len(bpf) % 8:
        raise FilterUnavailable(f"libseccomp exported no usable program ({len(bpf)} bytes)")
    return Built(bpf=bpf, rules=n, library=f"pyseccomp {getattr(sc, '__version__', '?')}, "
                                          f"libseccomp {_libseccomp_version(sc)}",
                 unknown=tuple(dict.fromkeys(unknown)))


def problem() -> str:
    """'' when the filter can be built here, else the one-line reason."""
    try:
        build()
        build(2)
    except FilterUnavailable as e:
        return str(e)
    except OSError as e:
        return f"libseccomp refused the filter: {e}"
    return ""


def filter_fd(built: Built) -> int:
    """A fresh, inheritable fd holding the program at offset 0, for `bwrap --seccomp FD`
    (bubblewrap reads it to the end and closes it before the command starts)."""
    fd = os.memfd_create("lassi-seccomp")
    try:
        os.write(fd, built.bpf)
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except OSError:
        os.close(fd)
        raise
    return fd
