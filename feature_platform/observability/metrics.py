"""Prometheus text exposition (format 0.0.4) for run metrics: a textfile-collector file and Pushgateway pushes.

Gauges only: every value is "as of the last run", which is what both delivery paths can carry.
"""

from __future__ import annotations

import base64
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from feature_platform.observability._http import endpoint_label, request, require_http_url
from feature_platform.storage.files import write_atomic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
Labels = tuple[tuple[str, str], ...]


class MetricError(ValueError):
    """A name, label or value the exposition format (or the Pushgateway) would reject."""


class PushError(RuntimeError):
    """The Pushgateway could not be reached or answered with a non-2xx status."""


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _check_label_name(name: str) -> str:
    if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise MetricError(f"invalid label name {name!r}")
    return name


@dataclass
class _Family:
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)


class GaugeSet:
    """Named gauge families; ``const_labels`` go on every sample (a sample may not redefine them)."""

    def __init__(self, const_labels: Mapping[str, str] | None = None) -> None:
        self.const_labels = {_check_label_name(k): str(v) for k, v in (const_labels or {}).items()}
        self._families: dict[str, _Family] = {}

    def set(self, name: str, value: float, labels: Mapping[str, str] | None = None, help: str | None = None) -> None:
        """Set (or overwrite) one sample; the first help text given for a family is kept."""
        if not METRIC_NAME.fullmatch(name):
            raise MetricError(f"invalid metric name {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name}: value must be int or float, got {type(value).__name__}")
        own = {_check_label_name(k): str(v) for k, v in (labels or {}).items()}
        clash = own.keys() & self.const_labels.keys()
        if clash:
            raise MetricError(f"{name}: labels {sorted(clash)} are set for the whole run")
        family = self._families.setdefault(name, _Family(help or name.replace("_", " ")))
        family.samples[tuple(sorted({**self.const_labels, **own}.items()))] = float(value)

    def render(self) -> str:
        lines: list[str] = []
        for name, family in self._families.items():
            lines += [f"# HELP {name} {escape_help(family.help)}", f"# TYPE {name} gauge"]
            for labels, value in family.samples.items():
                body = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
                lines.append(f"{name}{{{body}}} {format_value(value)}" if body else f"{name} {format_value(value)}")
        return "".join(line + "\n" for line in lines)

    def write_textfile(self, path: Path | str) -> Path:
        return write_textfile_text(self.render(), path)

    def push(self, gateway_url: str, job: str, grouping: Mapping[str, str] | None = None, *,
             timeout: float = 10.0) -> None:
        """PUT replaces the whole group. Keep volatile values (dataset_version) out of ``grouping``, or every
        version leaves a group behind in the Pushgateway forever."""
        key = {"job": job, **(grouping or {})}
        for name, family in self._families.items():
            for labels in family.samples:
                for k, v in labels:
                    if k in key and key[k] != v:  # the Pushgateway would silently overwrite it
                        raise MetricError(f"{name}: label {k}={v!r} contradicts grouping key {k}={key[k]!r}")
        push_text(self.render(), gateway_url, job, grouping, timeout=timeout)


def write_textfile_text(text: str, path: Path | str) -> Path:
    """node_exporter may read at any moment: write a temp file beside the target (not ``*.prom``), then rename."""
    target = Path(path)
    if target.suffix != ".prom":
        raise ValueError(f"textfile collector only reads *.prom files, got {target.name!r}")
    return write_atomic(target, text.encode("utf-8"))  # 0644: node_exporter runs as another user


def push_text(text: str, gateway_url: str, job: str, grouping: Mapping[str, str] | None = None, *,
              timeout: float = 10.0) -> None:
    """HTTP PUT of an exposition to ``{url}/metrics/job/{job}/…``; anything but 2xx raises PushError."""
    url = pushgateway_url(gateway_url, job, grouping)
    where = endpoint_label(url)
    try:
        resp = request("PUT", url, text.encode("utf-8"), CONTENT_TYPE, timeout)
    except OSError as exc:
        raise PushError(f"pushgateway {where}: {type(exc).__name__}: {exc}") from exc
    if not 200 <= resp.status < 300:
        raise PushError(f"pushgateway {where}: HTTP {resp.status}: {' '.join(resp.body.split())[:200]}")


def _path_pair(name: str, value: str) -> str:
    if value == "":
        return f"{name}@base64/="
    if "/" in value:
        return f"{name}@base64/{base64.urlsafe_b64encode(value.encode('utf-8')).decode('ascii')}"
    return f"{name}/{urllib.parse.quote(value, safe='')}"


def pushgateway_url(gateway_url: str, job: str, grouping: Mapping[str, str] | None = None) -> str:
    """``{url}/metrics/job/{job}/{label}/{value}…``; values with '/' (or empty) use the ``@base64`` form."""
    require_http_url(gateway_url, "Pushgateway URL")
    if not job:
        raise MetricError("Pushgateway job name is empty")
    pairs = [_path_pair("job", job)]
    for name, value in (grouping or {}).items():
        if name == "job":
            raise MetricError("'job' is given separately, not in grouping")
        pairs.append(_path_pair(_check_label_name(name), value))
    return gateway_url.rstrip("/") + "/metrics/" + "/".join(pairs)


Status = Literal["success", "failure"]


class RunMetrics(GaugeSet):
    """One DAG run: duration, one-hot status, per-asset durations and row counts, plus any other gauges."""

    def __init__(self, job: str, dataset_version: str | None = None) -> None:
        labels = {"job": job} | ({"dataset_version": dataset_version} if dataset_version else {})
        super().__init__(labels)
        self.job = job

    def set_run(self, duration_seconds: float, status: Status) -> None:
        if status not in ("success", "failure"):
            raise ValueError(f"status must be 'success' or 'failure', got {status!r}")
        self.set("dag_duration_seconds", duration_seconds, help="Wall-clock duration of the DAG run in seconds.")
        for option in ("success", "failure"):
            self.set("dag_status", 1 if option == status else 0, {"status": option},
                     help="1 for the status of the last DAG run, 0 for the other.")

    def set_asset(self, asset: str, *, duration_seconds: float | None = None, rows: int | None = None) -> None:
        if duration_seconds is not None:
            self.set("asset_duration_seconds", duration_seconds, {"asset": asset},
                     help="Wall-clock duration of the asset's materialization in seconds.")
        if rows is not None:
            self.set("asset_rows", rows, {"asset": asset}, help="Rows in the materialized asset.")
