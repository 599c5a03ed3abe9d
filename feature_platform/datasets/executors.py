"""Run independent, picklable tasks inline, in local processes or on Ray, with results in task order.

Callers rely on the result being a pure function of the task, so the executor and worker count can
never change the bytes produced. Local processes start with ``forkserver`` (never ``fork``: the
caller may be a threaded Dagster run, and forking a threaded process can deadlock); ``spawn`` is the
fallback where forkserver does not exist. Ray is imported only when asked for.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

T = TypeVar("T")
R = TypeVar("R")
Executor = Literal["inline", "process", "ray"]
EXECUTORS: tuple[str, ...] = get_args(Executor)
EXECUTOR_ENV = "FP_EXECUTOR"
CGROUP_ROOT = Path("/sys/fs/cgroup")  # inside a container, its own cgroup (the cgroup namespace's root)
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
# Imported once by the forkserver, so each worker forks with them loaded (pages shared) instead of importing
# them again in fresh memory: measured ~0.3 s less per pool, and much more where fresh memory is slow to touch.
PRELOAD = ("feature_platform.datasets.build",)
# The session's pool and its size (how many tasks it runs at once).
_SESSION_POOL: ContextVar[tuple[ProcessPoolExecutor, int] | None] = ContextVar("fp_task_session_pool", default=None)


class TaskError(RuntimeError):
    """A task failed; names the task so a chunk failure points at the chunk. The cause is chained."""

    def __init__(self, index: int, total: int, task: object, exc: BaseException) -> None:
        text = repr(task)
        text = text if len(text) <= 200 else text[:197] + "..."
        super().__init__(f"task {index} of {total} ({text}) failed: {type(exc).__name__}: {exc}")
        self.index = index
        self.task = task


def default_executor() -> Executor:
    """``$FP_EXECUTOR`` if set (inline|process|ray), else ``process``."""
    value = os.environ.get(EXECUTOR_ENV, "").strip() or "process"
    if value not in EXECUTORS:
        raise ValueError(f"environment variable {EXECUTOR_ENV}={value!r}: expected one of {', '.join(EXECUTORS)}")
    return cast(Executor, value)


def choose_executor(explicit: str | None, ray_address: str | None) -> tuple[Executor, str | None]:
    """The executor and Ray address a build uses: an explicit choice, else Ray when an address is given
    (argument or ``$RAY_ADDRESS``), else ``default_executor()``. CLI and Dagster both decide here."""
    address = ray_address or os.environ.get("RAY_ADDRESS") or None
    if explicit is not None and explicit not in EXECUTORS:
        raise ValueError(f"executor {explicit!r}: expected one of {', '.join(EXECUTORS)}")
    return cast(Executor, explicit) if explicit else ("ray" if address else default_executor()), address


def default_workers() -> int:
    """The CPUs this process may use: its CPU affinity, capped by its container's CPU quota (a Kubernetes pod's
    ``limits.cpu``), so a pod limited to 2 CPUs on a 64-core node starts 2 workers, not 64."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(CGROUP_ROOT)
    return max(1, min(cpus, quota) if quota is not None else cpus)


def cgroup_cpu_quota(root: Path) -> int | None:
    """CPUs allowed by the CPU bandwidth limit under cgroup mount ``root`` (v2 ``cpu.max``, else v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``), rounded up; None when there is no limit or it cannot
    be read. Kept here rather than joblib's ``cpu_count``, whose import costs every CLI command ~0.2 s."""
    v2 = _small_text(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
    else:
        quota = _small_text(root / "cpu" / "cpu.cfs_quota_us") or ""
        period = _small_text(root / "cpu" / "cpu.cfs_period_us") or ""
    if not (quota.isdigit() and period.isdigit()) or int(period) == 0:
        return None  # "max" (v2) or "-1" (v1): no limit; anything else: not a limit we understand
    return max(1, -(-int(quota) // int(period)))


def _small_text(path: Path) -> str | None:
    """A kernel interface file's text (its first 4 KiB), or None if there is no such regular file."""
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return f.read(4096).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], *, executor: Executor = "process", workers: int | None = None,
              ray_address: str | None = None, progress: Callable[[int, int], None] | None = None,
              on_result: Callable[[int, R], R] | None = None,
              resources: Mapping[str, float] | None = None) -> list[R]:
    """``[fn(t) for t in tasks]`` on the chosen executor; the first failure raises TaskError.

    ``on_result(i, result)`` runs in the caller's process as each result arrives (in completion order)
    and what it returns is kept instead: a caller can write a large result away and keep a small one,
    so memory is bounded by the results in flight, not by all of them.

    ``workers`` defaults to the usable CPUs. For ``ray``: an already-initialised Ray in this process is
    reused as is; otherwise connect to ``ray_address`` or ``$RAY_ADDRESS``, else start a local instance
    with ``num_cpus=workers``; only a connection or instance started here is shut down. ``resources`` are
    the Ray custom resources each task requests (a queue such as ``{"training": 1}``); only Ray schedules by them.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    tasks = list(tasks)
    if not tasks:
        return []
    keep = on_result or _keep
    if executor == "inline":
        return _run_inline(fn, tasks, progress, keep)
    n_workers = workers or default_workers()
    if executor == "process":
        return _run_processes(fn, tasks, min(n_workers, len(tasks)), progress, keep)
    return _run_ray(fn, tasks, n_workers, ray_address, progress, keep, dict(resources or {}))


def _keep(index: int, result: R) -> R:
    return result


def concurrent_tasks(executor: Executor, workers: int | None, tasks: int) -> int:
    """How many of ``tasks`` tasks ``run_tasks`` runs at once on a local executor (inline: one; process: the
    session's pool or ``workers``), so tasks that must all run together (an exchange) know whether they can."""
    if executor == "inline":
        return 1
    if executor != "process":
        raise ValueError(f"concurrent_tasks is for local executors, not {executor!r}")
    shared = _SESSION_POOL.get()
    return min(shared[1] if shared is not None else workers or default_workers(), tasks)


def threads_per_task(executor: Executor, workers: int | None, tasks: int) -> int:
    """Threads each of ``tasks`` tasks may use inside itself: the usable CPUs (``default_workers``) shared by the
    tasks running at once; one on Ray, whose task was granted one CPU of a node the caller cannot see."""
    if executor == "ray":
        return 1
    return max(1, default_workers() // concurrent_tasks(executor, workers, tasks))


def _run_inline(fn: Callable[[T], R], tasks: list[T], progress: Callable[[int, int], None] | None,
                keep: Callable[[int, R], R]) -> list[R]:
    results: list[R] = []
    for i, task in enumerate(tasks):
        try:
            result = fn(task)
        except Exception as exc:
            raise TaskError(i, len(tasks), task, exc) from exc
        results.append(keep(i, result))
        if progress is not None:
            progress(i + 1, len(tasks))
    return results


def _run_processes(fn: Callable[[T], R], tasks: list[T], workers: int,
                   progress: Callable[[int, int], None] | None, keep: Callable[[int, R], R]) -> list[R]:
    shared = _SESSION_POOL.get()
    if shared is not None:
        return _drive(shared[0], fn, tasks, progress, keep)
    with _process_pool(workers) as pool:
        return _drive(pool, fn, tasks, progress, keep)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":  # before this process's forkserver starts; a no-op once it runs
        context.set_forkserver_preload(list(PRELOAD))
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _drive(pool: ProcessPoolExecutor, fn: Callable[[T], R], tasks: list[T],
           progress: Callable[[int, int], None] | None, keep: Callable[[int, R], R]) -> list[R]:
    futures = [pool.submit(fn, task) for task in tasks]
    index = {f: i for i, f in enumerate(futures)}
    pending: set[Future[R]] = set(futures)
    results: list[Any] = [None] * len(futures)
    done_count = 0
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            failed = sorted(index[f] for f in done if f.exception() is not None)
            if failed:
                i = failed[0]
                exc = futures[i].exception()
                assert exc is not None
                raise TaskError(i, len(tasks), tasks[i], exc) from exc
            for f in done:
                results[index[f]] = keep(index[f], f.result())
            done_count += len(done)
            if progress is not None:
                progress(done_count, len(tasks))
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    return cast(list[R], results)


@contextlib.contextmanager
def task_session(executor: Executor, workers: int | None = None, ray_address: str | None = None) -> Iterator[None]:
    """Several ``run_tasks`` calls sharing one set of workers (a map, a reduce, another map): ``process`` keeps
    one pool of ``workers`` processes for the session instead of starting one per call; ``ray`` connects (or
    starts a local instance) once, unless Ray is already initialised here. ``inline`` needs nothing."""
    if executor == "process":
        n = workers or default_workers()
        with _process_pool(n) as pool:
            token = _SESSION_POOL.set((pool, n))
            try:
                yield
            finally:
                _SESSION_POOL.reset(token)
        return
    if executor == "ray":
        import ray

        if not ray.is_initialized():
            address = ray_address or os.environ.get("RAY_ADDRESS") or None
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(address="local", num_cpus=workers or default_workers(), include_dashboard=False,
                         log_to_driver=False)
            try:
                yield
            finally:
                ray.shutdown()
            return
    yield


def _run_ray(fn: Callable[[T], R], tasks: list[T], workers: int, address: str | None,
             progress: Callable[[int, int], None] | None, keep: Callable[[int, R], R],
             resources: dict[str, float]) -> list[R]:
    import ray

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote: Any = ray.remote(max_retries=0, resources=resources)(_call) if resources \
            else ray.remote(max_retries=0)(_call)
        pending = [remote.remote(fn, task) for task in tasks]
        # Only `pending` and `index` hold refs: a fetched result leaves Ray's object store once handled.
        index = {ref: i for i, ref in enumerate(pending)}
        results: list[Any] = [None] * len(pending)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    for other in pending:  # not force: a shared instance keeps its workers
                        ray.cancel(other)
                    cause = getattr(exc, "cause", None)
                    raise TaskError(i, len(tasks), tasks[i], cause if isinstance(cause, BaseException) else exc) \
                        from exc
                results[i] = keep(i, result)
            if progress is not None:
                progress(len(tasks) - len(pending), len(tasks))
        return cast(list[R], results)
    finally:
        if started:
            ray.shutdown()


def _call(fn: Callable[[T], R], task: T) -> R:
    return fn(task)
