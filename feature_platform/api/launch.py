"""Launch jobs of the code location as normal queued Dagster runs, as the webserver's launchpad does.

The run is created from the code location's snapshot (so the UI shows it like any other run) and handed
to the instance's run coordinator with ``submit_run``: it waits in the run queue (concurrency limits
apply) until the daemon launches it through the code location the daemon's workspace loads under the
same name.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

import dagster as dg

CODE_LOCATION = "feature_platform"  # the location name in workspace.yaml and [tool.dg] of pyproject.toml
DEFINITIONS_MODULE = "feature_platform.definitions"
REPOSITORY = "__repository__"  # the repository name of a dg.Definitions


class LaunchRefused(ValueError):
    """The run config or the instance refuses the run; the message is one line naming what was expected."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class JobLauncher:
    """Creates and submits runs of the code location's jobs on one instance; the code location loads once."""

    def __init__(self, instance: dg.DagsterInstance, *, module: str = DEFINITIONS_MODULE, attribute: str = "defs",
                 location_name: str = CODE_LOCATION) -> None:
        self.instance = instance
        self.module = module
        self.attribute = attribute
        self.location_name = location_name
        self._location: Any = None
        self._lock = threading.Lock()

    def _code_location(self) -> Any:
        with self._lock:
            if self._location is None:
                from dagster._core.remote_origin import InProcessCodeLocationOrigin
                from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

                origin = InProcessCodeLocationOrigin(
                    loadable_target_origin=LoadableTargetOrigin(
                        executable_path=sys.executable, module_name=self.module, attribute=self.attribute,
                        working_directory=os.getcwd()),
                    location_name=self.location_name)
                self._location = origin.create_location(self.instance)
            return self._location

    def queues_runs(self) -> bool:
        from dagster._core.run_coordinator import QueuedRunCoordinator

        return isinstance(self.instance.run_coordinator, QueuedRunCoordinator)

    def submit(self, job_name: str, *, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> dg.DagsterRun:
        """Create the run (status NOT_STARTED) and submit it to the run queue; returns the queued run."""
        from dagster._core.errors import DagsterInvalidConfigError
        from dagster._core.storage.dagster_run import DagsterRunStatus

        if not self.queues_runs():
            raise LaunchRefused("the Dagster instance does not queue runs; expected run_coordinator "
                                "QueuedRunCoordinator (the default) in its dagster.yaml", field="DAGSTER_HOME")
        location = self._code_location()
        repository = location.get_repository(REPOSITORY)
        remote_job = repository.get_full_job(job_name)
        try:
            plan = location.get_execution_plan(remote_job, dict(run_config), step_keys_to_execute=None,
                                               known_state=None, instance=self.instance)
        except DagsterInvalidConfigError as exc:
            messages = [" ".join(m.split()) for m in exc.error_messages] or [" ".join(str(exc).split())]
            raise LaunchRefused(f"run config of {job_name}: {messages[0]}", field="run_config") from None
        run = self.instance.create_run(
            job_name=job_name, run_id=None, run_config=dict(run_config), status=DagsterRunStatus.NOT_STARTED,
            tags={**(remote_job.run_tags or {}), **tags}, root_run_id=None, parent_run_id=None,
            step_keys_to_execute=None, execution_plan_snapshot=plan.execution_plan_snapshot,
            job_snapshot=remote_job.job_snapshot, parent_job_snapshot=remote_job.parent_job_snapshot,
            asset_selection=None, asset_check_selection=None,
            resolved_op_selection=remote_job.resolved_op_selection, op_selection=None,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
            asset_graph=repository.asset_graph)
        return self.instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]
