"""Feature builds over the Feast repository, contract drift and point-in-time training sets.

Nothing here imports Feast at module import time: the Dagster code location must load fast.
"""
