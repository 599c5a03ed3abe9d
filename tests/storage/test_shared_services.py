"""Shared services, real: a Dagster instance on PostgreSQL (``deploy/dagster.postgres.yaml``) and an MLflow
tracking server on PostgreSQL with its artifacts in S3, both started here on loopback. A refresh, a feature
build and a training with promotion run through ``fp`` against them; the runs are read back from PostgreSQL,
the model's bytes from the bucket, and the production model is loaded as any MLflow user would."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import CliResult
from tests.postgres_server import PostgresServer, postgres_server_fixture  # noqa: F401
from tests.s3_server import FAKE_CREDENTIALS, REGION, s3_client, s3_server_fixture  # noqa: F401

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY_INSTANCE = PROJECT / "deploy" / "dagster.postgres.yaml"
MODEL_KEY = "market_regime"
VERSION = "pg1"
ARTIFACT_PREFIX = "mlflow"
SMALL = {"ops": {"source_snapshot": {"config": {"rows": 6_000, "entities": 50, "batch_rows": 2_000, "seed": 3}}}}
PAYLOAD = {"model_key": MODEL_KEY, "dataset_version": VERSION, "hyperparam_profile": "fast", "schedule": "adhoc",
           "run_coingecko_fetch": False, "auto_promote": True}
STARTUP_SECONDS = 120.0  # a loaded 2-core machine imports MLflow's server slowly; it answers /health once up
Cli = Callable[..., CliResult]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class MlflowServer:
    """``mlflow server`` on 127.0.0.1: backend and registry in a fresh PostgreSQL database (psycopg 3 driver),
    artifacts proxied to ``s3://<bucket>/mlflow`` on the moto server; clients need only the tracking URL.

    It starts in the background (its imports take a while); ``ready()`` waits for /health and returns the URL.
    """

    def __init__(self, backend_dsn: str, bucket: str, s3_endpoint: str, workdir: Path) -> None:
        self.backend_dsn = backend_dsn  # psycopg DSN of the tracking and registry database
        self.bucket = bucket
        self.s3_endpoint = s3_endpoint
        self.log = workdir / "server.log"
        self.env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
                    "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
                    "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"], "AWS_DEFAULT_REGION": REGION,
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # GenAI job runner: unused here, slow to start
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.attempts = 0
        self._launch()

    def _launch(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.attempts += 1
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--backend-store-uri",
                   self.backend_dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                   "--artifacts-destination", f"s3://{self.bucket}/{ARTIFACT_PREFIX}"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.log.parent)

    def ready(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:  # e.g. its port was taken between probe and bind: a fresh one
                if self.attempts == 3:
                    raise RuntimeError(f"mlflow server exited three times:\n{self._tail()}")
                self._launch()
            elif _healthy(self.url):
                return self.url
            time.sleep(0.25)  # polling a starting server, not timing anything
        raise RuntimeError(f"mlflow server did not answer {self.url}/health within {STARTUP_SECONDS:.0f}s:\n"
                           f"{self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(postgres_server: PostgresServer, s3_server: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    bucket = "fp-mlflow-artifacts"
    s3_client(s3_server).create_bucket(Bucket=bucket)
    server = MlflowServer(postgres_server.create_database(), bucket, s3_server, tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_instance_home(postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A DAGSTER_HOME whose dagster.yaml is the deploy file, DAGSTER_PG_URL at a fresh database; returns its DSN."""
    dsn = postgres_server.create_database().replace("postgresql://", "postgresql+psycopg2://", 1)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY_INSTANCE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", dsn)
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "root"))
    for name in ("FP_SLACK_WEBHOOK_URL", "FP_SMTP_HOST", "FP_PAGERDUTY_ROUTING_KEY", "FP_PUSHGATEWAY_URL",
                 "FP_OBJECT_STORE", "FP_TIMESERIES_URL"):
        monkeypatch.delenv(name, raising=False)
    return dsn


def _json(result: CliResult, what: str) -> Any:
    code, out, err = result
    assert code == 0, f"{what}: exit {code}\n{out}\n{err}"
    assert "\x1b" not in out, f"{what}: stdout is not only the JSON document: {out[:200]!r}"  # e.g. Feast's progress
    return json.loads(out)


def test_deploy_instance_keeps_the_local_queue_and_retention() -> None:
    deploy = yaml.safe_load(DEPLOY_INSTANCE.read_text())
    local = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    assert deploy["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert "storage" not in local  # the laptop instance stays embedded SQLite
    assert {k: v for k, v in deploy.items() if k != "storage"} == local


def test_refresh_and_training_on_postgres_dagster_and_postgres_s3_mlflow(
        cli: Cli, mlflow_server: MlflowServer, pg_instance_home: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg
    import mlflow.pyfunc
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
    from mlflow import MlflowClient

    from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME
    from feature_platform.registry.history import JOURNAL_NAME
    from feature_platform.registry.tracking import PRODUCTION, STAGING

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)  # the client reaches S3 only through the tracking server
    config = tmp_path / "refresh.yaml"
    config.write_text(yaml.safe_dump(SMALL))

    refresh = _json(cli("refresh", "run", "--version", VERSION, "--config", config, "--json"), "refresh run")
    assert refresh["refresh"]["status"] == "SUCCESS" and "published_dataset" in refresh["refresh"]["materialized"]
    built = _json(cli("features", "build", "--version", VERSION, "--allow-dirty", "--json"), "features build")
    assert built["status"] == "SUCCESS"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.ready())  # it started while the refresh ran
    trained = _json(cli("training", "run", "--payload", json.dumps(PAYLOAD), "--json"), "training run")
    assert trained["status"] == "SUCCESS" and "promotion" in trained["materialized"], trained

    # Dagster: every run is in PostgreSQL, through the instance and in the runs table itself.
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        runs = {r.run_id: r for r in instance.get_runs()}
        assert {refresh["refresh"]["run_id"], built["run_id"], trained["run_id"]} <= set(runs)
        assert runs[trained["run_id"]].status == dg.DagsterRunStatus.SUCCESS
        promoted_events = instance.get_latest_materialization_event(dg.AssetKey("promotion"))
        assert promoted_events is not None and promoted_events.run_id == trained["run_id"]
    with psycopg.connect(pg_instance_home.replace("+psycopg2", "", 1)) as con:
        rows = con.execute("SELECT pipeline_name, status FROM runs").fetchall()
        partitions = con.execute("SELECT partition FROM dynamic_partitions").fetchall()
    assert {("refresh_job", "SUCCESS"), ("feature_build_job", "SUCCESS"), ("training_job", "SUCCESS")} <= set(rows)
    assert (VERSION,) in partitions
    home = Path(os.environ["DAGSTER_HOME"])
    assert not list(home.rglob("*.db")), "the instance fell back to SQLite files"

    # MLflow: the registry is in PostgreSQL and production is the version this training registered.
    mc = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    production = mc.get_model_version_by_alias(MODEL_KEY, PRODUCTION)
    (only,) = mc.search_model_versions(f"name = '{MODEL_KEY}'")  # search results carry no aliases
    version = mc.get_model_version(MODEL_KEY, only.version)
    assert production.version == version.version and set(version.aliases) == {STAGING, PRODUCTION}
    (model_dir,) = [p.parent for p in (Path(os.environ["FP_DATA_ROOT"]) / "models").rglob(MODEL_MANIFEST_NAME)]
    manifest = json.loads((model_dir / MODEL_MANIFEST_NAME).read_text())
    assert production.tags["training_id"] == manifest["training_id"] and production.run_id == manifest["mlflow_run_id"]
    with psycopg.connect(mlflow_server.backend_dsn) as con:
        aliases = con.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
    assert (MODEL_KEY, PRODUCTION, int(production.version)) in aliases

    # S3: the run's training files and the MLflow model, byte for byte what the manifest names.
    s3 = s3_client(mlflow_server.s3_endpoint)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=mlflow_server.bucket)
            for o in page.get("Contents", [])]
    assert keys and all(k.startswith(f"{ARTIFACT_PREFIX}/") for k in keys)
    run_keys = [k for k in keys if f"/{production.run_id}/artifacts/training/" in k]
    assert {k.rsplit("/", 1)[1] for k in run_keys} >= {MODEL_MANIFEST_NAME, "training_manifest.yaml",
                                                      "evaluation.json", "reference_predictions.parquet"}
    (onnx_key,) = [k for k in keys if k.endswith("/model.onnx")]
    assert any(k.endswith("/MLmodel") for k in keys)
    onnx_bytes = s3.get_object(Bucket=mlflow_server.bucket, Key=onnx_key)["Body"].read()
    assert hashlib.sha256(onnx_bytes).hexdigest() == manifest["onnx"]["sha256"]
    # No MLflow store or artifact on the local disk: only the production journal (a local SQLite file) is there.
    local = sorted(p.name for p in (Path(os.environ["FP_DATA_ROOT"]) / "mlflow").iterdir())
    assert local == [JOURNAL_NAME, f"{JOURNAL_NAME}.lock"], local

    # Any MLflow user: models:/<key>@production through the tracking server scores the reference rows.
    frame = pq.read_table(model_dir / "reference_predictions.parquet").to_pandas()
    classes = manifest["label_classes"]
    stored = frame[[f"proba_{c}" for c in classes]].to_numpy()
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_KEY}@{PRODUCTION}")
    out = model.predict(frame[manifest["feature_order"]].astype(np.float32))
    assert out["probabilities"].shape == stored.shape
    assert float(np.max(np.abs(out["probabilities"] - stored))) <= 1e-5
    assert model.metadata.metadata["onnx_sha256"] == manifest["onnx"]["sha256"]


@pytest.mark.parametrize(("url", "got"), [
    ("postgresql://dagster:hunter2@pg:5432/dagster", "got scheme 'postgresql'"),
    ("postgresql+psycopg://dagster:hunter2@pg/dagster", "got scheme 'postgresql+psycopg'"),
    ("postgres://dagster:hunter2@pg/dagster", "got scheme 'postgres'"),
    ("postgresql+psycopg2:///dagster", "got no host"),
    ("postgresql+psycopg2://dagster:hunter2@pg:5432", "got no database"),
    ("postgresql+psycopg2://dagster:hunter2@pg:5432/", "got no database"),
    ("postgresql+psycopg2://dagster:hunter2@pg:port/dagster", "got an unparsable URL"),
    ("postgresql+psycopg2://dagster:hunter2@[pg/dagster", "got an unparsable URL"),
    ("hunter2:x@pg/dagster", "got not a PostgreSQL URL"),
    ("", "got not a PostgreSQL URL"),
])
def test_a_dagster_pg_url_without_the_psycopg2_driver_is_refused_on_one_line(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, got: str) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    code, out, err = cli("refresh", "add-version", "v1")
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    assert err.startswith("fp: error: DAGSTER_PG_URL: expected postgresql+psycopg2://") and got in err, err
    assert "hunter2" not in err  # the password is never echoed
    assert not list(tmp_path.iterdir())  # refused before any instance was created


def test_a_psycopg2_dagster_pg_url_is_accepted() -> None:
    from feature_platform.cli.common import check_dagster_pg_url

    check_dagster_pg_url(None)
    check_dagster_pg_url("postgresql+psycopg2://dagster:p%40ss@pg.internal:5432/dagster?sslmode=require")
