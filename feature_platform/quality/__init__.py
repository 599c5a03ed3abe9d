"""Quality gate: coverage, diversity, toxicity and drift of a dataset version against a baseline.

Pure domain code (no Dagster): ``evaluate_quality`` judges a dataset, ``write_quality_outputs``
writes ``quality_report.json``, ``coverage_gap_report.md`` and a drift plot.
"""
