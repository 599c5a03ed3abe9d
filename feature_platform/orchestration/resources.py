"""Resources: where data lives and which services back it. Laptop defaults, scale-out by config."""


import os
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import dagster as dg
from dagster._config.pythonic_config import PartialResource as PartialResource  # no public name in Dagster 1.13
from dagster_aws.s3 import S3Resource
from pydantic import Field, field_validator

from feature_platform.contracts.data_root import DATA_ROOT_ENV, DEFAULT_DATA_ROOT, DEFAULT_DATASET_NAME, DataRoot
from feature_platform.observability.links import DAGSTER_URL_ENV, http_base_url
from feature_platform.observability.notify import NotifyConfig
from feature_platform.storage.s3_store import S3StoreConfig

if TYPE_CHECKING:
    from feature_platform.observability.notify import Notifier
    from feature_platform.storage.catalog import Catalog
    from feature_platform.storage.object_store import ObjectStore


R = TypeVar("R", bound=dg.ConfigurableResource)

DEPLOYMENT_ENV = "FP_DEPLOYMENT"
DEPLOYMENTS = ("local", "s3")


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def deployment() -> Literal["local", "s3"]:
    """Which infrastructure this code location runs on: ``$FP_DEPLOYMENT`` (``local`` or ``s3``), else ``s3`` when
    the older ``FP_OBJECT_STORE=s3`` is set, else ``local``. Every deployment-specific choice reads this."""
    name = os.environ.get(DEPLOYMENT_ENV) or ("s3" if os.environ.get("FP_OBJECT_STORE") == "s3" else "local")
    if name == "s3":
        return "s3"
    if name != "local":
        raise ValueError(f"${DEPLOYMENT_ENV}: expected one of {', '.join(DEPLOYMENTS)}; got {name!r}")
    return "local"


class PlatformPaths(dg.ConfigurableResource):
    """The local data root (``$FP_DATA_ROOT``, default ``./data``) and the dataset family name; the layout under
    it is the plain ``DataRoot`` (``layout``), which the CLI and the domain use without Dagster."""

    data_root: str = Field(default_factory=lambda: _env(DATA_ROOT_ENV, DEFAULT_DATA_ROOT))
    dataset_name: str = DEFAULT_DATASET_NAME
    retention_days: int = Field(default_factory=lambda: int(_env("FP_RETENTION_DAYS", "90")), gt=0)

    @property
    def layout(self) -> DataRoot:
        return DataRoot(Path(self.data_root).resolve(), self.dataset_name)

    @property
    def root(self) -> Path:
        return self.layout.root

    def dataset_id(self, version: str) -> str:
        return self.layout.dataset_id(version)

    @property
    def sources(self) -> Path:
        return self.layout.sources

    @property
    def datasets(self) -> Path:
        return self.layout.datasets

    def dataset_dir(self, version: str) -> Path:
        return self.layout.dataset_dir(version)

    def reports(self, version: str) -> Path:
        return self.layout.reports(version)

    @property
    def inbox(self) -> Path:
        return self.layout.inbox

    @property
    def metrics_dir(self) -> Path:
        return self.layout.metrics_dir

    @property
    def logs_dir(self) -> Path:
        return self.layout.logs_dir


def at_launch(cls: type[R], given: R | PartialResource[R] | None = None) -> PartialResource[R]:
    """``cls`` as a code location holds it: configured for each run at launch (run config
    ``resources: {<key>: {config: {...}}}``), by default with the values ``given`` was built with, else each field's
    own default (the environment: ``FP_DATA_ROOT``, ``AWS_*``). Resources bound to this one object reach it by its
    key, so the run's launch config reaches them too; bound to a built copy, they would keep the copy's values."""
    if isinstance(given, PartialResource):
        if given.resource_cls is not cls:
            raise TypeError(f"at_launch: expected a {cls.__name__}; got one of {given.resource_cls.__name__}")
        return given
    return cls.configure_at_launch(**(given.model_dump(exclude_unset=True) if given is not None else {}))


@contextmanager
def run_resources(configured: Mapping[str, Any], keys: Collection[str],
                  run_config: Mapping[str, Any] | None) -> Iterator[Any]:
    """The resources ``keys`` of ``configured`` (``keys`` naming what they depend on too) built as a run launched
    with ``run_config`` had them: its ``resources`` section applied by Dagster (defaults, ``{env: ...}``)."""
    launched = (run_config or {}).get("resources") or {}
    with dg.build_resources({key: configured[key] for key in keys},
                            resource_config={key: launched[key] for key in keys if key in launched}) as built:
        yield built


def run_paths(paths: PlatformPaths | PartialResource[PlatformPaths],
              run_config: Mapping[str, Any] | None) -> PlatformPaths:
    """The data root a run used: ``paths`` (a code location's, built or at launch) under that run's launch-time
    ``paths`` config."""
    if isinstance(paths, PlatformPaths) and "paths" not in ((run_config or {}).get("resources") or {}):
        return paths
    with run_resources({"paths": paths}, ("paths",), run_config) as built:
        resolved: PlatformPaths = built.paths
        return resolved


class ObjectStoreResource(dg.ConfigurableResource):
    """Object storage for published datasets and archives: a local directory or S3 (dagster-aws)."""

    kind: Literal["local", "s3"] = Field(default_factory=lambda: deployment())
    local_root: str | None = None
    bucket: str | None = Field(default_factory=lambda: os.environ.get("FP_S3_BUCKET"))
    prefix: str = Field(default_factory=lambda: _env("FP_S3_PREFIX", ""))
    s3: dg.ResourceDependency[S3Resource]
    paths: dg.ResourceDependency[PlatformPaths]

    def open(self) -> "ObjectStore":
        from feature_platform.storage.object_store import LocalObjectStore, S3ObjectStore

        if self.kind == "s3":
            if not self.bucket:
                raise ValueError("object store kind 's3' needs a bucket (FP_S3_BUCKET)")
            # bound at launch (the code location's way), Dagster hands over the ``s3`` resource's client; bound to a
            # built S3Resource (outside a code location), the resource itself
            client = self.s3.get_client() if isinstance(self.s3, S3Resource) else self.s3
            return S3ObjectStore(client, self.bucket, self.prefix)
        return LocalObjectStore(Path(self.local_root) if self.local_root else self.paths.layout.object_store)


class CatalogResource(dg.ConfigurableResource):
    """The metadata catalog of published versions (SQLite)."""

    path: str | None = Field(default_factory=lambda: os.environ.get("FP_CATALOG_PATH"))
    paths: dg.ResourceDependency[PlatformPaths]

    def open(self) -> "Catalog":
        from feature_platform.storage.catalog import Catalog

        return Catalog(Path(self.path) if self.path else self.paths.layout.catalog_db)


def _notify_env(field: str) -> Any:
    """The environment's value for a NotifyConfig field (its variable named once, in ``NotifyConfig.ENV``), else
    NotifyConfig's own default."""
    value = os.environ.get(NotifyConfig.ENV[field], "").strip()
    return value or NotifyConfig.model_fields[field].get_default(call_default_factory=True)


class NotifierResource(dg.ConfigurableResource):
    """Alert and summary channels; unconfigured channels are absent, the outbox file always works.

    Defaults come from the same ``FP_*`` variables ``NotifyConfig.from_env`` reads; set here, they override them.
    """

    slack_webhook_url: str | None = Field(default_factory=lambda: _notify_env("slack_webhook_url"))
    smtp_host: str | None = Field(default_factory=lambda: _notify_env("smtp_host"))
    smtp_port: int = Field(default_factory=lambda: int(_notify_env("smtp_port")))
    smtp_sender: str = Field(default_factory=lambda: _notify_env("smtp_sender"))
    smtp_recipients: list[str] = Field(
        default_factory=lambda: NotifyConfig.model_validate({"smtp_recipients": _notify_env("smtp_recipients")})
        .smtp_recipients
    )
    pagerduty_routing_key: str | None = Field(default_factory=lambda: _notify_env("pagerduty_routing_key"))
    pagerduty_url: str = Field(default_factory=lambda: _notify_env("pagerduty_url"))
    outbox_dir: str | None = None
    dagster_url: str | None = Field(
        default_factory=lambda: os.environ.get(DAGSTER_URL_ENV) or None,
        description=f"the Dagster webserver's base URL (${DAGSTER_URL_ENV}), for run links in notifications",
    )
    retries: int = 2
    retry_base_seconds: float = 1.0
    paths: dg.ResourceDependency[PlatformPaths]

    @field_validator("dagster_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_base_url(value, f"dagster_url (${DAGSTER_URL_ENV})") if value else None

    def open(self, *, paging: bool, outbox: Path | None = None) -> "Notifier":
        """Channels for a summary (``paging=False``) or an alert (``paging=True`` adds PagerDuty). The outbox is
        ``outbox_dir`` when set, else ``outbox`` (a run's own data root, for a sensor), else the bound root's."""
        from feature_platform.observability.notify import notifier_from_config

        env = NotifyConfig.from_env()  # SMTP credentials and TLS settings come from FP_SMTP_* only
        config = NotifyConfig(
            slack_webhook_url=self.slack_webhook_url, smtp_host=self.smtp_host, smtp_port=self.smtp_port,
            smtp_sender=self.smtp_sender, smtp_recipients=self.smtp_recipients,
            smtp_username=env.smtp_username, smtp_password=env.smtp_password, smtp_starttls=env.smtp_starttls,
            smtp_ssl=env.smtp_ssl, pagerduty_routing_key=self.pagerduty_routing_key,
            pagerduty_url=self.pagerduty_url, retries=self.retries, retry_base_seconds=self.retry_base_seconds,
            outbox_dir=Path(self.outbox_dir) if self.outbox_dir else outbox or self.paths.layout.outbox,
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
