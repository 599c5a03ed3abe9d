"""A real multi-node Ray cluster on this machine for the tests: a head and two worker nodes, each its own raylet
process (``ray.cluster_utils.Cluster``). Worker ``w1`` offers the ``training`` resource (the training queue).

The nodes bind the host's own address, not 127.0.0.1: Ray rewrites a loopback address to the node IP when a
driver connects (``resolve_ip_for_localhost``), so a cluster pinned to 127.0.0.1 cannot be joined. On a machine
with only ``lo`` Ray's node IP is 127.0.0.1 anyway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def multi_node_cluster(cpus_per_node: int = 1) -> Iterator[str]:
    """Start head + 2 workers and yield the GCS address (``host:port``) for ``ray.init(address=...)``
    or ``RAY_ADDRESS``. The driver is not connected: callers connect (and ``ray.shutdown()``) themselves."""
    from ray.cluster_utils import Cluster

    head: dict[str, Any] = {"num_cpus": cpus_per_node, "include_dashboard": False,
                            "resources": {"head": 1}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.add_node(num_cpus=cpus_per_node, resources={"training": 1, "w1": 1})
        cluster.add_node(num_cpus=cpus_per_node, resources={"w2": 1})
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        cluster.shutdown()
