"""The shared multi-node Ray fixture really is three nodes, each with its own temp, session and scratch
directories, and the training resource lives on one."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import feature_platform
from tests.ray_cluster import RayTestCluster, multi_node_cluster, processes_under


def test_cluster_has_three_nodes_and_one_training_slot(ray_cluster: str) -> None:
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]  # type: ignore[no-untyped-call]
        assert len(nodes) == 3
        assert len({n["NodeID"] for n in nodes}) == 3  # three raylets, not one node counted thrice
        assert sum(n["Resources"].get("training", 0) for n in nodes) == 1

        @ray.remote(resources={"training": 1})
        def where() -> str:
            return str(ray.get_runtime_context().get_node_id())

        training_node = next(n["NodeID"] for n in nodes if n["Resources"].get("training"))
        assert ray.get(where.remote()) == training_node
    finally:
        ray.shutdown()


@ray.remote
def _where_am_i(marker: str) -> dict[str, str]:
    """Where this task ran: its node, that node's Ray temp dir, its TMPDIR, a scratch file it wrote there and the
    feature_platform it imports."""
    import os
    import tempfile

    import feature_platform

    fd, scratch = tempfile.mkstemp(prefix="fp-node-")
    with os.fdopen(fd, "w") as f:
        f.write(marker)
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "temp_dir": context.get_temp_dir(),
            "session": context.get_session_name(), "tmpdir": tempfile.gettempdir(), "scratch": scratch,
            "package": feature_platform.__file__}


def test_each_node_has_its_own_temp_session_and_scratch_dirs(ray_test_cluster: RayTestCluster,
                                                             ray_cluster: str,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    cluster = ray_test_cluster
    assert cluster.root.is_relative_to(tmp_path_factory.getbasetemp().resolve())  # the test session's tmp area
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False)
    try:
        seen = {name: ray.get(_where_am_i.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id, soft=False)).remote(name)) for name, node_id in cluster.node_ids.items()}
        driver_temp = ray.get_runtime_context().get_temp_dir()
    finally:
        ray.shutdown()
    try:
        _check_nodes(cluster, seen, driver_temp)
    finally:  # the nodes' scratch empty again, for the tests that check a build leaves it clean
        for s in seen.values():
            Path(s["scratch"]).unlink(missing_ok=True)


def _check_nodes(cluster: RayTestCluster, seen: dict[str, dict[str, str]], driver_temp: str) -> None:
    assert {name: s["node_id"] for name, s in seen.items()} == cluster.node_ids  # pinned where asked
    assert len(set(cluster.node_ids.values())) == 3
    assert {name: Path(s["temp_dir"]) for name, s in seen.items()} == cluster.temp_dirs
    assert len({s["temp_dir"] for s in seen.values()}) == 3
    assert driver_temp == str(cluster.temp_dirs["head"])  # the driver joined the head node
    for name, s in seen.items():
        others = [d for other, d in cluster.temp_dirs.items() if other != name]
        session_dir = cluster.temp_dirs[name] / s["session"]
        assert (session_dir / "logs" / "raylet.out").is_file()  # this node's own raylet writes here
        assert Path(s["tmpdir"]) == cluster.scratch_dirs[name]
        scratch = Path(s["scratch"])  # a file the task wrote to "its disk" ...
        assert scratch.parent == cluster.scratch_dirs[name] and scratch.read_text() == name
        assert not any(scratch.is_relative_to(d) for d in others)  # ... is on no other node's
        assert s["package"] == feature_platform.__file__  # workers run the code under test
    assert len({s["session"] for s in seen.values()}) == 1  # one cluster session, three session dirs
    # Ray's "current cluster" file went to the cluster's own directory, not the machine's shared /tmp/ray.
    assert (cluster.root / "ray" / "ray_current_cluster").read_text().strip() == cluster.address
    shared = Path("/tmp/ray/ray_current_cluster")
    assert not shared.exists() or shared.read_text().strip() != cluster.address


def test_a_root_too_long_for_rays_sockets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = tmp_path / ("x" * 80)
    with pytest.raises(ValueError, match="too long for Ray's unix sockets"), multi_node_cluster(root):
        pass
    assert not root.exists() and processes_under(root) == []


def test_a_worker_that_fails_to_join_stops_the_started_head_and_removes_every_dir(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head really starts; the first worker node's start fails: the head's processes are stopped and the
    directories removed, and the start's own error is the one raised."""
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("f") / "c"  # short: Ray's socket paths live under it
    running_at_failure: list[int] = []
    real_add_node = Cluster.add_node

    def add_node(self: Cluster, wait: bool = True, **node_args: object) -> object:
        if self.head_node is None:
            return real_add_node(self, wait, **node_args)
        running_at_failure.extend(processes_under(root))
        raise OSError("worker node could not start")

    monkeypatch.setattr(Cluster, "add_node", add_node)
    if ray.is_initialized():  # stopping a Cluster resets this process's Ray client state: not while connected
        ray.shutdown()
    with pytest.raises(OSError, match="worker node could not start"), multi_node_cluster(root):
        pass
    assert running_at_failure  # the head's gcs_server, raylet, ... were up
    assert processes_under(root) == [] and not root.exists()
