"""The shared multi-node Ray fixture really is three nodes, and the training resource lives on one."""

from __future__ import annotations

import ray


def test_cluster_has_three_nodes_and_one_training_slot(ray_cluster: str) -> None:
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
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
