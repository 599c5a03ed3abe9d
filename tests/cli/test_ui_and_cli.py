"""The user's entry points, end to end in subprocesses: `fp refresh` and the Dagster webserver.

One refresh per module (a passing and a failing version) into a real SQLite instance under a temp
DAGSTER_HOME; then the real webserver on a loopback port serves the asset graph and check results.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
FP = str(Path(sys.executable).parent / "fp")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").symlink_to(PROJECT / "dagster.yaml")
    data = tmp_path_factory.mktemp("data")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "DAGSTER_"))}
    return {**keep, "DAGSTER_HOME": str(home), "FP_DATA_ROOT": str(data)}


@pytest.fixture(scope="module")
def refreshed(env: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    drift = tmp_path_factory.mktemp("cfg") / "drift.yaml"
    drift.write_text("ops:\n  dataset:\n    config:\n      augment_noise: 1.0\n")
    runs = {}
    for version, extra in [("cli-good", []), ("cli-drift", ["--config", str(drift)])]:
        runs[version] = subprocess.run([FP, "refresh", "run", "--version", version, "--rows", "3000", *extra],
                                       env=env, capture_output=True, text=True, timeout=300)
    return runs


def test_refresh_cli_summarises_and_exits_by_outcome(refreshed: dict[str, subprocess.CompletedProcess[str]],
                                                    env: dict[str, str]) -> None:
    good, drift = refreshed["cli-good"], refreshed["cli-drift"]
    assert good.returncode == 0, good.stderr
    assert "refresh of dataset_version cli-good: SUCCESS" in good.stdout
    assert "checks: 7 passed, 0 failed" in good.stdout
    assert f"{env['FP_DATA_ROOT']}/datasets/market_regime-cli-good/" in good.stdout
    assert "DEBUG" not in good.stderr  # Dagster's event log only with -v
    assert drift.returncode == 1
    assert "FAIL  quality_report:quality_thresholds" in drift.stdout
    assert "NOT published" in drift.stdout


def test_add_version_from_the_cli(env: dict[str, str]) -> None:
    run = subprocess.run([FP, "refresh", "add-version", "adhoc-7"], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "adhoc-7 added" in run.stdout
    again = subprocess.run([FP, "refresh", "add-version", "adhoc-7"], env=env, capture_output=True, text=True)
    assert "already exists" in again.stdout
    bad = subprocess.run([FP, "refresh", "add-version", "../x"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "separator" in bad.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def webserver(env: dict[str, str], refreshed: object) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", str(PROJECT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "webserver exited"
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "webserver did not answer within 90 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]  # type: ignore[no-any-return]


def test_webserver_serves_the_asset_graph(webserver: str) -> None:
    data = _graphql(webserver, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    deps = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]}
            for n in data["assetNodes"]}
    assert deps["dataset"] == {"source_snapshot"}
    assert deps["quality_report"] == {"dataset"}
    assert deps["published_dataset"] == {"dataset", "quality_report"}
    assert deps["notify_stakeholders"] == {"published_dataset", "quality_report"}
    # what the UI shows per asset: owners, a code version, kinds of the configured (local) stores
    data = _graphql(webserver, "{ assetNodes { assetKey { path } opVersion kinds "
                               "owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } } } }")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert all(n["owners"] and n["opVersion"] for n in nodes.values()), nodes
    assert {"team": "ml-platform"} in nodes["trained_model"]["owners"]
    assert "s3" not in nodes["published_dataset"]["kinds"] and "filesystem" in nodes["published_dataset"]["kinds"]


def _check_results(url: str, asset: str, check: str) -> dict[str, str]:
    """dataset_version (the run's partition) → check execution status, as the UI shows it."""
    query = ('{ assetCheckExecutions(assetKey: {path: ["' + asset + '"]}, checkName: "' + check + '", limit: 10) '
             "{ status evaluation { success } run { tags { key value } } } }")
    out = {}
    for execution in _graphql(url, query)["assetCheckExecutions"]:
        tags = {t["key"]: t["value"] for t in execution["run"]["tags"]}
        out[tags["dagster/partition"]] = execution["status"]
    return out


def test_webserver_reports_check_results_per_version(webserver: str) -> None:
    ok, failed = "SUCCEEDED", "FAILED"
    assert _check_results(webserver, "dataset", "sha256_matches") == {"cli-good": ok, "cli-drift": ok}
    assert _check_results(webserver, "quality_report", "quality_thresholds") == {"cli-good": ok, "cli-drift": failed}
    # blocked by the failed gate: planned in the run, never executed
    assert _check_results(webserver, "published_dataset", "published_copy_verifies") == {
        "cli-good": ok, "cli-drift": "EXECUTION_FAILED"}


def test_training_payload_is_submitted_through_graphql(webserver: str, env: dict[str, str]) -> None:
    """`fp training submit` launches training_job on the webserver; without a daemon the run waits queued."""
    payload = json.dumps({"dataset_version": "cli-good", "hyperparam_profile": "fast", "auto_promote": False})
    run = subprocess.run([FP, "training", "submit", "--url", webserver, "--payload", payload, "--no-wait"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    run_id, status = run.stdout.strip().removeprefix("run ").split(": ")
    assert status in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
    data = _graphql(webserver, '{ runOrError(runId: "' + run_id + '") { ... on Run { jobName tags { key value } } } }')
    tags = {t["key"]: t["value"] for t in data["runOrError"]["tags"]}
    assert data["runOrError"]["jobName"] == "training_job" and tags["dagster/partition"] == "cli-good"
    assert tags["fp/launched_by"] == "api" and tags["user"].endswith("(fp training submit)"), tags
    bad = subprocess.run([FP, "training", "submit", "--url", webserver, "--payload", '{"epochs": 1}'],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "dataset_version" in bad.stderr
