from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from feature_platform.cli import main
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource

if TYPE_CHECKING:
    from tests.ray_cluster import RayTestCluster

PROJECT = Path(__file__).resolve().parents[1]
ROWS = 3_000
BATCH_ROWS = 700


def small_source(seed: int = 7, rows: int = ROWS) -> SyntheticMarketSource:
    return SyntheticMarketSource(rows, seed, batch_rows=BATCH_ROWS, entities=200)


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """One small published dataset; tests copy it before touching it."""
    out = tmp_path_factory.mktemp("golden") / "datasets"
    return build_dataset(small_source(), out, "golden_ds", dataset_version="v1")


@pytest.fixture
def dataset(golden: BuildResult, tmp_path: Path) -> Path:
    """A private copy of the golden dataset: ``<tmp>/datasets/golden_ds``."""
    target = tmp_path / "datasets" / golden.path.name
    shutil.copytree(golden.path, target)
    return target


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()


def committed_feast_repo(root: Path) -> Path:
    """A copy of feature_repo/ committed into a fresh git repository at ``root`` (the real tree may be dirty),
    with the project's ``.gitignore``: ``root`` is laid out like the project (its data root is ``root/data``)."""
    repo = root / "feature_repo"
    repo.mkdir(parents=True)
    for name in ("definitions.py", "feature_store.yaml", "feature_contract.yaml"):
        shutil.copy2(PROJECT / "feature_repo" / name, repo / name)
    shutil.copy2(PROJECT / ".gitignore", root / ".gitignore")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "feature repo")
    return repo


CliResult = tuple[int, str, str]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``fp`` in process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> CliResult:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors and --help
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# Dagster tests: one data root, one instance and one code location per test module, all offline
# (notifications to the outbox file, metrics to a textfile, DuckDB time series under the root).


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_root")


@pytest.fixture(scope="module")
def paths(root: Path) -> Any:
    from feature_platform.orchestration.resources import PlatformPaths

    return PlatformPaths(data_root=str(root))


@pytest.fixture(scope="module")
def instance() -> Iterator[Any]:
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


def offline_defs(root: Path, paths: Any, *extra_jobs: Any, **overrides: Any) -> Any:
    """The code location offline under ``root``; ``paths`` built or ``at_launch`` (then a replaced dependent in
    ``overrides`` may be bound to it)."""
    from feature_platform.definitions import build_defs
    from feature_platform.orchestration.market_assets import TimeSeriesResource
    from feature_platform.orchestration.resources import MetricsResource, NotifierResource, PlatformPaths, at_launch

    launch = at_launch(PlatformPaths, paths)
    resources: dict[str, Any] = {
        "paths": launch,
        "timeseries": TimeSeriesResource(url=None, paths=launch),
        "notifier": NotifierResource(outbox_dir=str(root / "outbox"), slack_webhook_url=None, smtp_host=None,
                                     pagerduty_routing_key=None, paths=launch),
        "metrics": MetricsResource(textfile_dir=str(root / "metrics"), pushgateway_url=None),
    }
    return build_defs(*extra_jobs, **{**resources, **overrides})


@pytest.fixture(scope="module")
def defs(root: Path, paths: Any) -> Any:
    return offline_defs(root, paths)


# Declarative definitions: one small seeded sample warehouse per session (read-only in tests; copy to modify).
WAREHOUSE_END_DATE = "2026-06-01"


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import date

    from feature_platform.warehouse.sample import seed_sample_warehouse

    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    end = date.fromisoformat(WAREHOUSE_END_DATE)
    seed_sample_warehouse(path, users=300, products=60, days=90, seed=11, end_date=end)
    return path


@pytest.fixture(scope="session")
def ray_test_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayTestCluster]:
    """The session's one Ray: a head and two worker nodes (tests/ray_cluster.py), each with its own temp dir under
    this session's tmp area, started on first use and stopped (its directories removed) at the end. Every Ray
    test runs on it (one driver talks to one cluster, and a second local instance beside it breaks both)."""
    import ray

    from tests.ray_cluster import multi_node_cluster

    # Directly under the session's base temp dir: short, as Ray's unix socket paths live below it.
    with multi_node_cluster(tmp_path_factory.getbasetemp() / "ray") as cluster:
        try:
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()


@pytest.fixture(scope="session")
def _ray_cluster_address(ray_test_cluster: RayTestCluster) -> str:
    return ray_test_cluster.address


@pytest.fixture
def ray_local(_ray_cluster_address: str) -> str:
    """This process connected to the session's cluster; ``run_tasks(executor="ray")`` reuses the connection."""
    import ray

    if not ray.is_initialized():
        ray.init(address=_ray_cluster_address, log_to_driver=False, configure_logging=False)
    return _ray_cluster_address


@pytest.fixture
def ray_cluster(_ray_cluster_address: str) -> str:
    """The session's cluster address, with this process disconnected: the test connects (``ray.init(address=...)``)
    or passes it on as ``ray_address`` / ``RAY_ADDRESS`` itself."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    return _ray_cluster_address
