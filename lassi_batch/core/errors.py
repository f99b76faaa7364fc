"""Exceptions the CLI turns into one-line messages and exit codes."""

from __future__ import annotations


class LassiError(Exception):
    """Base for expected failures: the CLI prints `error: <message>` and exits with `exit_code`."""

    exit_code = 1


class ConfigError(LassiError):
    """Bad study/app configuration or command-line usage (exit 2, nothing written)."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ToolchainError(LassiError):
    """A compiler or runtime the platform needs is missing."""


class MeterError(LassiError):
    """A requested power meter cannot be used."""


class ArchiveError(LassiError):
    """A trial archive is missing, unreadable, or of an unknown schema version."""


class DeviceBusy(MeterError):
    """A measurement could not be taken alone on its device (other processes on it, or it never
    settled) after its retakes. The trial stops `interrupted`: a resubmission resumes it."""


class GpuMismatch(MeterError):
    """A trial's pinned GPU is not the one its program runs on (or that cannot be shown): a test
    load on it did not raise its readings alone. The trial stops `interrupted` before measuring
    anything: figures from the wrong GPU would look plausible and be wrong."""


class MeterUnavailable(MeterError):
    """This meter cannot be used on this machine; the message is the one-line reason."""


class TrialInterrupted(BaseException):
    """A stop signal (SIGTERM, SIGINT, SIGUSR2) ended a trial at a step boundary; it can resume.
    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows
    it. The CLI exits with `exit_code` (EX_TEMPFAIL: a scheduler wrapper requeues on it)."""

    exit_code = 75
