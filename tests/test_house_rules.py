"""Rules that now have one home: the data-root layout, the deployment switch, the check type, the training record,
the baseline fallback and the partition seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feature_platform.contracts.checks import Check, CheckList, check_lines, check_rows
from feature_platform.contracts.data_root import DataRoot
from feature_platform.training.record import TrainingRecord, read_training_record, write_training_record


def test_data_root_names_every_file_once(tmp_path: Path) -> None:
    layout = DataRoot(tmp_path)
    assert layout.review_db == tmp_path / "review.sqlite"
    assert layout.quality_report("v1") == tmp_path / "reports" / "v1" / "quality_report.json"
    assert layout.feature_build("v1") == tmp_path / "features" / "offline" / "v1" / "feature_build.json"
    assert layout.dataset_dir("v1") == tmp_path / "datasets" / "market_regime-v1"
    with pytest.raises(ValueError, match="dataset_version"):
        layout.reports("../escape")


def test_data_root_from_env_is_the_platform_paths_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_platform.orchestration.resources import PlatformPaths

    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "r"))
    assert DataRoot.from_env().root == PlatformPaths().root == (tmp_path / "r").resolve()
    assert PlatformPaths().layout.catalog_db == DataRoot.from_env().catalog_db


@pytest.mark.parametrize(("env", "kind"), [({}, "local"), ({"FP_DEPLOYMENT": "s3"}, "s3"),
                                           ({"FP_OBJECT_STORE": "s3"}, "s3"),
                                           ({"FP_DEPLOYMENT": "local", "FP_OBJECT_STORE": "s3"}, "local")])
def test_one_switch_chooses_the_deployment(env: dict[str, str], kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_platform.definitions import resources

    for name in ("FP_DEPLOYMENT", "FP_OBJECT_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resources()["object_store"].kind == kind  # type: ignore[attr-defined]


def test_an_unknown_deployment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_platform.definitions import resources

    monkeypatch.setenv("FP_DEPLOYMENT", "cloud")
    with pytest.raises(ValueError, match=r"\$FP_DEPLOYMENT: expected one of local, s3; got 'cloud'"):
        resources()
    with pytest.raises(ValueError, match="got 'S3'"):
        resources("S3")


def test_one_check_type_renders_text_and_rows() -> None:
    checks = CheckList()
    checks.checks = []
    assert not checks.ok  # no checks at all is not a pass
    checks.add("size", True, 3, 3)
    checks.add("sha", False, "ab", "cd", target="data.parquet", detail="flipped")
    assert not checks.ok and [c.name for c in checks.failures] == ["sha"]
    assert check_lines(checks.checks, failures_only=True) == [
        "FAIL sha[data.parquet]: expected 'ab', actual 'cd' (flipped)"]
    assert [r["result"] for r in check_rows(checks.checks)] == ["FAIL", "pass"]
    assert Check("x", False, 1, 2).to_json_dict(("name", "passed")) == {"name": "x", "passed": False}


def test_training_record_round_trips_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    record = TrainingRecord("t1", "/m/t1", "m", "3", "run", "m")
    path = write_training_record(tmp_path, "v1", record)
    assert json.loads(path.read_text())["model_version"] == "3"
    assert read_training_record(tmp_path, "v1") == record
    assert read_training_record(tmp_path, "v2") is None
    path.write_text(json.dumps({**record.to_json_dict(), "model_version": 3}))
    with pytest.raises(ValueError, match="string fields"):
        read_training_record(tmp_path, "v1")


def test_baseline_fallback_and_partition_seed(tmp_path: Path) -> None:
    from feature_platform.datasets.synthetic import partition_seed
    from feature_platform.quality.baseline import choose_baseline

    assert choose_baseline("last_published", None).name == "baseline_eval_v1"
    assert choose_baseline("last_published", tmp_path / "missing.json").name == "baseline_eval_v1"
    assert partition_seed("v1", 7) == 7
    assert partition_seed("v1") == partition_seed("v1") != partition_seed("v1", namespace="tensor:")
    assert 0 <= partition_seed("v1") < 2**31


def test_notifier_secrets_reach_runs_as_env_vars_never_as_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook URL set in the environment is resolved when the run starts, and the resource config Dagster
    records holds the variable's name, not the secret."""
    import dagster as dg

    from feature_platform.definitions import resources
    from feature_platform.orchestration.resources import NotifierResource

    secret = "https://hooks.example.invalid/T000/B000/secret-token"
    monkeypatch.setenv("FP_SLACK_WEBHOOK_URL", secret)
    monkeypatch.delenv("FP_PAGERDUTY_ROUTING_KEY", raising=False)
    configured = resources()
    notifier = configured["notifier"]
    assert isinstance(notifier, NotifierResource)
    assert secret not in repr(notifier._get_non_default_public_field_values())
    assert "FP_SLACK_WEBHOOK_URL" in repr(notifier._get_non_default_public_field_values())

    @dg.asset(required_resource_keys={"notifier"})
    def webhook(context) -> str:  # type: ignore[no-untyped-def]  # dagster resolves annotations at run time
        return str(context.resources.notifier.slack_webhook_url)

    result = dg.materialize([webhook], resources={"notifier": notifier, "paths": configured["paths"]})
    assert result.output_for_node("webhook") == secret


def test_every_module_over_400_lines_says_why_on_its_first_line() -> None:
    package = Path(__file__).resolve().parents[1] / "feature_platform"
    long_files = [p for p in sorted(package.rglob("*.py")) if len(p.read_text(encoding="utf-8").splitlines()) > 400]
    assert long_files, "expected some long modules (the rule would test nothing)"
    unexplained = [str(p.relative_to(package)) for p in long_files
                   if not p.read_text(encoding="utf-8").startswith("# Over 400 lines: ")]
    assert unexplained == []
