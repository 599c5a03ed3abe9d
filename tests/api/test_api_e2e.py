"""End to end: a training submitted through the HTTP API (real uvicorn on loopback) to a Dagster instance whose
run queue is worked by the real ``dagster-daemon`` (a subprocess), followed over the event stream to SUCCESS;
then its rerun and a rollback through the API, each run by the daemon too."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx2
import pytest

from feature_platform.api.app import create_app
from feature_platform.api.settings import ApiSettings
from feature_platform.api.tokens import TokenStore, token_store_path
from feature_platform.orchestration.headless import run_feature_build, run_refresh
from feature_platform.orchestration.resources import PlatformPaths
from tests.api_support import dagster_daemon, queued_dagster_home, serve
from tests.conftest import offline_defs

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SMALL = {**QUIET, "ops": {"source_snapshot": {"config": {"rows": 6_000, "entities": 50, "batch_rows": 2_000,
                                                          "seed": 3}}}}
PAYLOAD = {"model_key": "market_regime", "dataset_version": "e1", "hyperparam_profile": "fast", "schedule": "adhoc",
           "run_coingecko_fetch": False, "auto_promote": True}
SAFETY_TIMEOUT_S = 900.0  # a hung daemon fails the test instead of hanging it; nothing asserts on time


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Live:
    def __init__(self, base: str, root: Path, instance: dg.DagsterInstance, token: str, daemon_log: Path,
                 logs: Captured) -> None:
        self.base = base
        self.root = root
        self.instance = instance
        self.token = token
        self.daemon_log = daemon_log
        self.logs = logs
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> dict[str, Any]:
        response = httpx2.get(self.base + path, headers=self.headers, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx2.post(self.base + path, json=body, headers=self.headers, timeout=60)
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(self, path: str) -> dict[str, Any]:
        """Poll a status resource until it is terminal (the daemon's log is shown if the safety limit is hit)."""
        deadline = time.monotonic() + SAFETY_TIMEOUT_S
        while True:
            status = self.get(path)
            if status["terminal"]:
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"{path} still {status['status']}; daemon log:\n{self.daemon_log.read_text()[-3000:]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("api_e2e")
    root = base / "data"
    home = queued_dagster_home(base / "dagster_home")
    instance = dg.DagsterInstance.from_config(str(home))
    paths = PlatformPaths(data_root=str(root))
    defs = offline_defs(root, paths)
    published = run_refresh("e1", instance=instance, defs=defs, run_config=SMALL)
    assert published.refresh.succeeded, published.refresh
    built = run_feature_build("e1", instance=instance, defs=defs, run_config={
        **QUIET, "ops": {"feature_build": {"config": {"allow_dirty": True}}}})
    assert built.succeeded, built
    token, _ = TokenStore(token_store_path(root)).create("e2e-bot", ["ml:train", "ml:write"])
    logs = Captured()
    watched = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.access", "uvicorn.error", "feature_platform")]
    app = create_app(ApiSettings(data_root=root, dagster_home=home, dagster_url="http://127.0.0.1:3000",
                                 poll_interval_s=0.5))
    daemon_log = base / "daemon.log"
    try:
        with dagster_daemon(home, root, daemon_log), serve(app, access_log=True) as url:
            for logger in watched:  # after uvicorn configured its loggers (which replaces their handlers)
                logger.addHandler(logs)
            yield Live(url, root, instance, token, daemon_log, logs)
    finally:
        for logger in watched:
            logger.removeHandler(logs)
        instance.dispose()


def _events(live: Live, training_id: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    with httpx2.stream("GET", f"{live.base}/api/trainings/{training_id}/events", headers=live.headers,
                       timeout=SAFETY_TIMEOUT_S) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))
    return seen


def test_training_through_the_api_runs_on_the_daemon_to_success(live: Live) -> None:
    accepted = live.post("/api/trainings", PAYLOAD)
    training_id = accepted["training_id"]
    assert accepted["status"] == "QUEUED"
    assert accepted["links"]["dagster_run"] == f"http://127.0.0.1:3000/runs/{training_id}"

    events = _events(live, training_id)  # the stream ends by itself at the terminal status
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "SUCCESS", (statuses, events[-1]["failure"], live.daemon_log.read_text()[-3000:])
    assert "STARTED" in statuses and len(statuses) == len(set(statuses))

    status = live.get(f"/api/trainings/{training_id}")
    outcome = status["outcome"]
    assert status["status"] == "SUCCESS" and status["launched_by"] == "e2e-bot" and status["dataset_version"] == "e1"
    assert outcome["model_name"] == "market_regime" and outcome["model_version"] == "1"
    assert outcome["promoted"] is True and outcome["model_training_id"]
    assert {"test_sharpe", "test_max_drawdown"} <= set(outcome["metrics"]), outcome["metrics"]

    from feature_platform.registry.tracking import client

    mc = client(live.root)
    assert outcome["metrics"] == mc.get_run(outcome["mlflow_run_id"]).data.metrics  # read from MLflow
    assert str(mc.get_model_version_by_alias("market_regime", "production").version) == "1"
    assert Path(status["links"]["mlflow_experiment"]).is_dir() and Path(status["links"]["mlflow_run"]).is_dir()

    # rerun (reproducibility) and rollback, both queued through the API and run by the daemon
    rerun = live.post(f"/api/trainings/{training_id}/rerun")
    rollback = live.post("/api/models/market_regime/rollback", {"model_version": 1})
    assert rerun["rerun_of"] == training_id and rerun["job"] == "rerun_job"
    assert rollback["production_version"] == "1"
    rerun_status = live.wait(f"/api/trainings/{rerun['training_id']}")
    assert rerun_status["status"] == "SUCCESS", rerun_status["failure"]
    assert rerun_status["outcome"]["rerun_report"]["reproduced"] is True
    rolled = live.wait(rollback["links"]["self"])
    assert rolled["status"] == "SUCCESS", rolled["failure"]
    assert rolled["production_version"] == "1" and rolled["launched_by"] == "e2e-bot"

    # the token is in no log line, run tag or event of any of the three runs; its name is
    for run_id in (training_id, rerun["training_id"], rollback["rollback_id"]):
        run = live.instance.get_run_by_id(run_id)
        assert run is not None and run.tags["fp/api_token"] == "e2e-bot"
        assert live.token not in json.dumps(dict(run.tags))
        assert not any(live.token in (e.user_message or "") for e in live.instance.all_logs(run_id))
    assert any("/api/trainings" in line for line in live.logs.lines)  # the access log was captured
    assert not any(live.token in line for line in live.logs.lines)
    assert live.token not in live.daemon_log.read_text()
