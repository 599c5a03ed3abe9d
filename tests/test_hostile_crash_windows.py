"""Crash windows, with real kills: a child process SIGKILLs itself at the exact step boundary, then the
next run must reconcile. Also: concurrent promotions in two processes, and rollback of tampered bytes.

Windows covered (each killed by ``os.kill(os.getpid(), SIGKILL)`` in a child; nothing is cleaned up):

* dataset publish: after the intent is written but before ``current.json`` moves; after ``current.json``
  moves but before the catalog commits; after the commit but before the intent is removed;
* promotion: after the journal's pending event but before the alias moves; after the alias moves but
  before the event is marked applied; after it is marked applied but before the MLflow tag copy.

The hook points are the real library calls at those boundaries (the store's pointer write, MLflow's
alias call, the journal's settle), wrapped only inside the doomed child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.registry.history import ProductionJournal, journal_path
from feature_platform.registry.promotion import HISTORY_TAG, production_history, promote, settle_pending
from feature_platform.registry.rollback import replay_reference, rollback
from feature_platform.registry.tracking import client
from feature_platform.storage.catalog import Catalog
from feature_platform.storage.dataset_publish import (
    DatasetPublishError,
    current_pointer,
    publish_dataset_version,
    reconcile_publish,
    sweep_abandoned_uploads,
    verify_published,
    versions_prefix,
)
from feature_platform.storage.object_store import LocalObjectStore
from tests.registry import test_registry as registry_fixtures
from tests.registry.test_registry import artifact_path, production_version

# The registry module's fixtures (one tracking store per module, logged model versions), reused by name.
_default_tracking = registry_fixtures._default_tracking
monkeypatch_module = registry_fixtures.monkeypatch_module
data_root = registry_fixtures.data_root
golden_dataset = registry_fixtures.golden_dataset
trained = registry_fixtures.trained
new_case = registry_fixtures.new_case

REPO = Path(__file__).resolve().parent.parent
DS = "crash_ds"
SUMMARY = {"passed": True, "metrics": 3}


# -- the doomed child -------------------------------------------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _child(argv: list[str]) -> None:  # pragma: no cover - runs in a child process that is killed
    """Entry point of the child: ``publish|promote|move`` with its arguments; see the callers."""
    kind, *args = argv
    if kind == "publish":
        from feature_platform.contracts.manifest import parse_manifest
        from feature_platform.storage.dataset_publish import pointer_key

        store_root, catalog_path, dataset_dir, point = args
        key = pointer_key(DS)
        real_put = LocalObjectStore.put_bytes

        def put_bytes(self: LocalObjectStore, data: bytes, k: str) -> None:
            if k == key and point == "before-switch":
                _die()
            real_put(self, data, k)
            if k == key and point == "after-switch":
                _die()

        setattr(LocalObjectStore, "put_bytes", put_bytes)  # noqa: B010 - only in this doomed child
        if point == "after-commit":
            setattr(Catalog, "drop_intent", lambda self, path: _die())  # noqa: B010
        manifest = parse_manifest(json.loads((Path(dataset_dir) / MANIFEST_NAME).read_bytes()))
        publish_dataset_version(Path(dataset_dir), manifest, LocalObjectStore(store_root), Catalog(catalog_path),
                                quality_summary=SUMMARY)
    elif kind == "promote":
        from mlflow import MlflowClient

        root, model, version, point = args
        real_alias = MlflowClient.set_registered_model_alias
        real_settle = ProductionJournal.settle

        def set_alias(self: Any, name: str, alias: str, v: Any) -> None:
            if point == "before-alias":
                _die()
            real_alias(self, name, alias, v)
            if point == "after-alias":
                _die()

        def settle(self: ProductionJournal, seq: int, state: Any, at: str) -> None:
            real_settle(self, seq, state, at)
            if point == "after-applied" and state == "applied":
                _die()

        setattr(MlflowClient, "set_registered_model_alias", set_alias)  # noqa: B010 - only in this doomed child
        setattr(ProductionJournal, "settle", settle)  # noqa: B010
        result = promote(model, version, data_root=Path(root))
        assert result.promoted, result.decision.reasons
    elif kind == "move":
        from feature_platform.registry.promotion import move_production

        root, model, versions, rounds, worker, go = args
        mc = client(Path(root))
        Path(go + f".ready{worker}").touch()
        while not Path(go).exists():
            time.sleep(0.002)
        for i in range(int(rounds)):
            for v in versions.split(","):
                move_production(mc, Path(root), model, v, "promote", worker=int(worker), round=i)
    sys.exit(0)


def spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    code = "import sys; from tests.test_hostile_crash_windows import _child; _child(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_killed(*args: str) -> None:
    proc = spawn(*args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err.decode()[-2000:])


# -- dataset publish: current.json and the catalog -----------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    root = tmp_path_factory.mktemp("crash_built")
    return {v: build_dataset(SyntheticMarketSource(1500, seed, batch_rows=500, entities=30), root / v, DS,
                             dataset_version=v) for v, seed in (("v1", 1), ("v2", 2))}


class Target:
    def __init__(self, tmp: Path) -> None:
        self.store_root, self.catalog_path = tmp / "store", tmp / "catalog.sqlite"
        self.store, self.catalog = LocalObjectStore(self.store_root), Catalog(self.catalog_path)

    def publish(self, result: BuildResult) -> Any:
        return publish_dataset_version(result.path, result.manifest, self.store, self.catalog,
                                       quality_summary=SUMMARY)

    def kill_publish(self, result: BuildResult, point: str) -> None:
        run_killed("publish", str(self.store_root), str(self.catalog_path), str(result.path), point)

    def uploads(self, version: str) -> set[str]:
        root = versions_prefix(DS, version) + "/"
        return {root + k[len(root):].split("/")[0] for k in self.store.list(root)}

    def assert_agree(self, built: dict[str, BuildResult], previous: str | None) -> None:
        """Pointer and catalog name the same v2 upload, which verifies, with the right previous version."""
        pointer, entry = current_pointer(self.store, DS), self.catalog.current(DS)
        assert pointer is not None and entry is not None
        assert (pointer["dataset_version"], pointer["prefix"]) == ("v2", entry.prefix)
        assert entry.dataset_version == "v2" and entry.previous_version == previous
        assert (pointer["previous"] or {}).get("dataset_version") == previous
        assert entry.quality_summary == SUMMARY
        assert [e.dataset_version for e in self.catalog.versions(DS)] == ["v2", *([previous] if previous else [])]
        assert self.uploads("v2") == {entry.prefix}
        assert self.catalog.intents(DS) == []
        assert all(c.passed for c in verify_published(self.store, entry.prefix, built["v2"].manifest))


@pytest.mark.parametrize("with_previous", [True, False], ids=["after-v1", "first-publish"])
@pytest.mark.parametrize("point", ["before-switch", "after-switch", "after-commit"])
def test_a_publish_killed_in_each_window_is_reconciled_by_the_next_run(
        built: dict[str, BuildResult], tmp_path: Path, point: str, with_previous: bool) -> None:
    target = Target(tmp_path)
    if with_previous:
        target.publish(built["v1"])
    target.kill_publish(built["v2"], point)

    # What the kill left: an intent, and (after the switch, before the commit) pointer and catalog disagree.
    assert len(target.catalog.intents(DS)) == 1
    pointer, entry = current_pointer(target.store, DS), target.catalog.current(DS)
    moved = point != "before-switch"
    assert (pointer or {}).get("dataset_version") == ("v2" if moved else ("v1" if with_previous else None))
    recorded = point == "after-commit"
    assert (entry.dataset_version if entry else None) == ("v2" if recorded else ("v1" if with_previous else None))

    again = target.publish(built["v2"])  # the next run
    assert again.created == (point == "before-switch")  # a switch that happened is kept, not redone
    assert again.dataset_version == "v2" and again.previous_version == ("v1" if with_previous else None)
    assert again.previous_version != "v2"  # never its own previous version
    target.assert_agree(built, "v1" if with_previous else None)


def test_the_sweep_also_reconciles_a_publish_killed_after_the_switch(built: dict[str, BuildResult],
                                                                     tmp_path: Path) -> None:
    target = Target(tmp_path)
    target.publish(built["v1"])
    target.kill_publish(built["v2"], "after-switch")
    assert sweep_abandoned_uploads(target.store, target.catalog, DS) == []
    target.assert_agree(built, "v1")
    assert reconcile_publish(target.store, target.catalog, DS) == []  # settled once, nothing left


def test_an_upload_orphaned_before_the_switch_is_deleted_by_reconcile(built: dict[str, BuildResult],
                                                                      tmp_path: Path) -> None:
    target = Target(tmp_path)
    first = target.publish(built["v1"])
    target.kill_publish(built["v2"], "before-switch")
    assert len(target.uploads("v2")) == 1
    (note,) = reconcile_publish(target.store, target.catalog, DS)
    assert "before the switch" in note and target.uploads("v2") == set()
    assert current_pointer(target.store, DS)["prefix"] == first.prefix  # type: ignore[index]
    assert target.catalog.current(DS) == first.entry and target.catalog.intents(DS) == []


class SwitchLandsRestoreFails(LocalObjectStore):
    """The pointer write lands but reports an error, and the undo that follows cannot reach the store."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.pointer_writes = 0

    def put_bytes(self, data: bytes, key: str) -> None:
        if key.endswith("/current.json"):
            self.pointer_writes += 1
            if self.pointer_writes == 2:
                raise ConnectionError("store unreachable during the undo")
            super().put_bytes(data, key)
            if self.pointer_writes == 1:
                raise ConnectionError("response to the pointer write was lost")
            return
        super().put_bytes(data, key)


def test_a_publish_whose_undo_failed_is_recorded_by_the_next_run(built: dict[str, BuildResult],
                                                                 tmp_path: Path) -> None:
    target = Target(tmp_path)
    target.publish(built["v1"])
    flaky = SwitchLandsRestoreFails(target.store_root)
    with pytest.raises(DatasetPublishError, match="candidate kept because the pointer may name it"):
        publish_dataset_version(built["v2"].path, built["v2"].manifest, flaky, target.catalog,
                                quality_summary=SUMMARY)
    assert current_pointer(target.store, DS)["dataset_version"] == "v2"  # type: ignore[index]
    assert target.catalog.current(DS).dataset_version == "v1"  # type: ignore[union-attr]  # they disagree
    again = target.publish(built["v2"])
    assert not again.created and again.previous_version == "v1"
    target.assert_agree(built, "v1")


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[]", b'{"dataset_id": "crash_ds"}',
                                    b'{"dataset_id": "other", "dataset_version": "v2"}'])
def test_an_unreadable_intent_stops_publishing_with_one_line(built: dict[str, BuildResult], tmp_path: Path,
                                                              damage: bytes) -> None:
    target = Target(tmp_path)
    target.publish(built["v1"])
    target.kill_publish(built["v2"], "after-switch")
    ((path, _),) = target.catalog.intents(DS)
    path.write_bytes(damage)
    with pytest.raises(DatasetPublishError) as error:
        target.publish(built["v2"])
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert target.catalog.current(DS).dataset_version == "v1"  # type: ignore[union-attr]  # nothing guessed


# -- promotion: the production alias and its history -------------------------------------------------------


def history_tag(root: Path, model: str) -> list[dict[str, Any]]:
    raw = client(root).get_registered_model(model).tags.get(HISTORY_TAG)
    return list(json.loads(raw)) if raw else []


@pytest.mark.parametrize("point", ["before-alias", "after-alias", "after-applied"])
def test_a_promotion_killed_in_each_window_loses_no_event(new_case: Any, data_root: Path, point: str) -> None:
    model = f"m_kill_{point.replace('-', '_')}"
    new_case(model)
    new_case(model)
    assert promote(model, 1, data_root=data_root).promoted
    run_killed("promote", str(data_root), model, "2", point)

    journal = ProductionJournal(journal_path(data_root))
    pending = journal.events(model, ("pending",))
    assert len(pending) == (0 if point == "after-applied" else 1)
    moved = point != "before-alias"
    assert production_version(data_root, model) == ("2" if moved else "1")

    notes = settle_pending(client(data_root), data_root, model)  # what the next promote/rollback runs first
    assert len(notes) == len(pending)
    history = production_history(data_root, model)
    expected = [("promote", "1", None), *([("promote", "2", "1")] if moved else [])]
    assert [(e["action"], e["version"], e["previous"]) for e in history] == expected
    assert journal.events(model, ("pending",)) == []
    assert [e.version for e in journal.events(model, ("abandoned",))] == ([] if moved else ["2"])
    if moved:
        tags = client(data_root).get_model_version(model, "2").tags
        assert tags["previous_production"] == "1" and tags["promoted_at"] == history[-1]["at"]
    if point != "after-applied":
        assert history_tag(data_root, model) == history  # the MLflow copy was rewritten from the journal

    # The next promotion sees the settled state and keeps the chain of previous versions intact.
    nxt = promote(model, 1, data_root=data_root)
    assert nxt.promoted and nxt.previous_version == ("2" if moved else "1")
    history = production_history(data_root, model)
    assert [e["previous"] for e in history][1:] == [e["version"] for e in history][:-1]
    assert history_tag(data_root, model) == history


def test_concurrent_promotions_in_two_processes_lose_no_history_entry(new_case: Any, data_root: Path,
                                                                       tmp_path: Path) -> None:
    model = "m_concurrent"
    for _ in range(3):
        new_case(model)
    go, rounds = tmp_path / "go", 4
    procs = [spawn("move", str(data_root), model, versions, str(rounds), str(worker), str(go))
             for worker, versions in ((1, "1,2"), (2, "3,2"))]
    while not all(Path(f"{go}.ready{w}").exists() for w in (1, 2)):
        assert all(p.poll() is None for p in procs), [p.communicate()[1].decode()[-2000:] for p in procs]
        time.sleep(0.01)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]

    history = production_history(data_root, model)
    assert len(history) == 2 * 2 * rounds  # every move of both workers, none lost
    assert sorted((e["worker"], e["round"], e["version"]) for e in history) == sorted(
        (w, i, v) for w, vs in ((1, "12"), (2, "32")) for i in range(rounds) for v in vs)
    # Serialised: each event's previous is the version the event before it set.
    assert [e["previous"] for e in history] == [None, *[e["version"] for e in history][:-1]]
    assert production_version(data_root, model) == history[-1]["version"]
    assert history_tag(data_root, model) == history


# -- rollback never runs bytes that failed their sha256 ------------------------------------------------------


class SessionSpy:
    """Records every path onnxruntime is asked to load (then loads it for real)."""

    def __init__(self, real: Any) -> None:
        self.real, self.paths = real, []  # type: ignore[var-annotated]

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        self.paths.append(str(path))
        return self.real(path, *args, **kwargs)


@pytest.fixture
def session_spy(monkeypatch: pytest.MonkeyPatch) -> SessionSpy:
    import onnxruntime

    spy = SessionSpy(onnxruntime.InferenceSession)
    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    return spy


@pytest.mark.parametrize("tamper", [b"definitely not an ONNX protobuf", b""], ids=["garbage", "empty"])
def test_rollback_refuses_a_tampered_onnx_without_loading_it(new_case: Any, data_root: Path, tamper: bytes,
                                                             session_spy: SessionSpy) -> None:
    model = f"m_rb_tamper_{len(tamper)}"
    new_case(model)
    new_case(model)
    assert promote(model, 1, data_root=data_root).promoted
    assert promote(model, 2, data_root=data_root).promoted
    artifact_path(data_root, model, "1", "model.onnx").write_bytes(tamper)
    before = production_history(data_root, model)
    session_spy.paths.clear()  # logging ran MLflow's input-example check on the verified bytes

    result = rollback(model, 1, data_root=data_root)
    assert not result.ok and result.replay is None
    assert {r.split(":")[0] for r in result.reasons} == {"artifact_sha256[model.onnx]", "replay_reference"}
    assert any("not run: model.onnx failed its sha256 check" in r for r in result.reasons)
    assert session_spy.paths == []  # onnxruntime never saw the bytes
    assert production_version(data_root, model) == "2" and production_history(data_root, model) == before

    # The healthy version still rolls back, and that replay does load its (verified) ONNX.
    assert rollback(model, 2, data_root=data_root).ok and len(session_spy.paths) == 1


def test_replay_reference_does_not_load_an_onnx_that_fails_its_hash(new_case: Any, tmp_path: Path,
                                                                    session_spy: SessionSpy) -> None:
    case = new_case("m_replay_tamper")
    session_spy.paths.clear()  # logging ran MLflow's input-example check on the verified bytes
    (case.model_dir / "model.onnx").write_bytes(b"\x08\x07garbage")
    report = replay_reference(case.model_dir)
    assert not report.ok and report.rows == 0
    assert any(p.startswith("onnx model.onnx: sha256") for p in report.problems)
    assert session_spy.paths == []
