"""Datasets: sources, streaming build, splits and fail-closed verification."""
