"""Trial archives (HDF5): the crash-safe writer/reader and the measurement-group codec.

Downstream tools read trial files through TrialArchive rather than raw h5py, so layout
details stay in this package (see docs/hdf5-schema.md).
"""

from __future__ import annotations

from .archive import StepRecord, TrialArchive, read_llm_calls, summarize_trial
from .measurement import append_measurement, read_measurement, read_measurements, write_measurement
from .schema import PROFILE_SCHEMA, SCHEMA, SCHEMA_VERSION

__all__ = [
    "PROFILE_SCHEMA",
    "SCHEMA",
    "SCHEMA_VERSION",
    "StepRecord",
    "TrialArchive",
    "append_measurement",
    "read_llm_calls",
    "read_measurement",
    "read_measurements",
    "summarize_trial",
    "write_measurement",
]
