"""Fine-tuning datasets from a study's trial files: SFT, DPO, KTO and trajectory records, split by
application, deduplicated, with a dataset card and a manifest (see docs/export.md)."""

from __future__ import annotations

from .build import export_study
from .formats import FORMATS, validate_record
from .model import ExportOptions, ExportResult
from .records import ExportError

__all__ = ["FORMATS", "ExportError", "ExportOptions", "ExportResult", "export_study", "validate_record"]
