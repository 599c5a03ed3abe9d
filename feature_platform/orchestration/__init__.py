"""Dagster only: assets, checks, partitions, jobs, schedules, sensors and resources.

Each asset or check calls one domain function and turns its result into Dagster metadata.
"""
