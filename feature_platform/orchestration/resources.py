"""Resources: where data lives and which services back it. Laptop defaults, scale-out by config."""


import os
from pathlib import Path
from typing import Literal

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, field_validator

from feature_platform.contracts.paths import require_safe_id
from feature_platform.observability.links import DAGSTER_URL_ENV, http_base_url
from feature_platform.storage.s3_store import S3StoreConfig


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


class PlatformPaths(dg.ConfigurableResource):
    """The local data root (``$FP_DATA_ROOT``, default ``./data``) and the dataset family name."""

    data_root: str = Field(default_factory=lambda: _env("FP_DATA_ROOT", "data"))
    dataset_name: str = "market_regime"
    retention_days: int = Field(default_factory=lambda: int(_env("FP_RETENTION_DAYS", "90")), gt=0)

    @property
    def root(self) -> Path:
        return Path(self.data_root).resolve()

    def dataset_id(self, version: str) -> str:
        return require_safe_id(f"{self.dataset_name}-{require_safe_id(version, 'dataset_version')}")

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    def dataset_dir(self, version: str) -> Path:
        return self.datasets / self.dataset_id(version)

    def reports(self, version: str) -> Path:
        return self.root / "reports" / require_safe_id(version, "dataset_version")

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"


class ObjectStoreResource(dg.ConfigurableResource):
    """Object storage for published datasets and archives: a local directory or S3 (dagster-aws)."""

    kind: Literal["local", "s3"] = Field(
        default_factory=lambda: "s3" if os.environ.get("FP_OBJECT_STORE") == "s3" else "local"
    )
    local_root: str | None = None
    bucket: str | None = Field(default_factory=lambda: os.environ.get("FP_S3_BUCKET"))
    prefix: str = Field(default_factory=lambda: _env("FP_S3_PREFIX", ""))
    s3: dg.ResourceDependency[S3Resource]

    def open(self, paths: PlatformPaths):  # type: ignore[no-untyped-def]
        from feature_platform.storage.object_store import LocalObjectStore, S3ObjectStore

        if self.kind == "s3":
            if not self.bucket:
                raise ValueError("object store kind 's3' needs a bucket (FP_S3_BUCKET)")
            return S3ObjectStore(self.s3.get_client(), self.bucket, self.prefix)
        return LocalObjectStore(Path(self.local_root) if self.local_root else paths.root / "store")


class CatalogResource(dg.ConfigurableResource):
    """The metadata catalog of published versions (SQLite)."""

    path: str | None = Field(default_factory=lambda: os.environ.get("FP_CATALOG_PATH"))

    def open(self, paths: PlatformPaths):  # type: ignore[no-untyped-def]
        from feature_platform.storage.catalog import Catalog

        return Catalog(Path(self.path) if self.path else paths.root / "catalog.sqlite")


class NotifierResource(dg.ConfigurableResource):
    """Alert and summary channels; unconfigured channels are absent, the outbox file always works."""

    slack_webhook_url: str | None = Field(default_factory=lambda: os.environ.get("FP_SLACK_WEBHOOK_URL"))
    smtp_host: str | None = Field(default_factory=lambda: os.environ.get("FP_SMTP_HOST"))
    smtp_port: int = Field(default_factory=lambda: int(_env("FP_SMTP_PORT", "25")))
    smtp_sender: str = Field(default_factory=lambda: _env("FP_SMTP_SENDER", "feature-platform@localhost"))
    smtp_recipients: list[str] = Field(
        default_factory=lambda: [r for r in _env("FP_SMTP_RECIPIENTS", "").split(",") if r.strip()]
    )
    pagerduty_routing_key: str | None = Field(default_factory=lambda: os.environ.get("FP_PAGERDUTY_ROUTING_KEY"))
    pagerduty_url: str = Field(
        default_factory=lambda: _env("FP_PAGERDUTY_URL", "https://events.pagerduty.com/v2/enqueue")
    )
    outbox_dir: str | None = None
    dagster_url: str | None = Field(
        default_factory=lambda: os.environ.get(DAGSTER_URL_ENV) or None,
        description=f"the Dagster webserver's base URL (${DAGSTER_URL_ENV}), for run links in notifications",
    )
    retries: int = 2

    @field_validator("dagster_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_base_url(value, f"dagster_url (${DAGSTER_URL_ENV})") if value else None
    retry_base_seconds: float = 1.0

    def open(self, paths: PlatformPaths, *, paging: bool):  # type: ignore[no-untyped-def]
        """Channels for a summary (``paging=False``) or an alert (``paging=True`` adds PagerDuty)."""
        from feature_platform.observability.notify import NotifyConfig, notifier_from_config

        env = NotifyConfig.from_env()  # SMTP credentials and TLS settings come from FP_SMTP_* only
        config = NotifyConfig(
            slack_webhook_url=self.slack_webhook_url, smtp_host=self.smtp_host, smtp_port=self.smtp_port,
            smtp_sender=self.smtp_sender, smtp_recipients=self.smtp_recipients,
            smtp_username=env.smtp_username, smtp_password=env.smtp_password, smtp_starttls=env.smtp_starttls,
            smtp_ssl=env.smtp_ssl, pagerduty_routing_key=self.pagerduty_routing_key,
            pagerduty_url=self.pagerduty_url, retries=self.retries, retry_base_seconds=self.retry_base_seconds,
            outbox_dir=Path(self.outbox_dir) if self.outbox_dir else paths.root / "outbox",
        )
        return notifier_from_config(config, paging=paging)


class MetricsResource(dg.ConfigurableResource):
    """Prometheus output: a textfile-collector file, and a Pushgateway when a URL is set."""

    textfile_dir: str | None = Field(default_factory=lambda: os.environ.get("FP_METRICS_TEXTFILE_DIR"))
    pushgateway_url: str | None = Field(default_factory=lambda: os.environ.get("FP_PUSHGATEWAY_URL"))
    job: str = "feature_platform_refresh"


class RayResource(dg.ConfigurableResource):
    """The Ray cluster heavy steps run on (``$RAY_ADDRESS``; unset: this machine). Training fits request the
    ``training_resource`` (the training queue). Workers share no disk with the run: with ``FP_OBJECT_STORE=s3``
    their inputs and outputs move through that bucket (``FP_S3_BUCKET``, ``AWS_ENDPOINT_URL_S3``, ...)."""

    address: str | None = Field(default_factory=lambda: os.environ.get("RAY_ADDRESS") or None)
    training_resource: str = "training"

    def store(self) -> S3StoreConfig | None:
        """The S3 bucket cluster workers exchange data through, or None without one."""
        return S3StoreConfig.from_env() if os.environ.get("FP_OBJECT_STORE") == "s3" else None


class RetrySettings(dg.ConfigurableResource):
    """Delays between attempts after a transient error: 2 then 10 minutes in production."""

    delays_seconds: list[float] = Field(default_factory=lambda: [120.0, 600.0])
