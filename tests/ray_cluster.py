"""A real multi-node Ray cluster on this machine for the tests: a head and two worker nodes, each its own raylet
process (``ray.cluster_utils.Cluster``) with its own temp directory. Worker ``w1`` offers the ``training``
resource (the training queue).

Per node, under the caller's ``root``: ``<root>/<node>/`` is the node's Ray temp dir (its session dir, sockets,
logs, spill files; Ray honours ``temp_dir`` for a non-head node), and ``<root>/<node>/tmp`` is the ``TMPDIR`` of
the node's raylet and so of every Ray worker it starts: ``tempfile`` scratch written by a task lands on its node's
own directory, never on another node's. ``RAY_TMPDIR`` points at ``root`` while the cluster starts and stops, so
the cluster address file Ray writes for ``ray.init()`` (in ``<root>/ray``) stays out of the machine's shared
``/tmp/ray``.

The nodes get ``PYTHONPATH`` led by the checkout the driver imported ``feature_platform`` from: a Ray worker
otherwise imports the package installed in the environment (the editable install of another checkout), whose
code, and so whose bytes, may differ from the code under test.

The nodes bind the host's own address, not 127.0.0.1: Ray rewrites a loopback address to the node IP when a
driver connects (``resolve_ip_for_localhost``), so a cluster pinned to 127.0.0.1 cannot be joined. On a machine
with only ``lo`` Ray's node IP is 127.0.0.1 anyway."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feature_platform

NODES = ("head", "w1", "w2")
# A unix socket path holds at most 107 bytes; Ray's deepest is <temp>/<session_...>/sockets/plasma_store.
SOCKET_PATH_MAX = 107
SESSION_AND_SOCKET = len("/session_2026-01-01_00-00-00_000000_9999999/sockets/plasma_store")


@dataclass(frozen=True)
class RayTestCluster:
    address: str  # GCS ``host:port`` for ``ray.init(address=...)`` or ``RAY_ADDRESS``
    root: Path
    temp_dirs: dict[str, Path]  # node name -> its Ray temp dir
    scratch_dirs: dict[str, Path]  # node name -> the TMPDIR of its raylet and workers
    node_ids: dict[str, str]  # node name -> Ray node id (hex)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _checkout() -> str:
    """The directory ``feature_platform`` was imported from (its parent), for the nodes' ``PYTHONPATH``."""
    return str(Path(feature_platform.__file__).resolve().parent.parent)


@contextmanager
def multi_node_cluster(root: Path, cpus_per_node: int = 1) -> Iterator[RayTestCluster]:
    """Start head + 2 workers with their directories under ``root`` (created here, removed on exit with every
    node's processes stopped, also when starting or the body fails). The driver is not connected: callers connect
    (and ``ray.shutdown()``) themselves."""
    from ray.cluster_utils import Cluster

    root = root.resolve()
    if len(str(root)) + len("/head") + SESSION_AND_SOCKET > SOCKET_PATH_MAX:
        raise ValueError(f"{root}: too long for Ray's unix sockets under it (at most "
                         f"{SOCKET_PATH_MAX - SESSION_AND_SOCKET - len('/head')} characters)")
    temp_dirs = {name: root / name for name in NODES}
    scratch_dirs = {name: root / name / "tmp" for name in NODES}
    for d in (*scratch_dirs.values(), root / "ray"):  # root/ray: Ray's default temp dir under RAY_TMPDIR
        d.mkdir(parents=True)
    tempfile.gettempdir()  # cached now, so this process's own temp dir never becomes a node's TMPDIR
    python_path = os.pathsep.join(p for p in (_checkout(), os.environ.get("PYTHONPATH", "")) if p)
    resources: dict[str, dict[str, float]] = {"head": {"head": 1}, "w1": {"training": 1, "w1": 1},
                                              "w2": {"w2": 1}}
    cluster: Any = None
    started: list[Any] = []
    try:
        for name in NODES:
            args: dict[str, Any] = {"num_cpus": cpus_per_node, "resources": resources[name],
                                    "temp_dir": str(temp_dirs[name])}
            with _environ(RAY_TMPDIR=str(root), TMPDIR=str(scratch_dirs[name]), PYTHONPATH=python_path):
                if cluster is None:
                    cluster = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False})
                    started.append(cluster.head_node)
                else:
                    started.append(cluster.add_node(**args))
        cluster.wait_for_nodes()
        yield RayTestCluster(address=str(cluster.address), root=root, temp_dirs=temp_dirs,
                             scratch_dirs=scratch_dirs,
                             node_ids={name: node.node_id for name, node in zip(NODES, started, strict=True)})
    finally:
        _stop(cluster, started, root)


def _stop(cluster: Any, nodes: list[Any], root: Path) -> None:
    """Every started node's processes stopped (gracefully through the cluster, then forcibly per node whatever
    is left), then ``root`` removed; raises if a process of the cluster is still running or ``root`` is left."""
    with _environ(RAY_TMPDIR=str(root)):
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.shutdown()
        for node in nodes:
            with contextlib.suppress(Exception):
                node.kill_all_processes(check_alive=False, allow_graceful=False, wait=True)
    shutil.rmtree(root, ignore_errors=True)
    left = processes_under(root)
    if left or root.exists():
        raise RuntimeError(f"{root}: Ray test cluster not cleaned up: processes {left}, directory left: "
                           f"{root.exists()}")


def processes_under(root: Path) -> list[int]:
    """Pids of the running processes whose command line names a path under ``root`` (every Ray process of a
    node gets its session dir, sockets or logs there on its command line)."""
    needle = str(root).encode() + b"/"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:  # exited meanwhile
                continue
            if needle in cmdline:
                pids.append(int(entry.name))
    return sorted(pids)
