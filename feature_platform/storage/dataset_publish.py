# Over 400 lines: publish, its recovery at every kill point and the remote verify are one protocol.
"""Atomic per-version publish of a verified dataset to an object store, recorded in the catalog.

Layout under the store::

    datasets/<dataset_id>/current.json                             the pointer readers follow
    datasets/<dataset_id>/versions/<dataset_version>/<token>/      one upload attempt
        <data files>  manifest.json  dataset_manifest.yaml  <extra files>

Every attempt uploads under a fresh ``<token>`` prefix (the staging prefix), so a failed attempt
can be deleted without touching anything a reader might be using. The attempt is re-verified at
the destination (size and sha256 of every object) before ``current.json`` is switched, and the
switch and the catalog record happen under the catalog's write lock, so concurrent publishers
cannot interleave. Any failure after the upload began deletes the candidate prefix, puts back the
previous ``current.json`` bytes exactly (or removes a pointer that did not exist) and leaves the
catalog unchanged.

A kill (SIGKILL, power loss) cannot run that undo. So before the switch the publisher writes an
intent, the catalog row it is about to commit, to the catalog's journal; ``reconcile_publish`` (run
at the start of every publish and sweep) settles each intent a dead publisher left: if
``current.json`` names the intent's upload the switch happened, readers may have followed it, and
the row is committed now (roll forward); otherwise the switch never happened or was undone, and
the orphaned upload is deleted. Either way the pointer and the catalog agree again, and a re-run of
the same version is the idempotent no-op with the right ``previous_version``.

Re-publishing is idempotent and explicit: the same ``dataset_version`` with the same manifest
digest returns the existing catalog entry and uploads nothing; a different digest for a version
already in the catalog is refused.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import yaml

from feature_platform.contracts.canonical import sha256_file, sha256_hex
from feature_platform.contracts.checks import Check
from feature_platform.contracts.manifest import MANIFEST_NAME, DatasetManifest, ManifestError, parse_manifest
from feature_platform.contracts.paths import require_safe_id, resolve_inside
from feature_platform.contracts.safe_read import InputError, loads_json, loads_yaml, read_input_bytes
from feature_platform.datasets.verify import verify_dataset
from feature_platform.storage.catalog import Catalog, CatalogEntry, CatalogError, summary_json, utc_iso_now
from feature_platform.storage.object_keys import (
    ObjectNotFoundError,
    ObjectStoreError,
    StorageUnavailableError,
    join_key,
    key_problem,
)
from feature_platform.storage.object_store import ObjectStore

log = logging.getLogger(__name__)

DATASETS_ROOT = "datasets"
POINTER_NAME = "current.json"
PUBLISH_MANIFEST_NAME = "dataset_manifest.yaml"
MAX_POINTER_BYTES = 1024 * 1024


class DatasetPublishError(RuntimeError):
    """The version was not published; the store's pointer and the catalog are as they were."""


class DatasetPublishUnavailable(DatasetPublishError):
    """Not published because the store or catalog was unreachable for now: the only kind worth retrying.
    Verification failures, refusals and conflicts are plain ``DatasetPublishError`` and fail at once."""


def _transient(exc: BaseException | None) -> bool:
    """A connection, timeout or storage-unavailable error anywhere in the cause chain."""
    while exc is not None:
        if isinstance(exc, (StorageUnavailableError, ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return True
        exc = exc.__cause__
    return False


def _publish_error(message: str, cause: BaseException) -> DatasetPublishError:
    return (DatasetPublishUnavailable if _transient(cause) else DatasetPublishError)(message)




@dataclass(frozen=True)
class PublishedVersion:
    dataset_id: str
    dataset_version: str
    manifest_digest: str
    prefix: str
    location: str
    published_at: str
    previous_version: str | None
    entry: CatalogEntry
    created: bool  # False when this call was an idempotent no-op

    @property
    def pointer_key(self) -> str:
        return pointer_key(self.dataset_id)


@dataclass(frozen=True)
class _Upload:
    key: str  # relative to the candidate prefix
    sha256: str
    size: int
    path: Path | None = None
    data: bytes | None = None


def pointer_key(dataset_id: str) -> str:
    return join_key(DATASETS_ROOT, dataset_id, POINTER_NAME)


def versions_prefix(dataset_id: str, dataset_version: str) -> str:
    """Every upload attempt of one version lives under this key prefix (without trailing '/')."""
    return join_key(DATASETS_ROOT, dataset_id, "versions", dataset_version)


def current_pointer(store: ObjectStore, dataset_id: str) -> dict[str, Any] | None:
    """The parsed ``current.json`` of ``dataset_id``, or None when nothing was published yet."""
    raw = _pointer_bytes(store, dataset_id)
    return None if raw is None else _parse_pointer(raw, store.url(pointer_key(dataset_id)))


def _pointer_bytes(store: ObjectStore, dataset_id: str) -> bytes | None:
    try:
        return store.get_bytes(pointer_key(dataset_id))
    except ObjectNotFoundError:
        return None


def _parse_pointer(raw: bytes, where: str) -> dict[str, Any]:
    try:
        pointer = loads_json(raw, where) if len(raw) <= MAX_POINTER_BYTES else None
    except InputError:
        pointer = None
    required = ("dataset_version", "manifest_digest", "prefix")
    if not isinstance(pointer, dict) or not all(isinstance(pointer.get(k), str) for k in required):
        raise DatasetPublishError(f"{where}: not a valid pointer (needs string {', '.join(required)})")
    return pointer


def publish_dataset_version(
    dataset_dir: Path,
    manifest: DatasetManifest,
    store: ObjectStore,
    catalog: Catalog,
    *,
    extra_files: Mapping[str, Path] | None = None,
    quality_summary: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> PublishedVersion:
    """Verify locally, upload under a fresh staging prefix, re-verify there, switch ``current.json``,
    record in the catalog; on any failure undo everything (see the module docstring).

    ``name`` is the catalog and pointer key when versions of one dataset family have their own
    local ids (e.g. ``market_regime-2026-11-25`` published as ``market_regime``); default: the
    manifest's ``dataset_id``.
    """
    ds_id = require_safe_id(name or manifest.dataset_id, "dataset name")
    version, digest = manifest.dataset_version, manifest.digest()
    what = f"{ds_id} {version}"
    try:
        reconcile_publish(store, catalog, ds_id)
        summary_json(quality_summary)
        extras = _check_extra_names(extra_files or {}, manifest, what)
        existing = catalog.get(ds_id, version)
        if existing is not None:
            return _already_published(existing, digest, store, what)
        report = verify_dataset(Path(dataset_dir) / MANIFEST_NAME, expected_digest=digest)
        if not report.ok:
            first = report.failures[0].line()
            more = f" (+{len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
            raise DatasetPublishError(f"{what}: local dataset failed verification, nothing published: {first}{more}")
        current_pointer(store, ds_id)  # a corrupt pointer needs a person: refuse before uploading anything
        published_at = utc_iso_now()
        prefix = join_key(versions_prefix(ds_id, version), _upload_token())
        location = store.url(prefix) + "/"
        uploads = _plan_uploads(Path(dataset_dir), manifest, extras, prefix, location, published_at, store)
    except (OSError, ObjectStoreError, CatalogError, sqlite3.Error) as exc:
        raise _publish_error(f"{what}: nothing published: {_one_line(exc)}", exc) from exc

    try:
        for item in uploads:
            _upload(store, prefix, item)
        _require_destination(store, prefix, uploads)
        entry, previous = _switch_and_record(store, catalog, ds_id, manifest, prefix, location, published_at,
                                             quality_summary)
    except BaseException as exc:  # noqa: BLE001 - _roll_back cleans up and re-raises
        _roll_back(store, prefix, what, exc)
    log.info("published %s (%s) at %s", what, digest, location)
    return PublishedVersion(ds_id, version, digest, prefix, location, published_at,
                            previous.get("dataset_version") if previous else None, entry, created=True)


def _already_published(existing: CatalogEntry, digest: str, store: ObjectStore, what: str) -> PublishedVersion:
    if existing.manifest_digest != digest:
        raise DatasetPublishError(f"{what}: already published with manifest digest {existing.manifest_digest}, "
                                  f"refusing a different one ({digest}); publish it as a new dataset_version")
    if not store.exists(join_key(existing.prefix, MANIFEST_NAME)):
        raise DatasetPublishError(f"{what}: the catalog records it at {existing.location} but this store lacks "
                                  f"{MANIFEST_NAME} there")
    return PublishedVersion(existing.dataset_id, existing.dataset_version, digest, existing.prefix,
                            existing.location, existing.published_at, existing.previous_version, existing,
                            created=False)


def _check_extra_names(extra_files: Mapping[str, Path], manifest: DatasetManifest, what: str) -> dict[str, Path]:
    reserved = [MANIFEST_NAME, PUBLISH_MANIFEST_NAME, *(f.path for f in manifest.files)]
    names = list(reserved)
    for name, path in extra_files.items():
        problem = key_problem(name)
        if problem is not None:
            raise DatasetPublishError(f"{what}: extra file name refused: {problem}")
        clash = next((n for n in names if n == name or name.startswith(n + "/") or n.startswith(name + "/")), None)
        if clash is not None:
            raise DatasetPublishError(f"{what}: extra file {name!r} collides with {clash!r}")
        if not Path(path).is_file():
            raise DatasetPublishError(f"{what}: extra file {name!r}: {path} is not a regular file")
        names.append(name)
    return {name: Path(path) for name, path in extra_files.items()}


TOKEN_TIME = "%Y%m%dT%H%M%S%fZ"
# An upload attempt younger than this may still be in flight (a concurrent publisher): never swept.
ABANDONED_AFTER = timedelta(hours=24)


def _upload_token(now: datetime | None = None) -> str:
    return f"{(now or datetime.now(tz=UTC)).strftime(TOKEN_TIME)}-{secrets.token_hex(4)}"


def sweep_abandoned_uploads(store: ObjectStore, catalog: Catalog, dataset_id: str, *,
                            older_than: timedelta = ABANDONED_AFTER, now: datetime | None = None) -> list[str]:
    """Delete upload attempts that never became a catalog version; returns their prefixes.

    A publish that fails cleans up after itself, but one killed between upload and switch (SIGKILL, a
    lost node, a power cut) leaves its prefix behind. Under the catalog's write lock (the one every
    switch takes), a prefix that neither the catalog nor ``current.json`` names and whose token is older
    than ``older_than`` can only be such an orphan. Tokens this code did not write are left alone.
    """
    now = now or datetime.now(tz=UTC)
    root = join_key(DATASETS_ROOT, require_safe_id(dataset_id, "dataset name"), "versions") + "/"
    reconcile_publish(store, catalog, dataset_id)
    swept: list[str] = []
    with catalog.transaction() as tx:
        pointer = current_pointer(store, dataset_id)
        keep = tx.prefixes(dataset_id) | ({str(pointer.get("prefix"))} if pointer else set())
        attempts = {root + "/".join(key[len(root):].split("/")[:2]) for key in store.list(root)
                    if key[len(root):].count("/") >= 2}
        for prefix in sorted(attempts - keep):
            try:
                started = datetime.strptime(prefix.rsplit("/", 1)[1].split("-")[0], TOKEN_TIME).replace(tzinfo=UTC)
            except ValueError:
                continue
            if now - started >= older_than:
                store.delete_prefix(prefix + "/")
                swept.append(prefix)
    for prefix in swept:
        log.info("swept abandoned upload %s/", prefix)
    return swept


def _plan_uploads(
    dataset_dir: Path,
    manifest: DatasetManifest,
    extras: Mapping[str, Path],
    prefix: str,
    location: str,
    published_at: str,
    store: ObjectStore,
) -> list[_Upload]:
    """What goes where, with the sha256 and size each object must have at the destination.

    Data files are held to the manifest; everything else to the bytes hashed here. ``manifest.json``
    and ``dataset_manifest.yaml`` go last, so a listing never shows a manifest without its data.
    """
    uploads = [_Upload(f.path, f.sha256, f.bytes, path=resolve_inside(dataset_dir, f.path)) for f in manifest.files]
    extra_records = []
    for name, path in sorted(extras.items()):
        sha, size = sha256_file(path), path.stat().st_size
        uploads.append(_Upload(name, sha, size, path=path))
        extra_records.append({"path": name, "sha256": sha, "bytes": size})
    manifest_bytes = read_input_bytes(dataset_dir / MANIFEST_NAME)
    return uploads + _manifest_uploads(manifest, manifest_bytes, extra_records, prefix, location, published_at, store)


def _manifest_uploads(manifest: DatasetManifest, manifest_bytes: bytes, extra_records: list[dict[str, Any]],
                      prefix: str, location: str, published_at: str, store: ObjectStore) -> list[_Upload]:
    """``manifest.json`` and ``dataset_manifest.yaml``, the last objects of an attempt."""
    uploads: list[_Upload] = []
    uploads.append(_Upload(MANIFEST_NAME, sha256_hex(manifest_bytes), len(manifest_bytes), data=manifest_bytes))
    record = {
        "dataset_id": manifest.dataset_id,
        "dataset_version": manifest.dataset_version,
        "location": location,
        "manifest": store.url(join_key(prefix, MANIFEST_NAME)),
        "manifest_digest": manifest.digest(),
        "manifest_file_sha256": sha256_hex(manifest_bytes),
        "checksum_algorithm": "sha256",
        "generated_at": manifest.created_at,
        "published_at": published_at,
        "row_count": manifest.row_count,
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes, "rows": f.rows} for f in manifest.files],
        "extra_files": extra_records,
    }
    yaml_bytes = yaml.safe_dump(record, sort_keys=False, allow_unicode=True).encode("utf-8")
    uploads.append(_Upload(PUBLISH_MANIFEST_NAME, sha256_hex(yaml_bytes), len(yaml_bytes), data=yaml_bytes))
    return uploads


def new_upload_prefix(store: ObjectStore, catalog: Catalog, dataset_id: str, dataset_version: str) -> str:
    """A fresh upload attempt's prefix for a builder that uploads its data files itself (no shared disk);
    ``publish_uploaded`` publishes it. Settles dead publishers' intents and refuses a corrupt pointer first."""
    ds_id = require_safe_id(dataset_id, "dataset name")
    require_safe_id(dataset_version, "dataset_version")
    try:
        reconcile_publish(store, catalog, ds_id)
        current_pointer(store, ds_id)
    except (OSError, ObjectStoreError, CatalogError, sqlite3.Error) as exc:
        raise _publish_error(f"{ds_id} {dataset_version}: nothing published: {_one_line(exc)}", exc) from exc
    return join_key(versions_prefix(ds_id, dataset_version), _upload_token())


def publish_uploaded(store: ObjectStore, catalog: Catalog, manifest: DatasetManifest, prefix: str, *,
                     name: str | None = None, quality_summary: Mapping[str, Any] | None = None) -> PublishedVersion:
    """Publish an attempt whose data files are already under ``prefix`` (from ``new_upload_prefix``): write
    the manifests there, check every object's size and sha256 and that nothing else is there, then switch
    ``current.json`` and record the version. Any failure deletes the prefix and leaves the pointer and the
    catalog as they were; an already published version with the same digest is the idempotent no-op."""
    ds_id = require_safe_id(name or manifest.dataset_id, "dataset name")
    version = manifest.dataset_version
    what = f"{ds_id} {version}"
    try:
        existing = catalog.get(ds_id, version)
        if existing is not None:
            _delete_candidate(store, prefix)
            return _already_published(existing, manifest.digest(), store, what)
        summary_json(quality_summary)
        published_at = utc_iso_now()
        location = store.url(prefix) + "/"
        data = [_Upload(f.path, f.sha256, f.bytes) for f in manifest.files]
        meta = _manifest_uploads(manifest, manifest.dumps().encode("utf-8"), [], prefix, location, published_at,
                                 store)
        for item in meta:
            _upload(store, prefix, item)
        _require_destination(store, prefix, data + meta)
        entry, previous = _switch_and_record(store, catalog, ds_id, manifest, prefix, location, published_at,
                                             quality_summary)
    except BaseException as exc:  # noqa: BLE001 - _roll_back cleans up and re-raises
        _roll_back(store, prefix, what, exc)
    log.info("published %s (%s) at %s", what, manifest.digest(), location)
    return PublishedVersion(ds_id, version, manifest.digest(), prefix, location, published_at,
                            previous.get("dataset_version") if previous else None, entry, created=True)


def _require_destination(store: ObjectStore, prefix: str, expected: list[_Upload]) -> None:
    """Every expected object under ``prefix`` has its size and sha256, and nothing else is there."""
    failed = [c for c in _destination_checks(store, prefix, expected) if not c.passed]
    if failed:
        c = failed[0]
        raise DatasetPublishError(f"destination re-verify failed: {c.name}: expected {c.expected}, "
                                  f"actual {c.actual}" + (f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""))


def _roll_back(store: ObjectStore, prefix: str, what: str, exc: BaseException) -> NoReturn:
    """A publish failed before or while switching: delete the candidate (unless the pointer could not be restored,
    when it is what ``current.json`` may name) and re-raise as a one-line publish error."""
    cleanup = "" if isinstance(exc, _PointerNotRestored) else _delete_candidate(store, prefix)
    log.warning("publish of %s rolled back: %s", what, _one_line(exc))
    if isinstance(exc, Exception):
        raise _publish_error(f"{what}: publish rolled back: {_one_line(exc)}{cleanup}", exc) from exc
    raise exc


def _upload(store: ObjectStore, prefix: str, item: _Upload) -> None:
    key = join_key(prefix, item.key)
    if item.data is not None:
        store.put_bytes(item.data, key)
    else:
        assert item.path is not None
        store.put_file(item.path, key)


def _destination_checks(store: ObjectStore, prefix: str, uploads: list[_Upload]) -> list[Check]:
    checks: list[Check] = []
    for item in uploads:
        key = join_key(prefix, item.key)
        size = store.size(key)
        checks.append(Check(f"object_size[{item.key}]", size == item.size, str(item.size), str(size)))
        sha = store.sha256(key)
        checks.append(Check(f"object_sha256[{item.key}]", sha == item.sha256, item.sha256, sha))
    expected = sorted(join_key(prefix, u.key) for u in uploads)
    listed = store.list(prefix + "/")
    diff = "" if listed == expected else f": differs in {sorted(set(listed) ^ set(expected))}"
    checks.append(Check("no_extra_objects", listed == expected, f"{len(expected)} objects",
                              f"{len(listed)} objects{diff}"))
    return checks


class _PointerNotRestored(Exception):
    """current.json may still name the candidate: deleting the candidate would leave it dangling."""


def _switch_and_record(
    store: ObjectStore,
    catalog: Catalog,
    ds_id: str,
    manifest: DatasetManifest,
    prefix: str,
    location: str,
    published_at: str,
    quality_summary: Mapping[str, Any] | None,
) -> tuple[CatalogEntry, dict[str, Any] | None]:
    """Switch ``current.json`` and record the version while holding the catalog's write lock."""
    version, digest = manifest.dataset_version, manifest.digest()
    key = pointer_key(ds_id)
    with catalog.transaction() as tx:
        if tx.get(ds_id, version) is not None:
            raise DatasetPublishError(f"{ds_id} {version} was published concurrently by another publisher")
        before = _pointer_bytes(store, ds_id)
        previous = None if before is None else _parse_pointer(before, store.url(key))
        pointer = {
            "dataset_id": ds_id,
            "dataset_version": version,
            "manifest_digest": digest,
            "prefix": prefix,
            "location": location,
            "published_at": published_at,
            "previous": None if previous is None else {
                k: previous.get(k) for k in ("dataset_version", "manifest_digest", "prefix", "location")},
        }
        row: dict[str, Any] = {
            "dataset_id": ds_id, "dataset_version": version, "manifest_digest": digest, "location": location,
            "prefix": prefix, "quality_summary": dict(quality_summary or {}),
            "previous_version": previous["dataset_version"] if previous else None, "published_at": published_at}
        intent = catalog.write_intent(ds_id, prefix.rsplit("/", 1)[1], row)
        try:
            store.put_bytes(json.dumps(pointer, indent=2, sort_keys=True).encode("utf-8") + b"\n", key)
            entry = tx.record_publish(**row)
            tx.commit()
        except BaseException as exc:
            _restore_pointer(store, key, before, exc)  # on failure the intent stays for reconcile_publish
            _drop_intent(catalog, intent)
            raise
    _drop_intent(catalog, intent)
    return entry, previous


def _drop_intent(catalog: Catalog, path: Path) -> None:
    """A leftover intent is harmless (reconcile finds its row committed), so failing to remove one is only logged."""
    try:
        catalog.drop_intent(path)
    except OSError as exc:
        log.warning("could not remove publish intent %s: %s", path, _one_line(exc))


_INTENT_FIELDS = ("dataset_id", "dataset_version", "manifest_digest", "location", "prefix", "published_at")


def reconcile_publish(store: ObjectStore, catalog: Catalog, dataset_id: str) -> list[str]:
    """Settle the intents killed publishers of ``dataset_id`` left (module docstring); one line per intent.

    Runs under the catalog's write lock, so it never races a live publisher: a live one holds the lock
    from before it writes its intent until after it commits or undoes the switch.
    """
    ds_id = require_safe_id(dataset_id, "dataset name")
    if not catalog.intents(ds_id):
        return []
    settled: list[Path] = []
    notes: list[str] = []
    with catalog.transaction() as tx:
        for path, row in catalog.intents(ds_id):
            bad = [k for k in _INTENT_FIELDS if not isinstance(row.get(k), str)]
            if bad or row["dataset_id"] != ds_id or not isinstance(row.get("quality_summary"), dict) \
                    or not isinstance(row.get("previous_version"), (str, type(None))) \
                    or not row["prefix"].startswith(versions_prefix(ds_id, row["dataset_version"]) + "/"):
                raise DatasetPublishError(f"{path}: not a publish intent for {ds_id} (fields {bad or 'mismatched'});"
                                          " inspect it and current.json by hand")
            version, prefix = row["dataset_version"], row["prefix"]
            entry = tx.get(ds_id, version)
            pointer = current_pointer(store, ds_id)
            if entry is not None and entry.prefix == prefix:
                notes.append(f"{ds_id} {version}: already recorded")
            elif entry is None and pointer is not None and pointer["prefix"] == prefix:
                tx.record_publish(**{k: row[k] for k in (*_INTENT_FIELDS, "quality_summary", "previous_version")})
                notes.append(f"{ds_id} {version}: the publisher died after switching current.json; recorded now")
            else:
                store.delete_prefix(prefix + "/")
                notes.append(f"{ds_id} {version}: the publisher died before the switch; upload {prefix}/ deleted")
            settled.append(path)
    for path in settled:
        _drop_intent(catalog, path)
    for note in notes:
        log.warning("reconciled publish: %s", note)
    return notes


def _restore_pointer(store: ObjectStore, key: str, before: bytes | None, cause: BaseException) -> None:
    """Put back the exact previous pointer bytes (still under the lock, so nobody else's switch is undone)."""
    try:
        if before is None:
            store.delete(key)
            restored = not store.exists(key)
        else:
            store.put_bytes(before, key)
            restored = store.get_bytes(key) == before
    except Exception as exc:  # noqa: BLE001 - reported below with the original cause
        raise _PointerNotRestored(f"{_one_line(cause)}; restoring {key} failed too: {_one_line(exc)}; "
                                  "candidate kept because the pointer may name it") from cause
    if not restored:
        raise _PointerNotRestored(f"{_one_line(cause)}; {key} did not read back as restored; candidate kept "
                                  "because the pointer may name it") from cause


def _delete_candidate(store: ObjectStore, prefix: str) -> str:
    """Delete the attempt's objects; returns '' or a note for the error message when that failed."""
    try:
        store.delete_prefix(prefix + "/")
        left = store.list(prefix + "/")
    except Exception as exc:  # noqa: BLE001 - the publish error is raised by the caller
        return f"; deleting candidate {prefix}/ failed: {_one_line(exc)}"
    return f"; {len(left)} candidate object(s) could not be deleted under {prefix}/" if left else ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, (DatasetPublishError, _PointerNotRestored)) and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def verify_published(store: ObjectStore, prefix: str, manifest: DatasetManifest) -> list[Check]:
    """Re-hash the published copy under ``prefix`` against ``manifest``; fail-closed on any error."""
    checks: list[Check] = []
    digest = manifest.digest()
    try:
        try:
            key = join_key(prefix, MANIFEST_NAME)
            remote = parse_manifest(loads_json(store.get_bytes(key), store.url(key)))
            actual = remote.digest()
        except ObjectNotFoundError:
            actual = "missing"
        except (ValueError, ManifestError) as exc:
            actual = f"unreadable: {_one_line(exc)}"
        checks.append(Check("manifest_digest", actual == digest, digest, actual))
        try:
            key = join_key(prefix, PUBLISH_MANIFEST_NAME)
            record = loads_yaml(store.get_bytes(key), store.url(key))
            recorded = str(record.get("manifest_digest")) if isinstance(record, dict) else "not a mapping"
        except ObjectNotFoundError:
            recorded = "missing"
        except InputError as exc:
            recorded = f"unreadable: {_one_line(exc)}"
        checks.append(Check(f"{PUBLISH_MANIFEST_NAME}[manifest_digest]", recorded == digest, digest, recorded))
        for f in manifest.files:
            key = join_key(prefix, f.path)
            if not store.exists(key):
                checks.append(Check(f"file_exists[{f.path}]", False, "an object", "missing"))
                continue
            checks.append(Check(f"file_exists[{f.path}]", True, "an object", "an object"))
            size = store.size(key)
            checks.append(Check(f"file_size[{f.path}]", size == f.bytes, str(f.bytes), str(size)))
            sha = store.sha256(key)
            checks.append(Check(f"file_sha256[{f.path}]", sha == f.sha256, f.sha256, sha))
    except Exception as exc:  # noqa: BLE001 - fail closed, like verify_dataset
        checks.append(Check("verify_completed", False, "no error", _one_line(exc)))
    return checks


def fetch_published(store: ObjectStore, prefix: str, dest_dir: Path) -> Path:
    """Download ``manifest.json`` and its data files from ``prefix`` into ``dest_dir/<dataset_id>/``.

    Only what the manifest lists is fetched, so ``verify_dataset`` can run on the copy unchanged;
    listed paths are checked to stay inside the target directory before anything is written.
    """
    key = join_key(prefix, MANIFEST_NAME)
    manifest = parse_manifest(loads_json(store.get_bytes(key), store.url(key)))
    target = Path(dest_dir) / manifest.dataset_id
    if target.exists() and any(target.iterdir()):
        raise DatasetPublishError(f"{target} already exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    for f in manifest.files:
        store.download_file(join_key(prefix, f.path), resolve_inside(target, f.path))
    store.download_file(join_key(prefix, MANIFEST_NAME), target / MANIFEST_NAME)
    return target

