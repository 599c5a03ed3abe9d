"""HTTP tests of the dataset-definition endpoints and the wizard's cookie session: every endpoint's status
codes, scopes (401/403), bad input (422 with field and expected), conflicts (409), unknown ids (404), and
that nothing is written when a request is refused. A real seeded DuckDB warehouse, real definition files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from feature_platform.api.app import create_app
from feature_platform.api.datasets import DatasetsConfig
from feature_platform.api.pages import CSRF_HEADER, LOGIN_NONCE_COOKIE, SESSION_COOKIE, csrf_token
from feature_platform.api.settings import ApiSettings
from feature_platform.api.tokens import TokenStore, token_store_path
from feature_platform.contracts.provenance import PROJECT_ROOT

REPO_DEFINITIONS = PROJECT_ROOT / "definitions"
ACTIVE = "purchases_90d"  # active in the repository's definitions
DRAFT = "fixed_window_by_product"  # a draft there


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    root = tmp_path_factory.mktemp("api-data")
    app = create_app(ApiSettings(data_root=root))
    store = TokenStore(token_store_path(root))
    tokens = {name: store.create(name, scopes)[0] for name, scopes in (
        ("rw", ["datasets:read", "datasets:write"]), ("ro", ["datasets:read"]), ("train", ["ml:train"]),
        ("gone", ["datasets:read", "datasets:write"]))}
    store.revoke("gone")
    with TestClient(app) as client:
        yield client, tokens


@pytest.fixture
def defs(api: tuple[TestClient, dict[str, str]], tmp_path: Path, warehouse: Path) -> Path:
    """A fresh copy of the repository's definitions, served by the app with the seeded warehouse."""
    directory = tmp_path / "definitions"
    shutil.copytree(REPO_DEFINITIONS, directory)
    client = api[0]
    client.app.state.datasets_config = DatasetsConfig(directory, warehouse)  # type: ignore[attr-defined]
    return directory


@pytest.fixture
def client(api: tuple[TestClient, dict[str, str]], defs: Path) -> TestClient:
    return api[0]


def auth(api: tuple[TestClient, dict[str, str]], name: str = "rw") -> dict[str, str]:
    return {"Authorization": f"Bearer {api[1][name]}"}


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def new_definition(name: str = "wizard_made", **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": name, "description": "made over HTTP",
        "tables": [{"name": "transactions"}, {"name": "users"}],
        "joins": [{"left_table": "transactions", "left_column": "user_id", "right_table": "users",
                   "right_column": "user_id", "type": "left"}],
        "columns": [{"table": "transactions", "column": "user_id", "role": "user_id"},
                    {"table": "transactions", "column": "transaction_ts", "role": "timestamp"},
                    {"table": "transactions", "column": "amount", "role": "revenue"},
                    {"table": "users", "column": "country"}],
        "split": {"strategy": "time", "eval_days": 14},
    }
    raw.update(overrides)
    return raw


def error(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


# every endpoint: (method, path, json body, scope it needs)
ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/models/m1/datasets/", None, "read"),
    ("POST", "/api/models/m1/datasets/create/", new_definition(), "write"),
    ("POST", "/api/models/m1/datasets/check-name/", {"name": "x"}, "read"),
    ("GET", f"/api/datasets/{ACTIVE}/", None, "read"),
    ("POST", f"/api/datasets/{DRAFT}/update/", None, "write"),
    ("POST", f"/api/datasets/{DRAFT}/delete/", None, "write"),
    ("POST", f"/api/datasets/{ACTIVE}/clone/", {"new_name": "copy1"}, "write"),
    ("POST", f"/api/datasets/{DRAFT}/activate/", None, "write"),
    ("GET", "/api/models/m1/bq-tables/", None, "read"),
    ("GET", "/api/models/m1/bq-tables/users/schema/", None, "read"),
    ("GET", "/api/models/m1/bq-tables/users/stats/", None, "read"),
    ("GET", "/api/models/m1/bq-tables/users/columns/country/samples/", None, "read"),
    ("POST", "/api/models/m1/detect-joins/", {"tables": []}, "read"),
    ("POST", "/api/models/m1/suggest-columns/", {"tables": ["transactions"]}, "read"),
    ("POST", f"/api/datasets/{ACTIVE}/analyze/", {}, "read"),
    ("GET", f"/api/datasets/{ACTIVE}/preview/", None, "read"),
    ("GET", f"/api/datasets/{ACTIVE}/summary/", None, "read"),
    ("POST", "/api/models/m1/datasets/compare/", {"names": [ACTIVE, DRAFT]}, "read"),
    ("GET", f"/api/datasets/{ACTIVE}/query/", None, "read"),
    ("GET", f"/api/datasets/{ACTIVE}/query/split/", None, "read"),
    ("GET", f"/api/datasets/{ACTIVE}/query/tfx/", None, "read"),
    ("POST", f"/api/datasets/{ACTIVE}/validate-query/", None, "read"),
]
IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]


def test_every_endpoint_is_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for method, path, _, _ in ENDPOINTS:
        template = (path.replace("/m1/", "/{model_id}/").replace(f"/{ACTIVE}/", "/{dataset_id}/")
                    .replace(f"/{DRAFT}/", "/{dataset_id}/").replace("/users/", "/{table}/")
                    .replace("/country/", "/{column}/"))
        assert method.lower() in spec["paths"][template], template
    assert not [p for p in spec["paths"] if p.startswith("/ui/")]  # the cookie twins stay out of the API document
    create = spec["paths"]["/api/models/{model_id}/datasets/create/"]["post"]
    assert "DatasetDefinition" in str(create["requestBody"])  # a typed request model


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=IDS)
def test_scopes(api: tuple[TestClient, dict[str, str]], defs: Path, method: str, path: str, body: Any,
                scope: str) -> None:
    client = api[0]
    before = files(defs)
    no_token = client.request(method, path, json=body)
    assert no_token.status_code == 401 and error(no_token)["field"] == "Authorization"
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
    revoked = client.request(method, path, json=body, headers=auth(api, "gone"))
    assert revoked.status_code == 401
    garbage = client.request(method, path, json=body, headers={"Authorization": "Bearer fp_not-a-token"})
    assert garbage.status_code == 401
    wrong_scope = client.request(method, path, json=body, headers=auth(api, "train"))
    assert wrong_scope.status_code == 403 and "datasets:" in error(wrong_scope)["expected"]
    if scope == "write":
        read_only = client.request(method, path, json=body, headers=auth(api, "ro"))
        assert read_only.status_code == 403 and error(read_only)["expected"] == "a token with scope datasets:write"
    assert files(defs) == before  # nothing written by any refused request


# --- definitions -------------------------------------------------------------------------------------------


def test_list_filters_and_pages(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    (defs / "broken.yaml").write_text("name: [not, a, name]\n")
    body = client.get("/api/models/m1/datasets/", headers=auth(api, "ro")).json()
    assert body["total"] == 4
    by_file = {e["file"]: e for e in body["definitions"]}
    assert by_file["broken.yaml"]["status"] == "invalid" and "field name" in by_file["broken.yaml"]["error"]
    assert by_file[f"{ACTIVE}.yaml"]["status"] == "active" and len(by_file[f"{ACTIVE}.yaml"]["sha256"]) == 64
    active = client.get("/api/models/m1/datasets/?status=active", headers=auth(api)).json()
    assert [e["name"] for e in active["definitions"]] == [ACTIVE, "recent_activity_time_split"]
    found = client.get("/api/models/m1/datasets/?search=FIXED", headers=auth(api)).json()
    assert [e["name"] for e in found["definitions"]] == [DRAFT]
    page2 = client.get("/api/models/m1/datasets/?page=2&page_size=3", headers=auth(api)).json()
    assert page2["total"] == 4 and len(page2["definitions"]) == 1
    for query, field in (("status=archived", "status"), ("page=0", "page"), ("page=1.5", "page"),
                         ("page_size=501", "page_size"), ("page=true", "page")):
        bad = client.get(f"/api/models/m1/datasets/?{query}", headers=auth(api))
        assert bad.status_code == 422 and error(bad)["field"] == field, query


def test_create_then_get(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    resp = client.post("/api/models/m1/datasets/create/", json=new_definition(), headers=auth(api))
    assert resp.status_code == 201, resp.text
    assert resp.json()["summary"]["status"] == "draft"
    on_disk = yaml.safe_load((defs / "wizard_made.yaml").read_text())
    assert on_disk["name"] == "wizard_made" and on_disk["status"] == "draft"
    got = client.get("/api/datasets/wizard_made/", headers=auth(api, "ro")).json()
    assert got["definition"]["columns"][3] == {"table": "users", "column": "country", "alias": None,
                                               "role": "feature"}
    assert got["summary"]["sha256"] == resp.json()["summary"]["sha256"]
    taken = client.post("/api/models/m1/datasets/check-name/", json={"name": "wizard_made"}, headers=auth(api))
    assert taken.json() == {"name": "wizard_made", "available": False, "taken_by": "wizard_made.yaml"}
    free = client.post("/api/models/m1/datasets/check-name/", json={"name": "fresh"}, headers=auth(api)).json()
    assert free["available"] is True


BAD_CREATES: list[tuple[str, Any, int, str]] = [
    ("name taken", new_definition(ACTIVE), 409, "name"),
    ("file taken", new_definition("purchases_90d"), 409, "name"),
    ("name pattern", new_definition("../escape"), 422, "name"),
    ("name empty", new_definition(""), 422, "name"),
    ("unknown table", yaml.safe_load(yaml.safe_dump(new_definition()).replace("users", "nope")), 422,
     "tables[1].name"),
    ("unknown column", new_definition(columns=[{"table": "transactions", "column": "user_id", "role": "user_id"},
                                               {"table": "transactions", "column": "ts", "role": "timestamp"},
                                               {"table": "users", "column": "country"}]), 422, "columns[1].column"),
    ("role type", new_definition(columns=[{"table": "transactions", "column": "user_id", "role": "user_id"},
                                          {"table": "transactions", "column": "channel", "role": "timestamp"},
                                          {"table": "users", "column": "country"}]), 422, "columns[1].role"),
    ("no timestamp", new_definition(columns=[{"table": "transactions", "column": "user_id", "role": "user_id"},
                                             {"table": "users", "column": "country"}]), 422, "columns"),
    ("unjoined table", new_definition(joins=[]), 422, "tables[1]"),
    ("join cycle", new_definition(joins=[
        {"left_table": "transactions", "left_column": "user_id", "right_table": "users", "right_column": "user_id"},
        {"left_table": "users", "left_column": "user_id", "right_table": "transactions",
         "right_column": "user_id"}]), 422, "joins[1].right_table"),
    ("sql in a name", new_definition(columns=[{"table": "transactions", "column": "user_id; DROP TABLE x",
                                               "role": "user_id"}]), 422, "columns[0].column"),
    ("parquet path", new_definition(tables=[{"name": "transactions", "path": "/etc/passwd"}, {"name": "users"}]),
     422, "tables[0].path"),
    ("active status", new_definition(status="active"), 422, "status"),
    ("extra field", new_definition(owner="me"), 422, "owner"),
    ("fraction as string", new_definition(split={"strategy": "random", "eval_fraction": "0.2"}), 422,
     "split.eval_fraction"),
    ("time split with fraction", new_definition(split={"strategy": "time", "eval_days": 3, "eval_fraction": 0.1}),
     422, "split"),
    ("not an object", [], 422, "(body)"),
    ("days as string", new_definition(split={"strategy": "time", "eval_days": "14"}), 422, "split.eval_days"),
    ("days as float", new_definition(split={"strategy": "time", "eval_days": 14.0}), 422, "split.eval_days"),
    ("name as number", {**new_definition(), "name": 7}, 422, "name"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
def test_create_refuses_and_writes_nothing(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path,
                                           case: str, body: Any, status: int, field: str) -> None:
    before = files(defs)
    resp = client.post("/api/models/m1/datasets/create/", json=body, headers=auth(api))
    assert resp.status_code == status, resp.text
    err = error(resp)
    assert err["field"] == field, err
    assert err["expected"]
    assert files(defs) == before


@pytest.mark.parametrize(("case", "raw"), [
    ("duplicate key", b'{"name": "a", "name": "b"}'),
    ("NaN", b'{"name": "nan_made", "filters": {"top_products_percent": NaN}}'),
    ("deep nesting", b'{"name": "x", "description": ' + b"[" * 300 + b"]" * 300 + b"}"),
    ("not json", b"name=x"),
])
def test_create_refuses_malformed_json(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path,
                                       case: str, raw: bytes) -> None:
    before = files(defs)
    resp = client.post("/api/models/m1/datasets/create/", content=raw,
                       headers={**auth(api), "Content-Type": "application/json"})
    assert resp.status_code == 422 and error(resp)["field"] == "(body)", resp.text
    assert files(defs) == before


def test_update(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    current = client.get(f"/api/datasets/{DRAFT}/", headers=auth(api)).json()["definition"]
    changed = {**current, "description": "narrower", "filters": {**current["filters"], "top_products_percent": 50}}
    resp = client.post(f"/api/datasets/{DRAFT}/update/", json=changed, headers=auth(api))
    assert resp.status_code == 200, resp.text
    assert yaml.safe_load((defs / f"{DRAFT}.yaml").read_text())["filters"]["top_products_percent"] == 50
    before = files(defs)
    for body, status, field in (
        ({**changed, "name": "renamed"}, 422, "name"),
        ({**changed, "columns": [{**changed["columns"][0], "column": "missing"}, *changed["columns"][1:]]}, 422,
         "columns[0].column"),
        ({**changed, "status": "active"}, 422, "status"),
    ):
        bad = client.post(f"/api/datasets/{DRAFT}/update/", json=body, headers=auth(api))
        assert bad.status_code == status and error(bad)["field"] == field, bad.text
    active = client.get(f"/api/datasets/{ACTIVE}/", headers=auth(api)).json()["definition"]
    refused = client.post(f"/api/datasets/{ACTIVE}/update/", json={**active, "status": "draft"}, headers=auth(api))
    assert refused.status_code == 409 and error(refused)["field"] == "status"
    unknown = client.post("/api/datasets/nope/update/", json={**changed, "name": "nope"}, headers=auth(api))
    assert unknown.status_code == 404 and error(unknown)["field"] == "dataset_id"
    assert files(defs) == before


def test_delete(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    before = files(defs)
    active = client.post(f"/api/datasets/{ACTIVE}/delete/", headers=auth(api))
    assert active.status_code == 409 and error(active)["expected"] == "a draft"
    assert client.post("/api/datasets/nope/delete/", headers=auth(api)).status_code == 404
    assert client.post("/api/datasets/..%2Fetc/delete/", headers=auth(api)).status_code in (404, 422)
    assert files(defs) == before
    ok = client.post(f"/api/datasets/{DRAFT}/delete/", headers=auth(api))
    assert ok.status_code == 200 and ok.json() == {"name": DRAFT, "deleted": True}
    assert not (defs / f"{DRAFT}.yaml").exists()
    assert client.get(f"/api/datasets/{DRAFT}/", headers=auth(api)).status_code == 404


def test_delete_rule_is_the_clis(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`fp definitions delete` and the endpoint refuse the same active definition with the same line."""
    from feature_platform.cli import main

    api_error = error(client.post(f"/api/datasets/{ACTIVE}/delete/", headers=auth(api)))["message"]
    assert main(["definitions", "delete", ACTIVE, "--definitions-dir", str(defs)]) == 1
    assert capsys.readouterr().err.strip() == f"fp: refused: {api_error}"
    assert (defs / f"{ACTIVE}.yaml").exists()
    assert main(["definitions", "delete", DRAFT, "--definitions-dir", str(defs), "--json"]) == 0
    assert '"deleted": true' in capsys.readouterr().out and not (defs / f"{DRAFT}.yaml").exists()
    assert client.post(f"/api/datasets/{DRAFT}/delete/", headers=auth(api)).status_code == 404


def test_clone(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    resp = client.post(f"/api/datasets/{ACTIVE}/clone/", json={"new_name": "p_copy", "description": "mine"},
                       headers=auth(api))
    assert resp.status_code == 201, resp.text
    summary = resp.json()["summary"]
    assert (summary["name"], summary["status"], summary["description"]) == ("p_copy", "draft", "mine")
    before = files(defs)
    for body, status, field in (({"new_name": ACTIVE}, 409, "name"), ({"new_name": "p_copy"}, 409, "name"),
                                ({"new_name": "../x"}, 422, "new_name"), ({"new_name": 3}, 422, "new_name"),
                                ({}, 422, "new_name"), ({"new_name": "ok", "extra": 1}, 422, "extra")):
        bad = client.post(f"/api/datasets/{ACTIVE}/clone/", json=body, headers=auth(api))
        assert bad.status_code == status and error(bad)["field"] == field, (body, bad.text)
    assert client.post("/api/datasets/nope/clone/", json={"new_name": "z"}, headers=auth(api)).status_code == 404
    assert files(defs) == before


def test_activate(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    resp = client.post(f"/api/datasets/{DRAFT}/activate/", headers=auth(api))
    assert resp.status_code == 200 and resp.json() == {"name": DRAFT, "status": "active", "changed": True}
    assert "status: active" in (defs / f"{DRAFT}.yaml").read_text()
    again = client.post(f"/api/datasets/{DRAFT}/activate/", headers=auth(api)).json()
    assert again["changed"] is False
    # a draft that loads but no longer matches the warehouse: activation refused, file unchanged
    broken = new_definition("stale")
    broken["columns"][3] = {"table": "users", "column": "loyalty_tier"}
    (defs / "stale.yaml").write_text(yaml.safe_dump(broken))
    before = files(defs)
    refused = client.post("/api/datasets/stale/activate/", headers=auth(api))
    assert refused.status_code == 422 and error(refused)["field"] == "columns[3].column"
    assert files(defs) == before


# --- warehouse -------------------------------------------------------------------------------------------


def test_warehouse_endpoints(api: tuple[TestClient, dict[str, str]], client: TestClient) -> None:
    h = auth(api, "ro")
    tables = client.get("/api/models/m1/bq-tables/", headers=h).json()
    assert {t["name"] for t in tables} >= {"transactions", "users", "products"}
    assert all(t["row_count"] > 0 for t in tables)
    schema = client.get("/api/models/m1/bq-tables/transactions/schema/", headers=h).json()
    roles = {c["name"]: c["suggested_role"] for c in schema}
    assert roles["user_id"] == "user_id" and roles["transaction_ts"] == "timestamp"
    stats = client.get("/api/models/m1/bq-tables/users/stats/?columns=user_id&columns=country", headers=h).json()
    assert [s["name"] for s in stats] == ["user_id", "country"] and stats[0]["uniqueness"] == 1.0
    samples = client.get("/api/models/m1/bq-tables/users/columns/country/samples/?limit=3", headers=h).json()
    assert len(samples) == 3 and samples[0]["count"] >= samples[1]["count"]
    joins = client.post("/api/models/m1/detect-joins/", json={"tables": ["transactions", "users"]}, headers=h).json()
    assert joins[0]["left_table"] == "transactions" and joins[0]["right_column"] == "user_id"
    assert joins[0]["level"] == "high"
    suggested = client.post("/api/models/m1/suggest-columns/", json={"tables": ["transactions"]}, headers=h).json()
    assert suggested["timestamp"] == ["transactions.transaction_ts"]


WAREHOUSE_BAD: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/api/models/m1/bq-tables/nope/schema/", None, 404, "table"),
    ("GET", "/api/models/m1/bq-tables/users%3B%20DROP/schema/", None, 404, "table"),
    ("GET", "/api/models/m1/bq-tables/nope/stats/", None, 404, "table"),
    ("GET", "/api/models/m1/bq-tables/users/stats/?columns=nope", None, 404, "column"),
    ("GET", "/api/models/m1/bq-tables/users/columns/nope/samples/", None, 404, "column"),
    ("GET", "/api/models/m1/bq-tables/users/columns/country/samples/?limit=0", None, 422, "limit"),
    ("GET", "/api/models/m1/bq-tables/users/columns/country/samples/?limit=2.5", None, 422, "limit"),
    ("GET", "/api/models/m1/bq-tables/users/columns/country/samples/?limit=1001", None, 422, "limit"),
    ("POST", "/api/models/m1/detect-joins/", {"tables": ["users"]}, 422, "tables"),
    ("POST", "/api/models/m1/detect-joins/", {"tables": ["users", "nope"]}, 404, "table"),
    ("POST", "/api/models/m1/detect-joins/", {"tables": "users"}, 422, "tables"),
    ("POST", "/api/models/m1/suggest-columns/", {"tables": ["nope"]}, 404, "table"),
    ("POST", "/api/models/m1/suggest-columns/", {"table": ["users"]}, 422, "table"),
    ("GET", "/api/models/-bad/bq-tables/", None, 422, "model_id"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), WAREHOUSE_BAD,
                         ids=[f"{w[0]} {w[1]} {w[2]}" for w in WAREHOUSE_BAD])
def test_warehouse_bad_input(api: tuple[TestClient, dict[str, str]], client: TestClient, method: str, path: str,
                             body: Any, status: int, field: str | None) -> None:
    resp = client.request(method, path, json=body, headers=auth(api))
    assert resp.status_code == status, resp.text
    err = error(resp)
    if field is not None:
        assert err["field"] == field, err
    assert err["expected"]


def test_missing_warehouse_is_503(api: tuple[TestClient, dict[str, str]], defs: Path, tmp_path: Path) -> None:
    client = api[0]
    client.app.state.datasets_config = DatasetsConfig(defs, tmp_path / "absent.duckdb")  # type: ignore[attr-defined]
    before = files(defs)
    for method, path, body in (("GET", "/api/models/m1/bq-tables/", None),
                               ("POST", "/api/models/m1/datasets/create/", new_definition()),
                               ("POST", f"/api/datasets/{ACTIVE}/analyze/", {})):
        resp = client.request(method, path, json=body, headers=auth(api))
        assert resp.status_code == 503 and "does not exist" in error(resp)["message"], resp.text
    assert files(defs) == before


# --- analysis and SQL --------------------------------------------------------------------------------------


def test_analyze_preview_summary_compare(api: tuple[TestClient, dict[str, str]], client: TestClient) -> None:
    h = auth(api, "ro")
    analysis = client.post(f"/api/datasets/{DRAFT}/analyze/", json={"as_of": "2026-06-01"}, headers=h).json()
    assert analysis["rows"] == analysis["split"]["train_rows"] + analysis["split"]["eval_rows"] > 0
    assert 0 <= analysis["quality_score"] <= 100 and isinstance(analysis["issues"], list)
    assert client.post(f"/api/datasets/{DRAFT}/analyze/", headers=h).status_code == 200  # no body: defaults
    preview = client.get(f"/api/datasets/{DRAFT}/preview/?limit=3", headers=h).json()
    assert len(preview["rows"]) == 3 and preview["columns"][0]["role"] == "user_id"
    summary = client.get(f"/api/datasets/{ACTIVE}/summary/", headers=h).json()
    assert summary["status"] == "active" and summary["tables"] == ["transactions", "users", "products"]
    comparison = client.post("/api/models/m1/datasets/compare/",
                             json={"names": [ACTIVE, DRAFT], "as_of": "2026-06-01"}, headers=h).json()
    assert comparison["definitions"] == [ACTIVE, DRAFT] and len(comparison["metrics"]["rows"]) == 2


ANALYSIS_BAD: list[tuple[str, str, Any, int, str]] = [
    ("POST", f"/api/datasets/{ACTIVE}/analyze/", {"as_of": "2026-13-01"}, 422, "as_of"),
    ("POST", f"/api/datasets/{ACTIVE}/analyze/", {"as_of": "June"}, 422, "as_of"),
    ("POST", f"/api/datasets/{ACTIVE}/analyze/", {"as_of": 20260601}, 422, "as_of"),
    ("POST", "/api/datasets/nope/analyze/", {}, 404, "dataset_id"),
    ("GET", f"/api/datasets/{ACTIVE}/preview/?limit=0", None, 422, "limit"),
    ("GET", f"/api/datasets/{ACTIVE}/preview/?limit=ten", None, 422, "limit"),
    ("GET", "/api/datasets/nope/preview/", None, 404, "dataset_id"),
    ("GET", "/api/datasets/nope/summary/", None, 404, "dataset_id"),
    ("POST", "/api/models/m1/datasets/compare/", {"names": [ACTIVE]}, 422, "names"),
    ("POST", "/api/models/m1/datasets/compare/", {"names": [ACTIVE] * 6}, 422, "names"),
    ("POST", "/api/models/m1/datasets/compare/", {"names": [ACTIVE, ACTIVE]}, 422, "names"),
    ("POST", "/api/models/m1/datasets/compare/", {"names": [ACTIVE, "nope"]}, 404, "names"),
    ("POST", "/api/models/m1/datasets/compare/", {"names": ACTIVE}, 422, "names"),
    ("GET", f"/api/datasets/{ACTIVE}/query/?split=test", None, 422, "split"),
    ("GET", f"/api/datasets/{ACTIVE}/query/?dialect=mysql", None, 422, "dialect"),
    ("GET", f"/api/datasets/{ACTIVE}/query/?as_of=2026-02-30", None, 422, "as_of"),
    ("GET", f"/api/datasets/{ACTIVE}/query/split/?dialect=oracle", None, 422, "dialect"),
    ("GET", "/api/datasets/nope/query/", None, 404, "dataset_id"),
    ("GET", "/api/datasets/nope/query/tfx/", None, 404, "dataset_id"),
    ("POST", "/api/datasets/nope/validate-query/", None, 404, "dataset_id"),
    ("GET", "/api/datasets/-x/", None, 422, "dataset_id"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), ANALYSIS_BAD,
                         ids=[f"{a[0]} {a[1]} {a[2]}" for a in ANALYSIS_BAD])
def test_analysis_bad_input(api: tuple[TestClient, dict[str, str]], client: TestClient, method: str, path: str,
                            body: Any, status: int, field: str) -> None:
    resp = client.request(method, path, json=body, headers=auth(api))
    assert resp.status_code == status, resp.text
    assert error(resp)["field"] == field


def test_queries_match_the_cli_domain(api: tuple[TestClient, dict[str, str]], client: TestClient,
                                      defs: Path) -> None:
    from feature_platform.datasets.definitions.model import find_definition
    from feature_platform.datasets.definitions.sql import render_query, tfx_query_config

    defn = find_definition(ACTIVE, defs)
    h = auth(api, "ro")
    q = client.get(f"/api/datasets/{ACTIVE}/query/?split=eval&dialect=duckdb&as_of=2026-06-01", headers=h).json()
    assert q["sql"] == render_query(defn, split="eval", dialect="duckdb",
                                    as_of=__import__("datetime").date(2026, 6, 1))
    split = client.get(f"/api/datasets/{ACTIVE}/query/split/", headers=h).json()
    assert split["train"] == render_query(defn, split="train", dialect="bigquery")
    assert "FARM_FINGERPRINT" in split["eval"]
    assert client.get(f"/api/datasets/{ACTIVE}/query/tfx/", headers=h).json() == tfx_query_config(defn)
    valid = client.post(f"/api/datasets/{ACTIVE}/validate-query/", headers=h).json()
    assert valid["ok"] is True and valid["estimated_rows_scanned"] > 0 and valid["problems"] == []


def test_validate_query_reports_problems(api: tuple[TestClient, dict[str, str]], client: TestClient,
                                         defs: Path) -> None:
    broken = new_definition("stale")
    broken["columns"][3] = {"table": "users", "column": "loyalty_tier"}
    (defs / "stale.yaml").write_text(yaml.safe_dump(broken))
    resp = client.post("/api/datasets/stale/validate-query/", headers=auth(api, "ro")).json()
    assert resp["ok"] is False and "columns[3].column" in resp["problems"][0]
    assert resp["estimated_rows_scanned"] is None


# --- the wizard's session ----------------------------------------------------------------------------------


def login(client: TestClient, token: str) -> Any:
    form = client.get("/login")
    nonce = form.cookies.get(LOGIN_NONCE_COOKIE) or client.cookies.get(LOGIN_NONCE_COOKIE)
    assert nonce and f'value="{nonce}"' in form.text
    return client.post("/login", content=f"nonce={nonce}&token={token}",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)


def test_login_sets_a_strict_httponly_cookie(api: tuple[TestClient, dict[str, str]], defs: Path) -> None:
    app = api[0].app
    with TestClient(app) as browser:
        assert browser.get("/models/m1/dataset/", follow_redirects=False).headers["location"] == "/login"
        resp = login(browser, api[1]["rw"])
        assert resp.status_code == 303
        cookie = resp.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
            "Strict", "strict")
        page = browser.get("/models/m1/dataset/")
        assert page.status_code == 200 and ACTIVE in page.text
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert api[1]["rw"] not in page.text  # the token never reaches a page
        csrf = csrf_token(api[1]["rw"])
        assert f'content="{csrf}"' in page.text
        for path in ("/models/m1/dataset/new", f"/models/m1/dataset/{ACTIVE}",
                     f"/models/m1/dataset/compare?names={ACTIVE}&names={DRAFT}"):
            assert browser.get(path).status_code == 200, path
        one = browser.get(f"/models/m1/dataset/compare?names={ACTIVE}")
        assert one.status_code == 422 and "expected 2 to 5" in one.text


def test_login_refusals(api: tuple[TestClient, dict[str, str]], defs: Path) -> None:
    app = api[0].app
    with TestClient(app) as browser:
        assert login(browser, "fp_wrong").status_code == 401
        assert login(browser, api[1]["train"]).status_code == 403  # no datasets scope
        assert SESSION_COOKIE not in browser.cookies
        browser.get("/login")
        forged = browser.post("/login", content=f"nonce=guess&token={api[1]['rw']}",
                              headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
        assert forged.status_code == 403 and SESSION_COOKIE not in browser.cookies
        as_json = browser.post("/login", json={"token": api[1]["rw"]})
        assert as_json.status_code == 415


def test_ui_api_needs_cookie_and_csrf(api: tuple[TestClient, dict[str, str]], defs: Path) -> None:
    app = api[0].app
    with TestClient(app) as browser:
        assert browser.get("/ui/api/models/m1/bq-tables/").status_code == 401
        login(browser, api[1]["rw"])
        assert browser.get("/ui/api/models/m1/bq-tables/").status_code == 200
        before = files(defs)
        no_csrf = browser.post("/ui/api/models/m1/datasets/create/", json=new_definition())
        assert no_csrf.status_code == 403 and error(no_csrf)["field"] == CSRF_HEADER
        wrong = browser.post("/ui/api/models/m1/datasets/create/", json=new_definition(),
                             headers={CSRF_HEADER: "0" * 64})
        assert wrong.status_code == 403
        assert files(defs) == before
        ok = browser.post("/ui/api/models/m1/datasets/create/", json=new_definition(),
                          headers={CSRF_HEADER: csrf_token(api[1]["rw"])})
        assert ok.status_code == 201
        # the bearer API ignores the cookie: a browser session cannot reach /api
        assert browser.get("/api/models/m1/bq-tables/").status_code == 401
    with TestClient(app) as reader:
        login(reader, api[1]["ro"])
        refused = reader.post(f"/ui/api/datasets/{DRAFT}/delete/", headers={CSRF_HEADER: csrf_token(api[1]["ro"])})
        assert refused.status_code == 403 and (defs / f"{DRAFT}.yaml").exists()


def test_pages_escape_what_definitions_contain(api: tuple[TestClient, dict[str, str]], client: TestClient,
                                              defs: Path) -> None:
    hostile = new_definition("xss", description='<script>alert(1)</script><img src=x onerror="alert(2)">')
    assert client.post("/api/models/m1/datasets/create/", json=hostile, headers=auth(api)).status_code == 201
    with TestClient(client.app) as browser:
        login(browser, api[1]["ro"])
        for path in ("/models/m1/dataset/", "/models/m1/dataset/xss"):
            page = browser.get(path)
            assert page.status_code == 200
            assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
            assert 'onerror="alert(2)"' not in page.text
        assert browser.get("/models/m1/dataset/nope").status_code == 404
        assert browser.get("/models/-x/dataset/").status_code == 422
        assert browser.get("/ui/static/../app.py").status_code == 404
        assert browser.get("/ui/static/wizard.js").headers["content-type"].startswith("text/javascript")


def test_concurrent_creates_of_one_name(api: tuple[TestClient, dict[str, str]], client: TestClient,
                                        defs: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bodies = [new_definition("raced", description=f"writer {i}") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda b: client.post("/api/models/m1/datasets/create/", json=b,
                                                      headers=auth(api)).status_code, bodies))
    assert codes == [201, 409, 409, 409]
    assert yaml.safe_load((defs / "raced.yaml").read_text())["name"] == "raced"
    assert not [p for p in defs.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_oversized_body_is_refused(api: tuple[TestClient, dict[str, str]], client: TestClient, defs: Path) -> None:
    before = files(defs)
    huge = new_definition(description="x" * (2 * 1024 * 1024))
    resp = client.post("/api/models/m1/datasets/create/", json=huge, headers=auth(api))
    assert resp.status_code == 413
    assert files(defs) == before
