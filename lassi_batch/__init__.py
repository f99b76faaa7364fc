"""lassi-batch: LLM-driven energy-efficiency refactoring of GPU codes, at study scale."""

__version__ = "0.1.0"
