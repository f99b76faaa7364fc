"""Build and run programs for a platform in a fresh work folder, under limits.

Knows nothing of LLMs or power. Generated code is treated as hostile: wall-time limit that kills
the whole process group, memory limit, bounded output capture, no network where the OS allows,
and a scrubbed environment without secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    """Outcome of one process (a build or a program run)."""

    argv: list[str]
    returncode: int | None  # None when it never started
    stdout: str
    stderr: str
    t_launch: float  # time.monotonic() just before exec
    t_exit: float  # time.monotonic() when the process was reaped
    wall_s: float
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str = ""  # one-line reason when it failed to start or was killed (e.g. "time limit 10 s")
    cpu_s: float = 0.0  # user+sys CPU seconds of the child tree (for the estimate meter)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass
class BuildResult:
    ok: bool
    exe: str  # path of the built program (inside the work folder)
    log: RunResult
    workdir: str
    files: dict[str, str] = field(default_factory=dict)  # the sources that were built (name -> text)
