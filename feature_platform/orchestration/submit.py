"""Submit the training payload to a running Dagster webserver through its GraphQL API."""

import re
import time
from typing import Any
from urllib.parse import urlsplit

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def submit_training(url: str, payload: dict[str, Any], *, wait: bool = True, timeout: float = 1800.0,
                    poll_seconds: float = 1.0) -> tuple[str, str]:
    """(run id, last status): launches `training_job` for the payload's dataset_version partition."""
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    from feature_platform.orchestration.story import launched_by
    from feature_platform.orchestration.training_assets import training_run_config

    version, run_config = training_run_config(payload)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be an http(s) URL, got {url!r}")
    client = DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https")
    try:
        run_id = client.submit_job_execution(
            "training_job", run_config=run_config,
            tags={"dagster/partition": version, "fp/trigger": "graphql",
                  **launched_by("api", "fp training submit")},
        )
        status = client.get_run_status(run_id).value
        deadline = time.monotonic() + timeout
        while wait and status not in TERMINAL and time.monotonic() < deadline:
            time.sleep(poll_seconds)
            status = client.get_run_status(run_id).value
    except DagsterGraphQLClientError as exc:
        raise RuntimeError(f"{url}: {_client_error(exc)}") from None
    return run_id, status


def _client_error(exc: Exception) -> str:
    """The GraphQL client's error on one line: the connection failure when there is one, not the query text."""
    cause = str(exc.__cause__ or "")
    refused = re.search(r"\[Errno -?\d+\][^\"')]*", cause)
    if refused:
        return f"cannot reach the Dagster webserver: {refused.group(0).strip()}"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
