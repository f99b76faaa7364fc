"""Shared fixtures."""

from sumapp import setup  # noqa: F401  (fixture: a small real app, its transcript and a study dict)
from exportstudy import export_study  # noqa: F401  (session fixture: a small real study for the export tests)
