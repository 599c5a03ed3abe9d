"""Quality gate: coverage, diversity, toxicity and drift of a dataset version against a baseline.

Pure domain code (no Dagster): ``evaluate_quality`` judges a dataset, ``write_quality_outputs``
writes ``quality_report.json``, ``coverage_gap_report.md`` and a drift plot.
"""

# Baseline names, here so a Dagster config default can name them without importing the profiler.
DEFAULT_BASELINE = "baseline_eval_v1"
LAST_PUBLISHED = "last_published"
