"""Shared fixtures."""

from sumapp import setup  # noqa: F401  (fixture: a small real app, its transcript and a study dict)
