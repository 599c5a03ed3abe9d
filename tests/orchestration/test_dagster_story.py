"""What the Dagster UI tells: owners, code versions and tags on every asset, plottable metrics, inline tables,
the registry read back after promotion, kinds of the configured stores, who launched a run, links in alerts,
and every `fp …` command quoted to users exists (with its options)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from feature_platform.cli import build_parser, main
from feature_platform.orchestration.headless import RefreshOutcome, run_feature_build, run_refresh, run_training
from feature_platform.orchestration.resources import NotifierResource, ObjectStoreResource, PlatformPaths, at_launch
from feature_platform.orchestration.run_report import RunSummary
from feature_platform.orchestration.story import OWNERS, code_version
from feature_platform.orchestration.training_assets import training_run_config
from tests.conftest import offline_defs

PROJECT = Path(__file__).resolve().parents[2]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SMALL = {**QUIET, "ops": {"source_snapshot": {"config": {"rows": 6_000, "entities": 50, "batch_rows": 2_000,
                                                          "seed": 3}}}}
PAYLOAD = {"model_key": "market_regime", "dataset_version": "s1", "hyperparam_profile": "fast",
           "schedule": "adhoc", "run_coingecko_fetch": False, "auto_promote": True}
DAGSTER_URL = "http://127.0.0.1:3999"


def _specs(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for a in defs.assets or [] for spec in a.specs}  # type: ignore[union-attr]


# --- declarations: no run needed ---------------------------------------------------------------------------


def test_every_asset_has_owners_code_version_and_tags(defs: dg.Definitions) -> None:
    specs = _specs(defs)
    assert {"trained_model", "promotion", "published_dataset", "definitions/purchases_90d_published"} <= set(specs)
    for key, spec in specs.items():
        assert spec.owners, key
        assert all(re.fullmatch(r"team:[a-z-]+|[^@\s]+@[^@\s]+", o) for o in spec.owners), (key, spec.owners)
        assert spec.code_version and re.fullmatch(r"[0-9a-f]{16}", spec.code_version), (key, spec.code_version)
        assert spec.tags.get("fp/pipeline") == spec.group_name and spec.tags.get("fp/stage"), (key, spec.tags)
        assert spec.owners == OWNERS[spec.group_name or ""], key
        assert spec.kinds, key
    # two definitions: same builder code, different definition files → different code versions
    builds = [specs[f"definitions/{name}"].code_version for name in ("purchases_90d", "recent_activity_time_split")]
    assert builds[0] != builds[1]


def test_code_version_follows_the_code_and_refuses_unknown_modules() -> None:
    def build() -> int:
        return 1

    base = code_version(build, ["feature_platform.datasets.build"])
    assert base == code_version(build, ["feature_platform.datasets.build"])  # deterministic
    assert base != code_version(build, ["feature_platform.datasets.build", "feature_platform.quality.gate"])
    assert base != code_version(build, ["feature_platform.datasets.build"], extra=[b"definition v2"])
    assert base == code_version(build, ["feature_platform.datasets.build", "feature_platform.datasets.build"])
    with pytest.raises(ValueError, match=r"feature_platform\.no_such_module"):
        code_version(build, ["feature_platform.no_such_module"])


def test_kinds_follow_the_configured_stores(root: Path, paths: PlatformPaths) -> None:
    from dagster_aws.s3 import S3Resource

    from feature_platform.orchestration.market_assets import TimeSeriesResource

    local = _specs(offline_defs(root, paths))
    for key in ("published_dataset", "archive_artifacts", "definitions/purchases_90d_published"):
        assert "s3" not in local[key].kinds and "filesystem" in local[key].kinds, (key, local[key].kinds)
    assert local["market_data"].kinds == {"duckdb"}
    s3, launch = at_launch(S3Resource), at_launch(PlatformPaths, paths)
    remote = _specs(offline_defs(root, launch, s3=s3,
                                 object_store=ObjectStoreResource(kind="s3", bucket="b", s3=s3, paths=launch),
                                 timeseries=TimeSeriesResource(url="postgresql://u@localhost/db", paths=launch)))
    assert remote["published_dataset"].kinds == {"s3", "sqlite"}
    assert remote["market_data"].kinds == {"postgres"}
    assert remote["source_snapshot"].kinds == local["source_snapshot"].kinds == {"python", "parquet"}


def test_schedule_and_sensor_runs_say_what_launched_them(instance: dg.DagsterInstance, paths: PlatformPaths,
                                                         root: Path) -> None:
    from feature_platform.orchestration.schedules import nightly_refresh
    from feature_platform.orchestration.sensors import inbox_sensor

    when = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    request = nightly_refresh(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert isinstance(request, dg.RunRequest) and request.tags["fp/launched_by"] == "schedule"
    assert "user" not in request.tags  # a schedule is not a person
    paths.inbox.mkdir(parents=True, exist_ok=True)
    (paths.inbox / "drop.parquet").write_bytes(b"PAR1 not really parquet")
    result = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"paths": paths}))
    assert isinstance(result, dg.SensorResult)
    assert [r.tags["fp/launched_by"] for r in result.run_requests or []] == ["sensor"]


def test_links_point_to_the_tracking_server_or_to_local_files() -> None:
    from feature_platform.observability.links import dagster_asset_url, dagster_base_url, dagster_run_url
    from feature_platform.registry.links import server_links

    links = server_links("https://mlflow.example.org/", "7", "abc123", "market_regime", "3")
    assert links["mlflow_run"].kind == "url"
    assert links["mlflow_run"].target == "https://mlflow.example.org/#/experiments/7/runs/abc123"
    assert links["mlflow_model_version"].target == "https://mlflow.example.org/#/models/market_regime/versions/3"
    assert dagster_run_url("http://h:3000", "r/1") == "http://h:3000/runs/r%2F1"
    assert dagster_asset_url("http://h:3000", ["definitions", "p"], "v 1") == \
        "http://h:3000/assets/definitions/p?partition=v%201"
    assert dagster_base_url({}) is None and dagster_base_url({"FP_DAGSTER_URL": " "}) is None
    assert dagster_base_url({"FP_DAGSTER_URL": "https://dagster.internal/"}) == "https://dagster.internal"
    for bad in ("dagster.internal:3000", "ftp://h", "http://", "javascript:alert(1)", "http://h:3000/?x=1"):
        with pytest.raises(ValueError, match="FP_DAGSTER_URL: expected an http"):
            dagster_base_url({"FP_DAGSTER_URL": bad})
        with pytest.raises(ValueError, match="dagster_url"):
            NotifierResource(dagster_url=bad)


def test_float_metadata_skips_what_a_plot_cannot_place_and_tables_hold_scalars() -> None:
    from feature_platform.orchestration.metadata import floats, table

    got = floats({"sharpe": 1.25, "n_periods": 30, "passed": True, "psi": float("nan"), "inf": float("inf"),
                  "name": "x", "nested": {"a": 1.0}}, prefix="m/")
    assert set(got) == {"m/sharpe", "m/n_periods"}
    assert all(isinstance(v, dg.FloatMetadataValue) for v in got.values()) and got["m/n_periods"].value == 30.0
    rendered = table([{"metric": "psi", "value": 0.5, "detail": {"k": [1, 2]}}, {"metric": "ks", "value": 0.1}],
                     ["metric", "value", "detail"])
    assert isinstance(rendered, dg.TableMetadataValue)
    assert [c.type for c in rendered.schema.columns] == ["string", "float", "string"]
    assert rendered.records[0].data["detail"] == "{'k': [1, 2]}" and rendered.records[1].data["detail"] is None


# --- every `fp …` command quoted to users exists -----------------------------------------------------------

COMMAND = re.compile(r"`(fp [^`]+)`")
WORD = re.compile(r"[a-z][a-z0-9_-]*(\|[a-z][a-z0-9_-]*)*")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _resolve(command: str) -> list[tuple[list[str], argparse.ArgumentParser, list[str]]]:
    """Each command path a quoted command names (``a|b`` alternatives expanded) → (path, leaf parser, options).

    A word after a leaf command is accepted only when the leaf takes a positional argument.
    """
    tokens = command.replace("[", " ").replace("]", " ").split()[1:]
    while tokens and tokens[0] in ("-v", "--verbose"):
        tokens = tokens[1:]
    options = [t.split("=")[0].rstrip(",") for t in tokens if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?,?", t)]
    paths: list[tuple[list[str], argparse.ArgumentParser]] = [([], build_parser())]
    for token in tokens:
        if token.startswith("-") or not WORD.fullmatch(token):
            break
        advanced = []
        for path, parser in paths:
            children = _subparsers(parser)
            if not children:
                positionals = [a for a in parser._actions if not a.option_strings]
                assert positionals, f"`{command}`: {' '.join(['fp', *path])} takes no argument {token!r}"
                advanced.append((path, parser))
                continue
            for word in token.split("|"):
                assert word in children, f"`{command}`: {word!r} is not a command of {' '.join(['fp', *path])}"
                advanced.append(([*path, word], children[word]))
        paths = advanced
    return [(path, parser, options) for path, parser in paths]


def _quoted_commands() -> dict[str, str]:
    """command → where it is quoted: alert templates, check descriptions, the README."""
    from feature_platform.definitions import build_defs
    from feature_platform.orchestration.market_assets import OVERRIDE_COMMAND

    found = {OVERRIDE_COMMAND: "data-gap alert"}
    for checks in build_defs().asset_checks or []:
        for spec in checks.check_specs:  # type: ignore[union-attr]
            for cmd in COMMAND.findall(spec.description or ""):
                found.setdefault(cmd, f"check {spec.name}")
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    for cmd in COMMAND.findall(readme):
        found.setdefault(cmd, "README")
    in_blocks = re.findall(r"```[^\n]*\n(.*?)```", readme, flags=re.S)
    for line in "\n".join(in_blocks).splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("fp "):
            found.setdefault(line.rstrip("\\").strip(), "README code block")
    return found


def test_the_override_command_is_the_real_one() -> None:
    quoted = _quoted_commands()
    assert "fp market override ID --by NAME --note WHY" in quoted
    assert quoted["fp market review"] == "check no_unreviewed_anomalies"
    assert quoted["fp market blocks"] == "check no_data_gaps"
    assert not [c for c in quoted if "blocks override" in c]
    assert sum(1 for where in quoted.values() if where.startswith("README")) >= 20


def test_every_quoted_fp_command_exists_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    quoted = _quoted_commands()
    checked = 0
    for command, where in sorted(quoted.items()):
        for path, parser, options in _resolve(command):
            known = set(parser._option_string_actions)
            unknown = [o for o in options if o not in known]
            assert not unknown, f"{where}: `{command}`: fp {' '.join(path)} has no option {unknown}"
            try:
                code = main([*path, "--help"])
            except SystemExit as exc:
                code = int(exc.code or 0)
            out = capsys.readouterr().out
            assert code == 0 and out.startswith("usage: fp"), f"{where}: `{command}` → {code}"
            checked += 1
    assert checked >= 20


def test_a_command_that_does_not_exist_is_caught() -> None:
    with pytest.raises(AssertionError, match="takes no argument 'override'"):
        _resolve("fp market blocks override ID --by NAME")
    with pytest.raises(AssertionError, match="'nope' is not a command of fp market"):
        _resolve("fp market nope")
    with pytest.raises(AssertionError, match="'frobnicate' is not a command of fp definitions"):
        _resolve("fp definitions list|frobnicate")
    (path, parser, options), = _resolve("fp market override ID --by NAME --note WHY --bogus")
    assert path == ["market", "override"] and "--bogus" in options and "--bogus" not in parser._option_string_actions


# --- the training chain as the UI shows it -----------------------------------------------------------------


@pytest.fixture(scope="module")
def story_defs(root: Path, paths: PlatformPaths) -> dg.Definitions:
    launch = at_launch(PlatformPaths, paths)
    notifier = NotifierResource(outbox_dir=str(root / "outbox"), slack_webhook_url=None, smtp_host=None,
                                pagerduty_routing_key=None, dagster_url=DAGSTER_URL, paths=launch)
    return offline_defs(root, launch, notifier=notifier)


@pytest.fixture(scope="module")
def trained(story_defs: dg.Definitions, instance: dg.DagsterInstance) -> Iterator[tuple[RefreshOutcome, RunSummary]]:
    outcome = run_refresh("s1", instance=instance, defs=story_defs, run_config=SMALL)
    assert outcome.refresh.succeeded, outcome.refresh
    built = run_feature_build("s1", instance=instance, defs=story_defs, run_config={
        **QUIET, "ops": {"feature_build": {"config": {"allow_dirty": True}}}})
    assert built.succeeded, built
    version, config = training_run_config(PAYLOAD)
    summary = run_training(version, instance=instance, defs=story_defs, run_config={**config, **QUIET})
    assert summary.succeeded, summary
    yield outcome, summary


def _latest(instance: dg.DagsterInstance, asset: str, partition: str = "s1") -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records
    assert records, asset
    materialization = records[0].asset_materialization
    assert materialization is not None
    return dict(materialization.metadata)


def test_metrics_are_top_level_floats(trained: tuple[RefreshOutcome, RunSummary],
                                      instance: dg.DagsterInstance) -> None:
    model = _latest(instance, "trained_model")
    assert "metrics" not in model  # no JSON blob: each metric is its own plottable entry
    model_floats = {k for k, v in model.items() if isinstance(v, dg.FloatMetadataValue)}
    assert len(model_floats) >= 5 and "onnx_parity_max_abs_diff" in model_floats, model_floats
    evaluation = _latest(instance, "model_evaluation")
    for key in ("test_sharpe", "test_max_drawdown", "val_sharpe"):
        assert isinstance(evaluation[key], dg.FloatMetadataValue), (key, evaluation.get(key))
    quality = _latest(instance, "quality_report")
    assert isinstance(quality["quality/psi"], dg.FloatMetadataValue)
    assert isinstance(quality["failures"], dg.TableMetadataValue)
    if "drift_plot" in quality:
        assert "data:image/png;base64," in str(quality["drift_plot"].value)


def test_registry_is_read_back_after_promotion(trained: tuple[RefreshOutcome, RunSummary],
                                               instance: dg.DagsterInstance, root: Path) -> None:
    from feature_platform.registry.tracking import client

    promoted = _latest(instance, "promotion")
    assert promoted["promoted"].value is True and promoted["is_production"].value is True
    aliases = promoted["aliases"].value
    assert "production" in aliases, aliases
    registry = client(root).get_model_version("market_regime", promoted["model_version"].value)
    assert sorted(registry.aliases) == sorted(aliases)
    observed = instance.fetch_observations(dg.AssetKey("registered_model"), limit=1).records
    assert observed and observed[0].asset_observation is not None
    seen = observed[0].asset_observation.metadata
    assert "production" in seen["aliases"].value and seen["observed_by"].value == "promotion"
    # local store: the links are directories that exist, never file:// URLs
    for key in ("mlflow_run", "mlflow_model_version"):
        value = promoted[key]
        assert isinstance(value, dg.PathMetadataValue) and Path(str(value.value)).is_dir(), (key, value)
    published = _latest(instance, "published_dataset")
    assert isinstance(published["location"], dg.PathMetadataValue), published["location"]


def test_cli_runs_say_who_launched_them(trained: tuple[RefreshOutcome, RunSummary],
                                        instance: dg.DagsterInstance) -> None:
    outcome, summary = trained
    for run_id in (outcome.refresh.run_id, summary.run_id, outcome.archive.run_id if outcome.archive else ""):
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert run.tags["fp/launched_by"] == "cli" and run.tags["user"].endswith("(fp)"), run.tags


def test_notifications_carry_run_and_report_links(trained: tuple[RefreshOutcome, RunSummary],
                                                  story_defs: dg.Definitions, instance: dg.DagsterInstance,
                                                  root: Path, paths: PlatformPaths) -> None:
    outcome, _ = trained
    outbox = root / "outbox" / "notifications.jsonl"
    records = [json.loads(line) for line in outbox.read_text().splitlines()]
    published = [r for r in records if r["title"].startswith("Dataset") and r["dataset_version"] == "s1"]
    assert published, records
    links = published[-1]["links"]
    assert links["Dagster run"] == f"{DAGSTER_URL}/runs/{outcome.refresh.run_id}"
    assert links["published_dataset in Dagster"] == f"{DAGSTER_URL}/assets/published_dataset?partition=s1"
    assert links["quality report"] == (paths.reports("s1") / "quality_report.json").resolve().as_uri()

    # a refresh that fails at once: the alert links its run, and the gap alert names the real command
    failed = run_refresh("s2", instance=instance, defs=story_defs,
                         run_config={**QUIET, "ops": {"source_snapshot": {"config": {"kind": "file"}}}})
    assert not failed.refresh.succeeded
    records = [json.loads(line) for line in outbox.read_text().splitlines()]
    alert = [r for r in records if r["dataset_version"] == "s2" and r["severity"] == "error"]
    assert alert and alert[-1]["links"]["Dagster run"] == f"{DAGSTER_URL}/runs/{failed.refresh.run_id}"


def test_data_gap_alert_names_the_override_command_and_links_the_asset(
        story_defs: dg.Definitions, instance: dg.DagsterInstance, root: Path, paths: PlatformPaths) -> None:
    from feature_platform.market.review import ReviewQueue
    from feature_platform.market.validation import Gap
    from feature_platform.orchestration.market_assets import data_gap_alert

    start = datetime(2026, 2, 1, 12, tzinfo=UTC)
    ReviewQueue(root / "review.sqlite").record_gaps([Gap("bitcoin", start, start + timedelta(minutes=9), 9.0)],
                                                    "2026-02-01")
    configured = story_defs.resources or {}
    with dg.build_sensor_context(instance=instance, resources={k: configured[k] for k in ("paths", "notifier")}
                                 ) as context:
        data_gap_alert(context)
    records = [json.loads(line) for line in (root / "outbox" / "notifications.jsonl").read_text().splitlines()]
    gap = [r for r in records if r["kind"] == "data-gap"][-1]
    assert "fp market override ID --by NAME --note WHY" in gap["text"] and "blocks override" not in gap["text"]
    block_id = re.search(r"block (\d+):", gap["text"])
    assert block_id, gap["text"]
    commands = re.findall(r"\b(fp [a-z][^\n]*)", gap["text"])
    assert len(commands) == 2, gap["text"]
    for command in commands:  # every command the alert tells a reader to run exists, options included
        for path, parser, options in _resolve(command):
            assert path and set(options) <= set(parser._option_string_actions), command
    assert gap["links"]["market_data_raw in Dagster"] == f"{DAGSTER_URL}/assets/market_data_raw?partition=2026-02-01"


# --- make ui: signals reach dagster dev --------------------------------------------------------------------

PROBE = ("import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
         "signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)")


def test_ui_launcher_restores_the_signals_a_background_start_ignores() -> None:
    """`make ui &` (or a supervisor) starts with SIGINT ignored; dagster dev maps SIGTERM to SIGINT's handler, so
    without the launcher both would be ignored and the UI would outlive make."""
    import signal
    import subprocess
    import sys

    def ignoring() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    direct = subprocess.run([sys.executable, "-c", PROBE], preexec_fn=ignoring, capture_output=True, text=True)
    assert direct.stdout.split() == ["False", "False"]  # what dagster dev would inherit
    launched = subprocess.run([sys.executable, "-m", "feature_platform.orchestration.dev", sys.executable, "-c",
                               PROBE], preexec_fn=ignoring, capture_output=True, text=True)
    assert launched.returncode == 0 and launched.stdout.split() == ["True", "True"], launched.stderr
    missing = subprocess.run([sys.executable, "-m", "feature_platform.orchestration.dev", "no-such-dagster-binary"],
                             capture_output=True, text=True)
    assert missing.returncode == 127 and missing.stderr.count("\n") == 1 and "no-such-dagster-binary" in missing.stderr
    empty = subprocess.run([sys.executable, "-m", "feature_platform.orchestration.dev"], capture_output=True, text=True)
    assert empty.returncode == 2 and empty.stderr.startswith("usage:")
