"""Market data: OHLCV sources (CoinGecko-compatible HTTP, seeded simulator), validation, and the review queue.

Pure domain code (no Dagster): the orchestration layer and the CLI call these functions.
"""
