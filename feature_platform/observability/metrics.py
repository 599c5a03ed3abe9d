"""Prometheus run metrics through ``prometheus_client``: text exposition (format 0.0.4), a textfile-collector
file and Pushgateway pushes.

Gauges only: every value is "as of the last run", which is what both delivery paths can carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prometheus_client import push_to_gateway
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from feature_platform.observability._http import endpoint_label, request, require_http_url
from feature_platform.storage.files import write_atomic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The classic (pre-UTF-8) name grammar: what every Prometheus and node_exporter version accepts.
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MetricError(ValueError):
    """A name, label or value the exposition format (or the Pushgateway) would reject."""


class PushError(RuntimeError):
    """The Pushgateway could not be reached or answered with a non-2xx status."""


def _check_label_name(name: str) -> str:
    if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise MetricError(f"invalid label name {name!r}")
    return name


@dataclass
class _Family:
    help: str
    label_names: tuple[str, ...]  # sorted; fixed by the first sample, as prometheus_client's own gauges fix them
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)


class GaugeSet:
    """Named gauge families, a ``prometheus_client`` collector; ``const_labels`` go on every sample (a sample
    may not redefine them)."""

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
        merged = {**self.const_labels, **own}
        names = tuple(sorted(merged))
        family = self._families.setdefault(name, _Family(help or name.replace("_", " "), names))
        if family.label_names != names:
            raise MetricError(f"{name}: labels {list(names)} differ from the family's {list(family.label_names)}")
        family.samples[tuple(merged[k] for k in names)] = float(value) + 0.0  # -0.0 becomes 0.0: one zero

    def collect(self) -> Iterator[Metric]:
        """The ``prometheus_client`` Collector protocol: one gauge family per name, in the order first set."""
        for name, family in self._families.items():
            gauge = GaugeMetricFamily(name, family.help, labels=family.label_names)
            for values, value in family.samples.items():
                gauge.add_metric(values, value)
            yield gauge

    def render(self) -> str:
        return generate_latest(self).decode("utf-8")

    def write_textfile(self, path: Path | str) -> Path:
        return write_textfile_text(self.render(), path)

    def push(self, gateway_url: str, job: str, grouping: Mapping[str, str] | None = None, *,
             timeout: float = 10.0) -> None:
        """PUT replaces the whole group. Keep volatile values (dataset_version) out of ``grouping``, or every
        version leaves a group behind in the Pushgateway forever."""
        key = {"job": job, **_grouping_key(gateway_url, job, grouping)}
        for name, family in self._families.items():
            for values in family.samples:
                for k, v in zip(family.label_names, values, strict=True):
                    if k in key and key[k] != v:  # the Pushgateway would silently overwrite it
                        raise MetricError(f"{name}: label {k}={v!r} contradicts grouping key {k}={key[k]!r}")
        push_collector(self, gateway_url, job, grouping, timeout=timeout)


def write_textfile_text(text: str, path: Path | str) -> Path:
    """node_exporter may read at any moment: write a temp file beside the target (not ``*.prom``), then rename."""
    target = Path(path)
    if target.suffix != ".prom":
        raise ValueError(f"textfile collector only reads *.prom files, got {target.name!r}")
    # Not prometheus_client.write_to_textfile: it neither fsyncs nor sets the 0644 node_exporter (another user) needs.
    return write_atomic(target, text.encode("utf-8"))


def push_collector(collector: GaugeSet, gateway_url: str, job: str, grouping: Mapping[str, str] | None = None, *,
                   timeout: float = 10.0) -> None:
    """``prometheus_client.push_to_gateway`` (HTTP PUT to ``{url}/metrics/job/{job}/…``, '/' and empty values in
    the ``@base64`` form) over the platform's transport; anything but 2xx raises PushError."""
    push_to_gateway(gateway_url, job, collector, grouping_key=_grouping_key(gateway_url, job, grouping),
                    timeout=timeout, handler=_transport(gateway_url.rstrip("/") + "/metrics/"))


def _grouping_key(gateway_url: str, job: str, grouping: Mapping[str, str] | None) -> dict[str, str]:
    require_http_url(gateway_url, "Pushgateway URL")
    if not job:
        raise MetricError("Pushgateway job name is empty")
    key = dict(grouping or {})
    for name in key:
        if name == "job":
            raise MetricError("'job' is given separately, not in grouping")
        _check_label_name(name)
    return key


def _transport(prefix: str) -> Callable[..., Callable[[], None]]:
    """A push_to_gateway handler on ``_http.request``: no redirects, bounded reads, basic auth from the URL,
    errors without credentials."""

    def handler(url: str, method: str, timeout: float | None, headers: Sequence[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        if not url.startswith(prefix):
            raise PushError(f"pushgateway {endpoint_label(url)}: unexpected push URL")
        # quote_plus writes a space as '+', which the Pushgateway keeps literally (client_python issue 1064);
        # a real '+' arrives as %2B, so every '+' after the prefix is a space.
        target = prefix + url[len(prefix):].replace("+", "%20")
        content_type = dict(headers).get("Content-Type", CONTENT_TYPE)

        def send() -> None:
            where = endpoint_label(target)
            try:
                resp = request(method, target, data, content_type, timeout if timeout is not None else 10.0)
            except OSError as exc:
                raise PushError(f"pushgateway {where}: {type(exc).__name__}: {exc}") from exc
            if not 200 <= resp.status < 300:
                raise PushError(f"pushgateway {where}: HTTP {resp.status}: {' '.join(resp.body.split())[:200]}")

        return send

    return handler


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
