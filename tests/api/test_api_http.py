"""The training and model endpoints over HTTP: status codes, scopes, strict payloads, nothing written on error.

A real Dagster instance (SQLite, run queue) and a real MLflow SQLite store; no daemon here, so submitted runs
stay QUEUED (tests/api/test_api_e2e.py follows one to SUCCESS).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx2
import pytest
from fastapi.testclient import TestClient

from feature_platform.api.app import create_app
from feature_platform.api.settings import ApiSettings
from feature_platform.api.tokens import TokenStore, token_store_path
from feature_platform.orchestration.training_assets import training_run_config
from tests.api_support import queued_dagster_home, serve

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
PAYLOAD = {"dataset_version": "m1", "model_key": "market_regime", "hyperparam_profile": "fast",
           "run_coingecko_fetch": False, "auto_promote": False}
DAGSTER_URL = "http://dagster.test:3000"


class Env:
    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.app = create_app(ApiSettings(data_root=root, dagster_home=home, dagster_url=DAGSTER_URL,
                                          poll_interval_s=0.05, keepalive_s=0.2))
        self.client = TestClient(self.app)
        self.instance = dg.DagsterInstance.from_config(str(home))
        store = TokenStore(token_store_path(root))
        self.tokens: dict[str, str] = {}
        for name, scopes in [("trainer", ["ml:train"]), ("writer", ["ml:write"]), ("reader", ["datasets:read"]),
                             ("all", ["ml:train", "ml:write", "datasets:read", "datasets:write"])]:
            self.tokens[name], _ = store.create(name, scopes)
        self.tokens["revoked"], _ = store.create("revoked", ["ml:train", "ml:write"])
        store.revoke("revoked")
        past = datetime.now(tz=UTC) - timedelta(days=2)
        self.tokens["expired"], _ = TokenStore(token_store_path(root), clock=lambda: past).create(
            "expired", ["ml:train", "ml:write"], expires_at=past + timedelta(days=1))

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def run_count(self) -> int:
        return len(self.instance.get_run_ids())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("api_http")
    e = Env(base / "data", queued_dagster_home(base / "dagster_home"))
    e.instance.add_dynamic_partitions("dataset_version", ["m1"])
    yield e
    e.instance.dispose()


@pytest.fixture(scope="module")
def registered(env: Env) -> str:
    """A registered model ``mk`` with version 1 (no production alias) in the data root's MLflow store."""
    from feature_platform.registry.tracking import client

    mc = client(env.root)
    mc.create_registered_model("mk")
    mc.create_model_version("mk", source=(env.root / "nowhere").as_uri())
    return "mk"


def _error(response: Any, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"field", "expected", "message"}, body
    assert body["error"]["field"] == field, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


ENDPOINTS = [
    ("POST", "/api/trainings", PAYLOAD, "ml:train"),
    ("GET", f"/api/trainings/{UNKNOWN_ID}", None, "ml:train"),
    ("GET", f"/api/trainings/{UNKNOWN_ID}/events", None, "ml:train"),
    ("POST", f"/api/trainings/{UNKNOWN_ID}/rerun", None, "ml:write"),
    ("POST", "/api/models/mk/rollback", {"model_version": 1}, "ml:write"),
    ("GET", f"/api/models/mk/rollbacks/{UNKNOWN_ID}", None, "ml:write"),
]
BAD_AUTH = {
    "none": {},
    "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
    "empty bearer": {"Authorization": "Bearer "},
    "malformed": {"Authorization": "Bearer not-a-token"},
    "unknown": {"Authorization": "Bearer fpt_" + "A" * 43},
}


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_every_endpoint_needs_a_valid_token_with_its_scope(env: Env, registered: str, method: str, path: str,
                                                           body: Any, scope: str) -> None:
    before = env.run_count()
    store_before = token_store_path(env.root).read_bytes()
    for label, headers in [*BAD_AUTH.items(), ("revoked", env.auth("revoked")), ("expired", env.auth("expired"))]:
        response = env.client.request(method, path, json=body, headers=headers)
        error = _error(response, 401, "Authorization")
        assert response.headers["www-authenticate"].startswith("Bearer"), label
        assert scope in error["expected"], label
        for token in env.tokens.values():
            assert token not in response.text
    wrong = "reader" if scope != "datasets:read" else "trainer"
    response = env.client.request(method, path, json=body, headers=env.auth(wrong))
    _error(response, 403, "Authorization")
    assert f'scope="{scope}"' in response.headers["www-authenticate"]
    assert env.run_count() == before  # nothing launched
    assert token_store_path(env.root).read_bytes() == store_before  # authenticating writes nothing


def test_openapi_documents_typed_models(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    paths = spec["paths"]
    post = paths["/api/trainings"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["dataset_version"] and body["additionalProperties"] is False
    assert set(body["properties"]) >= {"model_key", "dataset_version", "feature_repo_ref", "hyperparams", "schedule",
                                       "run_coingecko_fetch", "auto_promote"}
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/TrainingAccepted")
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert paths["/api/trainings/{training_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/TrainingStatus")
    assert "text/event-stream" in paths["/api/trainings/{training_id}/events"]["get"]["responses"]["200"]["content"]
    assert "/api/trainings/{training_id}/rerun" in paths
    rollback = paths["/api/models/{model_key}/rollback"]["post"]
    assert rollback["requestBody"]["content"]["application/json"]["schema"]["required"] == ["model_version"]
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert post["security"] == [{"token": []}]


def test_post_training_queues_a_dagster_run_tagged_with_the_token_name(env: Env) -> None:
    response = env.client.post("/api/trainings", json=PAYLOAD, headers=env.auth("trainer"))
    assert response.status_code == 202, response.text
    accepted = response.json()
    training_id = accepted["training_id"]
    assert UUID_RE.match(training_id) and accepted["status"] == "QUEUED" and accepted["job"] == "training_job"
    assert accepted["dataset_version"] == "m1" and accepted["model_key"] == "market_regime"
    assert accepted["links"]["dagster_run"] == f"{DAGSTER_URL}/runs/{training_id}"
    assert accepted["links"]["self"] == f"/api/trainings/{training_id}"

    run = env.instance.get_run_by_id(training_id)
    assert run is not None and run.status == dg.DagsterRunStatus.QUEUED and run.job_name == "training_job"
    assert run.run_config == training_run_config(PAYLOAD)[1]  # the same run config as `fp training run`
    assert run.remote_job_origin is not None and run.remote_job_origin.location_name == "feature_platform"
    assert run.tags["dagster/partition"] == "m1" and run.tags["fp/launched_by"] == "api"
    assert run.tags["fp/api_token"] == "trainer" and run.tags["user"] == "trainer (fp api token)"
    assert not any(token in json.dumps(dict(run.tags)) for token in env.tokens.values())

    status = env.client.get(f"/api/trainings/{training_id}", headers=env.auth("trainer"))
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["status"] == "QUEUED" and body["terminal"] is False and body["outcome"] is None
    assert body["launched_by"] == "trainer" and body["failure"] == [] and body["created_at"] > 0


HOSTILE_BODIES: list[tuple[str, bytes, int, str]] = [
    ("empty", b"", 422, "(body)"),
    ("array", b"[]", 422, "(body)"),
    ("string", b'"m1"', 422, "(body)"),
    ("not json", b"dataset_version=m1", 422, "(body)"),
    ("duplicate key", b'{"dataset_version": "m1", "dataset_version": "m2"}', 422, "(body)"),
    ("NaN", b'{"dataset_version": "m1", "seed": NaN}', 422, "(body)"),
    ("deep nesting", b'{"dataset_version": "m1", "hyperparams": {"a": ' + b"[" * 200 + b"]" * 200 + b"}}", 422,
     "(body)"),
    ("missing version", b"{}", 422, "dataset_version"),
    ("unknown field", b'{"dataset_version": "m1", "epochs": 3}', 422, "epochs"),
    ("string boolean", b'{"dataset_version": "m1", "auto_promote": "false"}', 422, "auto_promote"),
    ("int boolean", b'{"dataset_version": "m1", "run_coingecko_fetch": 1}', 422, "run_coingecko_fetch"),
    ("float seed", b'{"dataset_version": "m1", "seed": 1.0}', 422, "seed"),
    ("bool seed", b'{"dataset_version": "m1", "seed": true}', 422, "seed"),
    ("negative seed", b'{"dataset_version": "m1", "seed": -1}', 422, "seed"),
    ("bad schedule", b'{"dataset_version": "m1", "schedule": "weekly"}', 422, "schedule"),
    ("path version", b'{"dataset_version": "../m1"}', 422, "dataset_version"),
    ("number version", b'{"dataset_version": 1}', 422, "dataset_version"),
    ("unknown version", b'{"dataset_version": "m404"}', 422, "dataset_version"),
    ("bad model key", b'{"dataset_version": "m1", "model_key": "a/b"}', 422, "model_key"),
    ("hyperparams list", b'{"dataset_version": "m1", "hyperparams": [1]}', 422, "hyperparams"),
    ("too large", b'{"dataset_version": "m1", "feature_repo_ref": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413,
     "(body)"),
]


@pytest.mark.parametrize(("label", "raw", "status", "field"), HOSTILE_BODIES, ids=[h[0] for h in HOSTILE_BODIES])
def test_post_training_refuses_bad_payloads_and_launches_nothing(env: Env, label: str, raw: bytes, status: int,
                                                                 field: str) -> None:
    before = env.run_count()
    response = env.client.post("/api/trainings", content=raw,
                               headers={**env.auth("trainer"), "Content-Type": "application/json"})
    error = _error(response, status, field)
    assert error["expected"], error
    assert env.run_count() == before


def test_streamed_body_over_the_limit_is_413_json(env: Env) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"dataset_version": "m1", "feature_repo_ref": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    before = env.run_count()
    response = env.client.post("/api/trainings", content=chunks(), headers=env.auth("trainer"))
    _error(response, 413, "(body)")
    assert env.run_count() == before


def test_unknown_and_malformed_ids(env: Env) -> None:
    headers = env.auth("all")
    _error(env.client.get(f"/api/trainings/{UNKNOWN_ID}", headers=headers), 404, "training_id")
    _error(env.client.get(f"/api/trainings/{UNKNOWN_ID}/events", headers=headers), 404, "training_id")
    _error(env.client.post(f"/api/trainings/{UNKNOWN_ID}/rerun", headers=headers), 404, "training_id")
    for bad in ("not-a-uuid", UNKNOWN_ID.upper(), UNKNOWN_ID + "0", "..%2F..%2Fetc"):
        response = env.client.get(f"/api/trainings/{bad}", headers=headers)
        assert response.status_code in (404, 422), bad
        if response.status_code == 422:
            _error(response, 422, "training_id")
    _error(env.client.get("/api/nothing", headers=headers), 404, "path")
    _error(env.client.delete("/api/trainings", headers=headers), 405, "method")


def test_rerun_needs_a_finished_training(env: Env) -> None:
    queued = env.client.post("/api/trainings", json=PAYLOAD, headers=env.auth("trainer")).json()["training_id"]
    before = env.run_count()
    error = _error(env.client.post(f"/api/trainings/{queued}/rerun", headers=env.auth("writer")), 409, "training_id")
    assert "SUCCESS" in error["expected"] and "QUEUED" in error["message"]
    assert env.run_count() == before


def test_rollback_queues_rollback_job_once_per_model(env: Env, registered: str) -> None:
    headers = env.auth("writer")
    before = env.run_count()
    _error(env.client.post("/api/models/nomodel/rollback", json={"model_version": 1}, headers=headers), 404,
           "model_key")
    _error(env.client.post("/api/models/mk/rollback", json={"model_version": 9}, headers=headers), 404,
           "model_version")
    for body, field in [({"model_version": "1"}, "model_version"), ({"model_version": 0}, "model_version"),
                        ({"model_version": 1.0}, "model_version"), ({"model_version": True}, "model_version"),
                        ({}, "model_version"), ({"model_version": 1, "force": True}, "force")]:
        _error(env.client.post("/api/models/mk/rollback", json=body, headers=headers), 422, field)
    _error(env.client.post("/api/models/mk/rollback", content=b"[1]", headers=headers), 422, "(body)")
    _error(env.client.post("/api/models/bad key!/rollback", json={"model_version": 1}, headers=headers), 422,
           "model_key")
    assert env.run_count() == before

    response = env.client.post("/api/models/mk/rollback", json={"model_version": 1}, headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "QUEUED" and accepted["model_version"] == 1 and accepted["production_version"] is None
    run = env.instance.get_run_by_id(accepted["rollback_id"])
    assert run is not None and run.job_name == "rollback_job" and run.tags["fp/api_token"] == "writer"
    assert run.run_config == {"ops": {"rollback_model": {"config": {"model_key": "mk", "to_version": "1"}}}}

    again = env.client.post("/api/models/mk/rollback", json={"model_version": 1}, headers=headers)
    assert _error(again, 409, "model_key")["message"].startswith(f"rollback {accepted['rollback_id']}")
    assert env.run_count() == before + 1

    status = env.client.get(accepted["links"]["self"], headers=headers)
    assert status.status_code == 200 and status.json()["status"] == "QUEUED"
    assert status.json()["model_version"] == "1" and status.json()["launched_by"] == "writer"
    _error(env.client.get(f"/api/models/other/rollbacks/{accepted['rollback_id']}", headers=headers), 404,
           "rollback_id")
    # a rollback is not a training
    _error(env.client.get(f"/api/trainings/{accepted['rollback_id']}", headers=env.auth("all")), 404, "training_id")


def test_events_stream_status_changes_until_the_run_ends(env: Env) -> None:
    """Over a real uvicorn server: the first event now, one per change, and the stream ends on CANCELED."""
    training_id = env.client.post("/api/trainings", json=PAYLOAD, headers=env.auth("trainer")).json()["training_id"]
    events: list[tuple[str, dict[str, Any]]] = []
    first = threading.Event()
    kept_alive = threading.Event()
    with serve(env.app) as base:

        def listen() -> None:
            with httpx2.stream("GET", f"{base}/api/trainings/{training_id}/events", headers=env.auth("trainer"),
                               timeout=60) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                name = None
                for line in response.iter_lines():
                    if line == ": keepalive":
                        kept_alive.set()
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: ") and name:
                        events.append((name, json.loads(line.removeprefix("data: "))))
                        first.set()

        reader = threading.Thread(target=listen)
        reader.start()
        assert first.wait(timeout=60)
        assert kept_alive.wait(timeout=60)  # nothing changed for a while: a comment line, not an event
        run = env.instance.get_run_by_id(training_id)
        assert run is not None
        env.instance.report_run_canceling(run)
        env.instance.report_run_canceled(run)
        reader.join(timeout=60)
        assert not reader.is_alive()  # the server ended the stream
    statuses = [data["status"] for _, data in events]
    assert {name for name, _ in events} == {"training.status"}
    assert statuses[0] == "QUEUED" and statuses[-1] == "CANCELED" and events[-1][1]["terminal"] is True
    assert len(statuses) == len(set(statuses))  # only changes are sent
    assert all(data["training_id"] == training_id for _, data in events)


def test_an_instance_that_does_not_queue_runs_is_refused(tmp_path: Path) -> None:
    """Runs are only ever handed to a run queue: an instance launching immediately gets 503, and no run."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_coordinator:\n  module: dagster.core.run_coordinator\n"
                                       "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n")
    root = tmp_path / "data"
    token, _ = TokenStore(token_store_path(root)).create("t", ["ml:train"])
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("dataset_version", ["m1"])
    client = TestClient(create_app(ApiSettings(data_root=root, dagster_home=home)))
    response = client.post("/api/trainings", json=PAYLOAD, headers={"Authorization": f"Bearer {token}"})
    error = _error(response, 503, "DAGSTER_HOME")
    assert "QueuedRunCoordinator" in error["message"]
    assert instance.get_run_ids() == []
    instance.dispose()
