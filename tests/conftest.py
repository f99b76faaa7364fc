"""Shared fixtures."""

from sumapp import setup  # noqa: F401  (fixture: a small real app, its transcript and a study dict)
from exportstudy import export_study  # noqa: F401  (session fixture: a small real study for the export tests)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_lock_folder(tmp_path_factory, monkeypatch):
    """Device locks and learnt idle floors are node state: each test gets a folder of its own, so
    that no test waits on, or settles to, what another test (or a real trial) left there."""
    monkeypatch.setenv("LASSI_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
