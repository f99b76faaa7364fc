"""Trial archives (HDF5): the journalled writer, the snapshot reader, the summary group and the
measurement-group codec.

Downstream tools read trial files through `open_trial` / `read_trial_summary` rather than raw
h5py, so layout details stay in this package (see docs/hdf5-schema.md).
"""

from __future__ import annotations

from .archive import TrialArchive
from .measurement import append_measurement, read_measurement, read_measurements, write_measurement
from .reader import StepRecord, TrialSnapshot, TrialView, open_trial, read_llm_calls, read_trial_summary

summarize_trial = read_trial_summary  # the name of version 1's headline reader
from .schema import PROFILE_SCHEMA, SCHEMA, SCHEMA_VERSION
from .summary import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, STATUSES, TrialSummary, read_summary

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROFILE_SCHEMA",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "StepRecord",
    "TrialArchive",
    "TrialSnapshot",
    "TrialSummary",
    "TrialView",
    "append_measurement",
    "open_trial",
    "read_llm_calls",
    "read_measurement",
    "read_measurements",
    "read_summary",
    "read_trial_summary",
    "summarize_trial",
    "write_measurement",
]
