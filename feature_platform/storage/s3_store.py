"""Object store on an S3-compatible bucket: the scale-out path (docs/ARCHITECTURE.md §5).

Takes a ready boto3 S3 client so the Dagster layer can pass ``dagster_aws.s3.S3Resource(...)
.get_client()`` and tests can pass one pointed at a loopback server; ``S3StoreConfig`` builds one
from the standard AWS environment when there is no resource. Hashing streams the object body in
``HASH_CHUNK`` blocks, so memory stays bounded whatever the object size.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from feature_platform.storage.object_keys import (
    HASH_CHUNK,
    ObjectNotFoundError,
    ObjectStoreError,
    StorageUnavailableError,
    validate_key,
    validate_prefix,
)

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
MIB = 1024 * 1024
S3_MIN_PART = 5 * MIB
S3_MAX_DELETE_BATCH = 1000
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Server-side trouble that passes: S3's documented retryable error codes.
_TRANSIENT_CODES = frozenset({"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
                              "RequestTimeout", "RequestTimeTooSkewed", "Throttling", "ThrottlingException"})


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


class S3ObjectStore:
    """Keys live under ``s3://bucket/prefix/``; ``list`` and the other methods take keys relative to it."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        transfer_config: Any | None = None,
        delete_batch: int = S3_MAX_DELETE_BATCH,
        page_size: int = 1000,
    ) -> None:
        if not re.fullmatch(BUCKET_PATTERN, bucket):
            raise ValueError(f"bucket name {bucket!r} is not a valid S3 bucket name")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        if not 1 <= delete_batch <= S3_MAX_DELETE_BATCH:
            raise ValueError(f"delete_batch must be in 1..{S3_MAX_DELETE_BATCH}, got {delete_batch}")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.transfer_config = transfer_config if transfer_config is not None else transfer_config_for()
        self._delete_batch = delete_batch
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"S3ObjectStore(s3://{self.bucket}/{self.prefix})"

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        validate_prefix(prefix)
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    @contextlib.contextmanager
    def _errors(self, op: str, where: str) -> Iterator[None]:
        """botocore/s3transfer failures → one-line ``ObjectStoreError`` naming the object."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )

        try:
            yield
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFoundError(f"{where}: no such object") from exc
            message = exc.response.get("Error", {}).get("Message", "")
            kind = StorageUnavailableError if code in _TRANSIENT_CODES else ObjectStoreError
            raise kind(f"{where}: {op} failed: {code} {message}".rstrip()) from exc
        except (ConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise StorageUnavailableError(f"{where}: {op} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"{where}: {op} failed: {exc}") from exc
        except Exception as exc:
            # boto3 wraps upload/download ClientErrors in its own exception types.
            if type(exc).__module__.startswith(("boto3", "s3transfer")):
                raise ObjectStoreError(f"{where}: {op} failed: {exc}") from exc
            raise

    # -- writes ----------------------------------------------------------------------------

    def put_file(self, local: Path, key: str) -> None:
        """Uploads through s3transfer: multipart above ``transfer_config.multipart_threshold``."""
        full = self._full(key)
        with self._errors("upload", self.url(key)):
            self.client.upload_file(str(local), self.bucket, full, Config=self.transfer_config)

    def put_bytes(self, data: bytes, key: str) -> None:
        full = self._full(key)
        with self._errors("put", self.url(key)):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data)

    # -- reads -----------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)
        with self._errors("get", self.url(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=full)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def sha256(self, key: str) -> str:
        full = self._full(key)
        h = hashlib.sha256()
        with self._errors("hash", self.url(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=full)["Body"]
            try:
                while chunk := body.read(HASH_CHUNK):
                    h.update(chunk)
            finally:
                body.close()
        return h.hexdigest()

    def size(self, key: str) -> int:
        full = self._full(key)
        with self._errors("head", self.url(key)):
            return int(self.client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFoundError:
            return False
        return True

    def download_file(self, key: str, local: Path) -> None:
        full = self._full(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("download", self.url(key)):
            self.client.download_file(self.bucket, full, str(local), Config=self.transfer_config)

    def list(self, prefix: str = "") -> builtins.list[str]:
        return sorted(self._relative(k) for k in self._list_full(self._full_prefix(prefix)))

    def _list_full(self, full_prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full_prefix, PaginationConfig={"PageSize": self._page_size})
        with self._errors("list", self._prefix_url(full_prefix)):
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"])

    # -- deletes ---------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._errors("delete", self.url(key)):
            self.client.delete_object(Bucket=self.bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        """Batched ``DeleteObjects``; also aborts unfinished multipart uploads under the prefix."""
        full_prefix = self._full_prefix(prefix)
        keys = list(self._list_full(full_prefix))
        for start in range(0, len(keys), self._delete_batch):
            batch = keys[start:start + self._delete_batch]
            with self._errors("delete", self._prefix_url(full_prefix)):
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise ObjectStoreError(
                    f"s3://{self.bucket}/{first.get('Key')}: delete failed: {first.get('Code')} "
                    f"{first.get('Message', '')} ({len(errors)} object(s) not deleted)")
        self._abort_uploads(full_prefix)
        return len(keys)

    def _abort_uploads(self, full_prefix: str) -> None:
        with self._errors("abort multipart uploads", self._prefix_url(full_prefix)):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                                     Prefix=full_prefix):
                for upload in page.get("Uploads", []):
                    if str(upload["Key"]).startswith(full_prefix):
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def _prefix_url(self, full_prefix: str) -> str:
        return f"s3://{self.bucket}/{full_prefix}"


def transfer_config_for(
    multipart_threshold: int = 64 * MIB, multipart_chunksize: int = 16 * MIB, max_concurrency: int = 4
) -> Any:
    """An s3transfer ``TransferConfig``: large files go multipart, in parallel parts."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize,
                          max_concurrency=max_concurrency, use_threads=True)


class S3StoreConfig(BaseModel):
    """Where the S3 store lives; credentials always come from boto3's default chain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(pattern=BUCKET_PATTERN)
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    multipart_threshold: int = Field(default=64 * MIB, ge=S3_MIN_PART)
    multipart_chunksize: int = Field(default=16 * MIB, ge=S3_MIN_PART)
    max_concurrency: int = Field(default=4, ge=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3StoreConfig:
        """``FP_S3_BUCKET`` (required), ``FP_S3_PREFIX``, ``FP_S3_ADDRESSING_STYLE``,
        ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``."""
        env = os.environ if env is None else env
        bucket = env.get("FP_S3_BUCKET")
        if not bucket:
            raise ValueError("FP_S3_BUCKET is not set: no bucket for the S3 object store")
        return cls.model_validate({
            "bucket": bucket,
            "prefix": env.get("FP_S3_PREFIX", ""),
            "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "region_name": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            "addressing_style": env.get("FP_S3_ADDRESSING_STYLE") or None,
        })

    def make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s3_options = {"addressing_style": self.addressing_style} if self.addressing_style else None
        config = Config(s3=s3_options, retries={"mode": "standard", "max_attempts": 5})
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=self.region_name,
                                              config=config)

    def store(self, client: Any | None = None) -> S3ObjectStore:
        return S3ObjectStore(
            client if client is not None else self.make_client(), self.bucket, self.prefix,
            transfer_config=transfer_config_for(self.multipart_threshold, self.multipart_chunksize,
                                                self.max_concurrency))


def s3_store_from_env(env: Mapping[str, str] | None = None, client: Any | None = None) -> S3ObjectStore:
    """The S3 store described by the environment (see ``S3StoreConfig.from_env``)."""
    return S3StoreConfig.from_env(env).store(client)
