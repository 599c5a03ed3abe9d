"""Market data through Dagster: daily backfill, gap and anomaly checks, review queue, alerts, CLI."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from feature_platform.market.review import ReviewQueue
from feature_platform.orchestration.headless import run_market_backfill
from feature_platform.orchestration.market_assets import OVERRIDE_TAG, data_gap_alert
from feature_platform.orchestration.resources import PlatformPaths
from tests.conftest import CliResult

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
FAULTY = {**QUIET, "ops": {"market_data_raw": {"config": {"inject_gap_minutes": 12, "inject_jump": 0.3}}}}


def _materialization(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, Any]:
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            if mat.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"{asset} not materialized in {run_id}")


def test_clean_days_pass_and_reingest_changes_nothing(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    (first,) = run_market_backfill(["2026-11-23"], instance=instance, defs=defs, run_config=QUIET)
    assert first.succeeded and all(first.checks.values()) and len(first.checks) == 2
    upsert = _materialization(instance, first.run_id, "market_data")
    assert upsert["inserted"] == 3 * 1440 and upsert["updated"] == 0
    (again,) = run_market_backfill(["2026-11-23"], instance=instance, defs=defs, run_config=QUIET)
    redo = _materialization(instance, again.run_id, "market_data")
    assert (redo["inserted"], redo["updated"], redo["unchanged"]) == (0, 0, 3 * 1440)
    assert redo["snapshot_marker"] == upsert["snapshot_marker"]


def test_gap_and_jump_block_training_until_reviewed(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                    paths: PlatformPaths, root: Path,
                                                    cli: Callable[..., CliResult],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (day,) = run_market_backfill(["2026-11-24"], instance=instance, defs=defs, run_config=FAULTY)
    assert day.checks == {"market_data_raw:no_data_gaps": False, "market_data_raw:no_unreviewed_anomalies": False}
    assert day.materialized["market_data"] == 3 * 1440 - 12  # the data is kept; training is what gets blocked
    review = ReviewQueue(root / "review.sqlite")
    blocked, reasons = review.training_blocked()
    assert blocked and any("data-gap" in r for r in reasons) and any("anomaly" in r for r in reasons)

    resources = {k: defs.resources[k] for k in ("paths", "notifier")}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        data_gap_alert(context)
    alerts = [json.loads(line) for line in (root / "outbox" / "notifications.jsonl").read_text().splitlines()]
    assert alerts[-1]["kind"] == "data-gap" and alerts[-1]["severity"] == "error"
    with dg.build_sensor_context(instance=instance, cursor=context.cursor, resources=resources) as context:
        again = data_gap_alert(context)
    assert isinstance(again, dg.SkipReason) and "no new" in str(again.skip_message)

    monkeypatch.setenv("FP_DATA_ROOT", str(root))
    code, out, _ = cli("market", "blocks", "--json")
    blocks = json.loads(out)
    gap = next(b for b in blocks if b["kind"] == "data-gap")
    anomaly = next(b for b in blocks if b["kind"] == "anomaly")
    code, out, _ = cli("market", "review", "--status", "open")
    assert code == 0 and f"{anomaly['id']:>5}  open" in out
    assert cli("market", "override", str(gap["id"]), "--by", "ana", "--note", " ")[0] == 1  # a note is required
    assert cli("market", "override", str(gap["id"]), "--by", "ana", "--note", "exchange outage")[0] == 0
    assert cli("market", "resolve", str(anomaly["id"]), "--status", "approved", "--by", "ana")[0] == 0
    code, _, err = cli("market", "resolve", str(anomaly["id"]), "--status", "approved", "--by", "ana")
    assert code == 1 and err.startswith("fp: error:")
    code, out, _ = cli("market", "blocks")
    assert out.strip().endswith("training not blocked")
    assert review.training_blocked() == (False, [])


def test_override_tag_accepts_the_gaps_of_a_run(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                root: Path) -> None:
    (day,) = run_market_backfill(["2026-11-25"], instance=instance, defs=defs, run_config=FAULTY,
                                 tags={OVERRIDE_TAG: "true"})
    assert day.checks["market_data_raw:no_data_gaps"] is True
    review = ReviewQueue(root / "review.sqlite")
    gaps = [i for i in review.list(kind="data-gap") if i.partition == "2026-11-25"]
    assert gaps and all(i.status == "overridden" and i.resolver and i.resolver.startswith("run-tag:")
                        for i in gaps)
