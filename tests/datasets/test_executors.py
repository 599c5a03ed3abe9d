"""Executors: task order, identical results on every executor, failures name their task."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feature_platform.datasets import executors
from feature_platform.datasets.executors import (
    EXECUTORS,
    TaskError,
    cgroup_cpu_quota,
    default_executor,
    run_tasks,
    threads_per_task,
)
from feature_platform.simulators import simulate_range

TASKS = [(i * 7, i * 7 + 7) for i in range(6)]


def chunk_digest(bounds: tuple[int, int]) -> bytes:
    """A real chunk computation: the bytes a worker would hash, so executors must agree bit for bit."""
    batch = simulate_range("regime_switching", 5, bounds[0], bounds[1], 12, 3)
    return b"".join(a.tobytes() for a in batch.arrays().values()) + batch.metadata["regime"].tobytes()


def slow_first(i: int) -> int:
    """Task 0 finishes last, so results arriving out of order must still come back in task order."""
    if i == 0:
        import time

        time.sleep(0.3)
    return i * i


def fail_on_three(i: int) -> int:
    if i == 3:
        raise ValueError(f"bad chunk {i}")
    return i


@pytest.fixture(scope="module")
def inline_results() -> list[bytes]:
    return run_tasks(chunk_digest, TASKS, executor="inline")


def test_inline_equals_direct_calls(inline_results: list[bytes]) -> None:
    assert inline_results == [chunk_digest(t) for t in TASKS]
    whole = simulate_range("regime_switching", 5, 0, 42, 12, 3)
    assert np.array_equal(np.frombuffer(inline_results[2][: 7 * 9 * 8]), whole.theta[14:21].ravel())


def test_process_pool_matches_inline_and_keeps_order(inline_results: list[bytes]) -> None:
    seen: list[tuple[int, int]] = []
    assert run_tasks(chunk_digest, TASKS, executor="process", workers=2,
                     progress=lambda d, t: seen.append((d, t))) == inline_results
    assert seen[-1] == (len(TASKS), len(TASKS)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert run_tasks(slow_first, [0, 1, 2, 3], executor="process", workers=2) == [0, 1, 4, 9]


def test_ray_matches_inline_and_keeps_order(ray_local: str | None, inline_results: list[bytes]) -> None:
    assert ray_local
    assert run_tasks(chunk_digest, TASKS, executor="ray", workers=2) == inline_results
    assert run_tasks(slow_first, [0, 1, 2, 3], executor="ray") == [0, 1, 4, 9]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_failure_names_the_task(executor: str, request: pytest.FixtureRequest) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_local")
    with pytest.raises(TaskError, match=r"task 3 of 5 \(3\) failed: ValueError: bad chunk 3") as info:
        run_tasks(fail_on_three, range(5), executor=executor, workers=2)  # type: ignore[arg-type]
    assert info.value.index == 3 and info.value.task == 3


def test_empty_and_bad_arguments() -> None:
    assert run_tasks(slow_first, [], executor="process") == []
    with pytest.raises(ValueError, match="unknown executor 'threads'"):
        run_tasks(slow_first, [1], executor="threads")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_tasks(slow_first, [1], executor="inline", workers=0)


def test_default_executor_honours_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FP_EXECUTOR", raising=False)
    assert default_executor() == "process"
    monkeypatch.setenv("FP_EXECUTOR", "ray")
    assert default_executor() == "ray"
    monkeypatch.setenv("FP_EXECUTOR", "dask")
    with pytest.raises(ValueError, match="FP_EXECUTOR='dask'"):
        default_executor()


def test_ray_connects_to_configured_cluster_and_leaves_it_running(ray_local: str | None) -> None:
    """A separate driver given $RAY_ADDRESS runs on the existing cluster; disconnecting does not stop it."""
    assert ray_local
    code = ("from feature_platform.datasets.executors import run_tasks\n"
            "from tests.datasets.test_executors import chunk_digest, TASKS\n"
            "import hashlib\n"
            "print(hashlib.sha256(b''.join(run_tasks(chunk_digest, TASKS, executor='ray'))).hexdigest())\n")
    env = {**os.environ, "RAY_ADDRESS": ray_local}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = hashlib.sha256(b"".join(run_tasks(chunk_digest, TASKS, executor="inline"))).hexdigest()
    assert proc.stdout.strip().splitlines()[-1] == expected
    assert run_tasks(slow_first, [2, 3], executor="ray") == [4, 9]  # the shared instance is still up


@pytest.mark.parametrize("executor", EXECUTORS)
def test_on_result_sees_every_result_in_the_driver_and_its_value_is_kept(executor: str,
                                                                         request: pytest.FixtureRequest) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_local")
    seen: list[tuple[int, int, int]] = []

    def land(i: int, result: int) -> int:
        seen.append((i, result, os.getpid()))
        return -result

    results = run_tasks(slow_first, list(range(5)), executor=executor, workers=2,  # type: ignore[arg-type]
                        on_result=land)
    assert results == [-(i * i) for i in range(5)]
    assert sorted((i, r) for i, r, _ in seen) == [(i, i * i) for i in range(5)]
    assert {pid for _, _, pid in seen} == {os.getpid()}  # called where the caller runs, not in a worker


def test_threads_per_task_share_the_cores_among_the_tasks_running_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "default_workers", lambda: 4)  # a 4-core machine
    assert threads_per_task("inline", None, 3) == 4  # one task at a time has every core
    assert threads_per_task("process", 2, 5) == 2 and threads_per_task("process", None, 5) == 1
    assert threads_per_task("process", 3, 1) == 4  # one file: one task, however many workers
    assert threads_per_task("process", 3, 8) == 1  # 4 // 3
    assert threads_per_task("ray", 2, 2) == 1  # a Ray task was granted one CPU
    with executors.task_session("process", 2):
        assert threads_per_task("process", None, 9) == 2


@pytest.mark.parametrize(("files", "cpus"), [
    ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2: a pod with limits.cpu: 2
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
    ({"cpu.max": "5000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),  # no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "lots of cpus\n"}, None),  # not a limit we understand: none
    ({"cpu.max": "100000 0\n"}, None),
    ({}, None),  # no cgroup files (another platform)
])
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], cpus: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == cpus


def test_cgroup_quota_file_that_is_not_a_regular_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").mkdir()  # v2's name, but a directory: fall back to v1, which says 3
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 3


def test_default_workers_is_the_affinity_capped_by_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert executors.default_workers() <= cpus
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setattr(executors, "CGROUP_ROOT", tmp_path)  # this process as if in a pod limited to 1 CPU
    assert executors.default_workers() == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert executors.default_workers() == cpus
