"""Study analysis: exact metrics, aggregation of trial summaries, recomputation from raw traces, reports."""
