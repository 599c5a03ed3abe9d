"""`fp train|promote|rollback|rerun|lineage|training`: the model lifecycle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_platform.cli import progress
from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CheckFailed,
    UsageError,
    add_json_flag,
    add_run_flags,
    data_root,
    finite_float,
    input_file,
    layout,
    model_key,
    model_version,
    non_negative_int,
    parse_payload,
    positive_float,
    print_json,
    report_run,
    run_in_process,
)
from feature_platform.registry.guardrails import DEFAULT_MAX_DRAWDOWN, DEFAULT_MIN_SHARPE

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands


def register(groups: Commands) -> None:
    train = groups.add(
        "train", _train, help="train, export ONNX, log to MLflow and register a model version",
        description="Refuses unless the dataset verifies. Writes <data_root>/models/<training_id>/ and registers "
        "a version of <model-key> with alias 'staging'.")
    train.add_argument("--dataset-manifest", required=True, type=Path, help="manifest.json of a published dataset")
    train.add_argument("--model-key", type=model_key, default="market_regime",
                       help="registered model name (default market_regime)")
    hp = train.add_mutually_exclusive_group()
    hp.add_argument("--hyperparams", default=None, help="JSON object of hyperparameters")
    hp.add_argument("--profile", default=None, help="saved tuning profile: default, fast, deep")
    train.add_argument("--seed", type=non_negative_int, default=0, help="training random seed (default 0)")
    train.add_argument("--schedule", choices=["adhoc", "backfill"], default="adhoc",
                       help="why this run happened, recorded on the run (default adhoc)")
    train.add_argument("--feature-build", type=input_file, default=None,
                       help="feature_build.json the features came from")
    train.add_argument("--auto-promote", action="store_true", help="promote to production when every check passes")
    add_json_flag(train)

    promote = groups.add("promote", _promote, help="move alias 'production' after re-checking everything now")
    promote.add_argument("--model-key", type=model_key, required=True, help="registered model name")
    promote.add_argument("--version", type=model_version, required=True, help="registered model version (1, 2, …)")
    promote.add_argument("--dataset-id", default=None, help="refuse unless the model was trained on this dataset")
    promote.add_argument("--min-sharpe", type=finite_float, default=DEFAULT_MIN_SHARPE,
                         help=f"guardrail on test Sharpe (default {DEFAULT_MIN_SHARPE:g})")
    promote.add_argument("--max-drawdown", type=finite_float, default=DEFAULT_MAX_DRAWDOWN,
                         help="guardrail on test max drawdown")
    add_json_flag(promote)

    rollback = groups.add("rollback", _rollback,
                          help="put an earlier version back in production after re-verifying it")
    rollback.add_argument("--model-key", type=model_key, required=True, help="registered model name")
    rollback.add_argument("--to-version", type=model_version, required=True, help="registered model version")
    add_json_flag(rollback)

    rerun = groups.add("rerun", _rerun, help="retrain from training_manifest.yaml and report reproducibility")
    rerun.add_argument("--training-id", required=True, help="directory name under <data_root>/models")
    add_json_flag(rerun)

    lineage = groups.add("lineage", _lineage,
                         help="walk model → run → dataset → files → source, re-verifying each link")
    lineage.add_argument("--model-key", type=model_key, required=True, help="registered model name")
    which = lineage.add_mutually_exclusive_group()
    which.add_argument("--version", type=model_version, default=None, help="registered model version")
    which.add_argument("--alias", default=None, help="e.g. production or staging (default: production)")
    add_json_flag(lineage)

    training_cmds = groups.group("training", "{run,submit}",
                                 help="the Dagster training job: run headless or submit to a webserver")
    trun = training_cmds.add("run", _training_run, help="run training_job for a dataset_version in process")
    trun.add_argument("--payload", required=True, help="JSON payload (model_key, dataset_version, feature_repo_ref, "
                      "hyperparams, schedule, run_coingecko_fetch, auto_promote) or @file.json")
    add_run_flags(trun)
    submit = training_cmds.add("submit", _training_submit,
                               help="submit training_job to a running Dagster webserver (GraphQL)")
    submit.add_argument("--payload", required=True, help="JSON payload or @file.json (see `fp training run`)")
    submit.add_argument("--url", default="http://127.0.0.1:3000", help="Dagster webserver (default local)")
    submit.add_argument("--no-wait", action="store_true", help="print the run id and return at once")
    submit.add_argument("--timeout", type=positive_float, default=1800.0, help="seconds to wait (default 1800)")
    add_json_flag(submit)


def _train(args: argparse.Namespace) -> int:
    from feature_platform.contracts.safe_read import InputError, loads_json
    from feature_platform.registry.promotion import promote
    from feature_platform.registry.tracking import log_training
    from feature_platform.training.data import TrainingRefused
    from feature_platform.training.profiles import HyperparameterError
    from feature_platform.training.train import train_model

    try:
        hyperparameters = loads_json(args.hyperparams, "--hyperparams") if args.hyperparams else None
        if hyperparameters is not None and not isinstance(hyperparameters, dict):
            raise ValueError("must be a JSON object")
    except InputError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"--hyperparams: {exc}") from None
    from feature_platform.attest.attestation import load_private_key, signing_key_from_env

    signing_key = signing_key_from_env()
    if signing_key is not None:
        load_private_key(signing_key)  # a bad FP_SIGNING_KEY fails before training, not after
    root = data_root()
    try:
        with progress.spinner(args, f"training {args.model_key}"):
            result = train_model(args.dataset_manifest, layout().models, model_key=args.model_key,
                                 hyperparameters=hyperparameters, profile=args.profile, seed=args.seed,
                                 schedule=args.schedule, feature_build_path=args.feature_build)
    except TrainingRefused as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except HyperparameterError as exc:
        raise UsageError(str(exc)) from None
    logged = log_training(result.model_dir, data_root=root, feature_build_path=args.feature_build,
                          schedule=args.schedule, signing_key=signing_key)
    m = result.model_manifest
    out: dict[str, Any] = {"training_id": m.training_id, "model_dir": str(result.model_dir), "model": logged.model_name,
           "version": logged.version, "mlflow_run_id": logged.run_id, "metrics": m.metrics}
    code = EXIT_OK
    if args.auto_promote:
        promoted = promote(logged.model_name, logged.version, data_root=root, review_db=layout().review_db)
        out["promoted"] = promoted.promoted
        out["promotion_refused"] = promoted.decision.reasons
        code = EXIT_OK if promoted.promoted else EXIT_FAILED
    if args.json:
        print_json(out)
    else:
        print(f"trained {m.model_id}: {logged.model_name} v{logged.version} (alias staging), run {logged.run_id}")
        print(f"  model dir: {result.model_dir}")
        print("  " + ", ".join(f"{k}={v:.4g}" for k, v in m.metrics.items() if k.startswith("test_")))
        for reason in out.get("promotion_refused", []) or []:
            print(f"  promotion refused: {reason}")
    return code


def _promote(args: argparse.Namespace) -> int:
    from feature_platform.registry.guardrails import Guardrails
    from feature_platform.registry.promotion import promote

    root = data_root()
    result = promote(args.model_key, args.version, data_root=root, dataset_id=args.dataset_id,
                     guardrails=Guardrails(min_sharpe=args.min_sharpe, max_drawdown=args.max_drawdown),
                     review_db=layout().review_db)
    if args.json:
        print_json(result.to_json_dict())
        return EXIT_OK if result.promoted else EXIT_FAILED
    for check in result.decision.checks:
        print(f"{'PASS' if check.passed else 'FAIL'} {check.name}: expected {check.expected}, actual {check.actual}")
    if not result.promoted:
        print(f"REFUSED: {args.model_key} v{args.version} not promoted; production unchanged "
              f"({len(result.decision.reasons)} failed check(s))")
        return EXIT_FAILED
    print(f"PROMOTED: {args.model_key} v{args.version} is production (previous: {result.previous_version or 'none'})")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from feature_platform.registry.rollback import rollback

    root = data_root()
    result = rollback(args.model_key, args.to_version, data_root=root, review_db=layout().review_db)
    if args.json:
        print_json(result.to_json_dict())
        return EXIT_OK if result.ok else EXIT_FAILED
    if result.replay is not None:
        print(f"replay: {result.replay.rows} rows, max |Δp| {result.replay.max_abs_diff:.3g}, "
              f"{'ok' if result.replay.ok else 'MISMATCH'}")
    if not result.ok:
        for reason in result.reasons:
            print(f"FAIL {reason}")
        print(f"REFUSED: production unchanged ({result.previous_version or 'none'})")
        return EXIT_FAILED
    print(f"ROLLED BACK: {args.model_key} production is v{args.to_version} (was {result.previous_version or 'none'})")
    return EXIT_OK


def _rerun(args: argparse.Namespace) -> int:
    from feature_platform.contracts.checks import check_lines
    from feature_platform.contracts.model_manifest import TRAINING_MANIFEST_NAME
    from feature_platform.contracts.paths import require_safe_id
    from feature_platform.training.data import TrainingRefused
    from feature_platform.training.rerun import rerun_training

    require_safe_id(args.training_id, "--training-id")
    root = data_root()
    manifest = layout().models / args.training_id / TRAINING_MANIFEST_NAME
    if not manifest.exists():
        raise CheckFailed(f"{manifest}: no such training; expected a training id under {root / 'models'}")
    try:
        with progress.spinner(args, f"retraining {args.training_id}"):
            report = rerun_training(manifest, layout().model_reruns)
    except TrainingRefused as exc:
        print(f"fp: error: rerun {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json(report.to_json_dict())
    else:
        print(f"rerun {args.training_id}: {'reproduced' if report.reproduced else 'NOT reproduced'}")
        print("\n".join(check_lines(report.checks)))
        for difference in report.differences:
            print(f"  differs: {difference}")
    return EXIT_OK if report.reproduced else EXIT_FAILED


def _lineage(args: argparse.Namespace) -> int:
    from feature_platform.registry.lineage import lineage

    if args.alias == "":
        raise UsageError("--alias: expected an alias such as production or staging, got ''")
    alias = args.alias or (None if args.version else "production")
    report = lineage(args.model_key, version=args.version, alias=alias, data_root=data_root())
    if args.json:
        print_json(report.to_json_dict())
    else:
        print(report.render())
    return EXIT_OK if report.ok else EXIT_FAILED


def _training_run(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.headless import run_training
    from feature_platform.orchestration.training_assets import training_run_config

    payload = parse_payload(args.payload)
    try:
        version, config = training_run_config(payload)
    except ValueError as exc:
        raise UsageError(f"--payload: {exc}") from None
    summary = run_in_process(args, f"training_job {version}", run_training, version, config)
    lines = [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in summary.checks.items()]
    lines.append(f"training_job {version}: {summary.status}; materialized: {', '.join(summary.materialized)}")
    return report_run(args, summary, lines)


def _training_submit(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.submit import submit_training

    payload = parse_payload(args.payload)
    try:
        run_id, status = submit_training(args.url, payload, wait=not args.no_wait, timeout=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = status in ("FAILURE", "CANCELED") or (not args.no_wait and status != "SUCCESS")
    if args.json:
        print_json({"run_id": run_id, "status": status, "waited": not args.no_wait, "ok": not failed})
    else:
        print(f"run {run_id}: {status}")
    return EXIT_FAILED if failed else EXIT_OK
