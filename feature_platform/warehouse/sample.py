"""A seeded sample e-commerce warehouse (users, products, transactions) for the demo and tests.

The data is skewed on purpose, like real shop data, so the analysis quality rules have something to
find: product popularity follows a Zipf-like law, user activity is heavy-tailed (log-normal), a share of
users are cold-start (exactly one purchase) and a few never buy. Everything is drawn with numpy in a
handful of vectorised calls and handed to DuckDB as Arrow tables, so 100k transactions take well under
a second. The file is built beside the target and renamed into place: readers never see a partial one.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from feature_platform.warehouse.connection import RAW_SCHEMA, WarehouseError

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

TABLES = ("users", "products", "transactions")
COUNTRIES = ("US", "GB", "DE", "FR", "PL", "ES", "IT", "NL", "SE", "BR")
COUNTRY_WEIGHTS = (0.34, 0.14, 0.12, 0.09, 0.07, 0.07, 0.06, 0.05, 0.03, 0.03)
SEGMENTS = ("consumer", "smb", "enterprise")
SEGMENT_WEIGHTS = (0.8, 0.15, 0.05)
SEGMENT_ACTIVITY = (1.0, 1.6, 2.5)  # activity multiplier per segment
CATEGORIES = ("electronics", "books", "home", "fashion", "beauty", "sports", "toys", "grocery")
BRANDS = 40
CHANNELS = ("web", "app", "store")
CHANNEL_WEIGHTS = (0.5, 0.35, 0.15)
ZIPF_EXPONENT = 1.07
TRANSACTIONS_PER_USER_DAY = 0.28  # mean purchases per user per day of history (≈ 50 over 180 days)
ACTIVITY_SIGMA = 1.1  # log-normal spread of user activity: a few users buy very often
COLD_START_SHARE = 0.05  # users with exactly one purchase
INACTIVE_SHARE = 0.01  # registered users who never bought
RETURN_RATE = 0.04

DDL = {
    "users": "user_id BIGINT NOT NULL, signup_date DATE, country VARCHAR, segment VARCHAR",
    "products": "product_id BIGINT NOT NULL, category VARCHAR, brand VARCHAR, price DOUBLE",
    "transactions": (
        "transaction_id BIGINT NOT NULL, user_id BIGINT NOT NULL, product_id BIGINT NOT NULL, quantity INTEGER, "
        "amount DOUBLE, transaction_ts TIMESTAMPTZ NOT NULL, channel VARCHAR, returned BOOLEAN"
    ),
}


def seed_sample_warehouse(
    path: Path,
    *,
    users: int = 2000,
    products: int = 300,
    days: int = 180,
    seed: int = 0,
    end_date: date | None = None,
    parquet_dir: Path | None = None,
) -> dict[str, int]:
    """Write the sample warehouse to ``path`` (replacing it atomically); returns rows per table.

    Deterministic for the same arguments; ``end_date`` (exclusive, default today UTC) anchors the window
    ``[end_date - days, end_date)``, so pass it explicitly wherever reproducibility matters. With
    ``parquet_dir`` each table is also written as ``<parquet_dir>/<table>.parquet``.
    """
    import duckdb

    for name, value in (("users", users), ("products", products), ("days", days)):
        if value < 1:
            raise WarehouseError(f"seed_sample_warehouse: {name} must be a positive integer, got {value}")
    end = end_date or datetime.now(UTC).date()
    tables = _generate(users, products, days, seed, end)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{os.urandom(4).hex()}"
    tmp = path.with_name(f".{path.name}.tmp-{token}")
    parquet_tmp: list[tuple[Path, Path]] = []
    try:
        conn = duckdb.connect(str(tmp))
        try:
            conn.execute("SET TimeZone = 'UTC'")
            _load(conn, tables)
            counts = {name: _count(conn, name) for name in TABLES}
            if parquet_dir is not None:
                parquet_dir.mkdir(parents=True, exist_ok=True)
                for name in TABLES:
                    final = parquet_dir / f"{name}.parquet"
                    staged = parquet_dir / f".{name}.parquet.tmp-{token}"
                    parquet_tmp.append((staged, final))
                    conn.execute(f"COPY {RAW_SCHEMA}.{name} TO '{_sql_text(staged)}' (FORMAT parquet)")
            conn.execute("CHECKPOINT")
        finally:
            conn.close()
        for staged, final in parquet_tmp:
            os.replace(staged, final)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), *(staged for staged, _ in parquet_tmp)):
            leftover.unlink(missing_ok=True)
    return counts


def _generate(users: int, products: int, days: int, seed: int, end: date) -> dict[str, pa.Table]:
    import numpy as np
    import pyarrow as pa

    user_rng, product_rng, activity_rng, tx_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)
    )
    start = end - timedelta(days=days)
    start_s = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    end_s = start_s + days * 86_400

    # users: some signed up long before the window, some during it (their purchases start at signup)
    user_id = np.arange(1, users + 1, dtype=np.int64)
    signup_offset = user_rng.integers(-730, days, size=users)  # days relative to the window start
    signup_days = (start - date(1970, 1, 1)).days + signup_offset
    country = user_rng.choice(len(COUNTRIES), size=users, p=_p(COUNTRY_WEIGHTS))
    segment = user_rng.choice(len(SEGMENTS), size=users, p=_p(SEGMENT_WEIGHTS))

    # products: log-normal prices, brands themselves Zipf-distributed
    product_id = np.arange(1, products + 1, dtype=np.int64)
    category = product_rng.integers(0, len(CATEGORIES), size=products)
    brand = product_rng.choice(BRANDS, size=products, p=_zipf(BRANDS, 1.0))
    price = np.maximum(np.round(product_rng.lognormal(3.2, 0.9, size=products), 2), 0.99)
    popularity = _zipf(products, ZIPF_EXPONENT)[product_rng.permutation(products)]

    # heavy-tailed activity per user, with cold-start and inactive users
    mean = TRANSACTIONS_PER_USER_DAY * days * np.asarray(SEGMENT_ACTIVITY)[segment]
    mu = np.log(mean) - ACTIVITY_SIGMA**2 / 2
    counts = np.maximum(np.floor(activity_rng.lognormal(mu, ACTIVITY_SIGMA)), 2).astype(np.int64)
    kind = activity_rng.random(users)
    counts[kind < COLD_START_SHARE] = 1
    counts[kind < INACTIVE_SHARE] = 0

    n = int(counts.sum())
    tx_user = np.repeat(np.arange(users), counts)
    tx_product = tx_rng.choice(products, size=n, p=popularity)
    lower = np.maximum(start_s, signup_days[tx_user].astype(np.int64) * 86_400)
    ts = lower + np.floor(tx_rng.random(n) * (end_s - lower)).astype(np.int64)
    quantity = tx_rng.geometric(0.7, size=n).astype(np.int32)
    discount = tx_rng.choice(np.array([0.0, 0.1, 0.2]), size=n, p=[0.8, 0.15, 0.05])
    amount = np.round(price[tx_product] * quantity * (1.0 - discount), 2)
    channel = tx_rng.choice(len(CHANNELS), size=n, p=_p(CHANNEL_WEIGHTS))
    returned = tx_rng.random(n) < RETURN_RATE
    order = np.lexsort((tx_product, tx_user, ts))  # by time; ties broken stably so ids are reproducible

    def labels(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values)).cast(pa.string())

    return {
        "users": pa.table({
            "user_id": pa.array(user_id),
            "signup_date": pa.array(signup_days.astype(np.int32), pa.int32()).cast(pa.date32()),
            "country": labels(COUNTRIES, country),
            "segment": labels(SEGMENTS, segment),
        }),
        "products": pa.table({
            "product_id": pa.array(product_id),
            "category": labels(CATEGORIES, category),
            "brand": pa.array([f"brand_{b:02d}" for b in brand], pa.string()),
            "price": pa.array(price),
        }),
        "transactions": pa.table({
            "transaction_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "user_id": pa.array(user_id[tx_user[order]]),
            "product_id": pa.array(product_id[tx_product[order]]),
            "quantity": pa.array(quantity[order]),
            "amount": pa.array(amount[order]),
            "transaction_ts": pa.array(ts[order] * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "channel": labels(CHANNELS, channel[order]),
            "returned": pa.array(returned[order]),
        }),
    }


def _load(conn: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for name in TABLES:
        conn.execute(f"CREATE TABLE {RAW_SCHEMA}.{name} ({DDL[name]})")
        conn.register(f"_staged_{name}", tables[name])
        conn.execute(f"INSERT INTO {RAW_SCHEMA}.{name} SELECT * FROM _staged_{name}")
        conn.unregister(f"_staged_{name}")


def _count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {RAW_SCHEMA}.{table}").fetchone()
    return int(row[0]) if row else 0


def _zipf(n: int, exponent: float) -> np.ndarray:
    import numpy as np

    weights: np.ndarray = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / float(weights.sum())


def _p(weights: tuple[float, ...]) -> np.ndarray:
    import numpy as np

    array: np.ndarray = np.asarray(weights, dtype=np.float64)
    return array / float(array.sum())


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")
