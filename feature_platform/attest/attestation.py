# Over 400 lines: statement building, DSSE signing and verification of both artifact kinds are one format.
"""Sign and verify a dataset or a model directory: an in-toto Statement v1 in a DSSE envelope, ed25519, offline.

What is signed (the statement's subjects, each a relative path and its sha256):

- a dataset (``PATH`` is its ``manifest.json``): ``manifest.json`` and every data file the manifest lists;
- a model directory: every regular file in it (recursively).

The envelope is one JSON line in ``attestation.intoto.jsonl`` inside the dataset or model directory (a
sidecar that dataset verification allows); a registered model carries the same file as the run artifact
``training/attestation.intoto.jsonl``. The predicate type ``PREDICATE_TYPE`` is this platform's: its
predicate names the artifact kind, what it is (dataset id and manifest digest, or model id) and when it was
signed. A signature's ``keyid`` is the sha256 of the raw ed25519 public key.

Verification re-hashes the files now: a file added, removed or changed after signing fails, as does a
signature by a key that is not trusted, or one that does not verify.

The OpenSSF ``model-signing`` package is not used: it signs whole model directories only (not a dataset's
manifest-chosen files) and brings in sigstore's network client; ``cryptography`` does ed25519 and DSSE offline.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from feature_platform.contracts.canonical import sha256_file, sha256_hex
from feature_platform.contracts.manifest import ATTESTATION_NAME, MANIFEST_NAME, ManifestError, load_manifest
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME
from feature_platform.contracts.paths import UnsafePathError, resolve_inside
from feature_platform.contracts.provenance import utc_now, utc_timestamp
from feature_platform.contracts.safe_read import InputError, loads_json, read_input_bytes
from feature_platform.storage.files import write_atomic

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://feature-platform.dev/attestation/artifact/v1"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
SIGNING_KEY_ENV: Final = "FP_SIGNING_KEY"
PRIVATE_KEY_NAME: Final = "signing_key.pem"
PUBLIC_KEY_NAME: Final = "signing_key.pub.pem"
MAX_ATTESTATION_BYTES: Final = 4 * 1024 * 1024
MAX_KEY_BYTES: Final = 64 * 1024

Kind = Literal["dataset", "model"]
KINDS: Final = ("dataset", "model")
Outcome = Literal["verified", "unsigned", "unknown_key", "bad_signature", "changed"]


class AttestationError(ValueError):
    """Bad input: a key, path or policy that cannot be used (one line naming it)."""


class SigningRefused(RuntimeError):
    """The artifact is not in a state worth signing (its files disagree with its manifest)."""


@dataclass(frozen=True)
class Artifact:
    """What a statement is about: subject name → the file holding those bytes now.

    ``complete``: the subjects must be exactly ``files`` (a local directory); otherwise ``files`` must be
    among the subjects and the rest are not checked (a registry copy holds only some of the model's files).
    """

    kind: Kind
    label: str
    files: dict[str, Path]
    attestation: Path
    complete: bool = True
    predicate: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrustedKey:
    name: str
    keyid: str
    public_key: Ed25519PublicKey
    allow: frozenset[str] = frozenset(KINDS)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    artifact: str
    attestation: str
    detail: str
    keyid: str | None = None
    key_name: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "verified"

    def line(self) -> str:
        return f"{self.artifact}: {self.outcome.replace('_', ' ')}: {self.detail}"

    def to_json_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "outcome": self.outcome, "artifact": self.artifact, "attestation": self.attestation,
                "detail": self.detail, "keyid": self.keyid, "key_name": self.key_name}


# keys ------------------------------------------------------------------------------------------------------

def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)


def _load_pem_key(path: Path, what: str, expected: str, parse: Callable[[bytes], object], kind: type[object]) -> Any:
    """A PEM key file, read bounded, holding a ``kind``: ``what`` (e.g. "public key") names it, ``expected`` the
    PEM it must hold."""
    try:
        key = parse(read_input_bytes(path, what=f"{what} {path}", max_bytes=MAX_KEY_BYTES))
    except InputError as exc:
        raise AttestationError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise AttestationError(f"{what} {path}: expected {expected} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(key, kind):
        raise AttestationError(f"{what} {path}: expected an ed25519 key, got {type(key).__name__}")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key: Ed25519PrivateKey = _load_pem_key(path, "private key", "an unencrypted PEM ed25519 private key",
                                           lambda pem: serialization.load_pem_private_key(pem, password=None),
                                           Ed25519PrivateKey)
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key: Ed25519PublicKey = _load_pem_key(path, "public key", "a PEM ed25519 public key",
                                          serialization.load_pem_public_key, Ed25519PublicKey)
    return key


def trusted_key(path: Path, name: str | None = None, allow: frozenset[str] = frozenset(KINDS)) -> TrustedKey:
    public = load_public_key(path)
    return TrustedKey(name or str(path), key_id(public), public, allow)


def keygen(out_dir: Path, *, force: bool = False) -> tuple[Path, Path]:
    """A new ed25519 key pair in ``out_dir``: the private key (mode 0600) and the public key; never overwrites
    an existing key unless ``force``."""
    private_path, public_path = Path(out_dir) / PRIVATE_KEY_NAME, Path(out_dir) / PUBLIC_KEY_NAME
    existing = [str(p) for p in (private_path, public_path) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise SigningRefused(f"{existing[0]}: already exists; not overwritten (use --force to replace the key pair)")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_atomic(private_path, private, mode=0o600)
    write_atomic(public_path, public)
    return private_path, public_path


# artifacts -------------------------------------------------------------------------------------------------

def dataset_artifact(manifest_path: Path, *, for_signing: bool = False) -> Artifact:
    """A dataset by its ``manifest.json``. For verification an unreadable manifest is not an input error:
    it is only the subject ``manifest.json``, whose changed bytes verification reports."""
    manifest_path = Path(manifest_path)
    root = manifest_path.parent
    files = {MANIFEST_NAME: manifest_path}
    attestation = root / ATTESTATION_NAME
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        if for_signing or not manifest_path.is_file():
            raise AttestationError(str(exc)) from None
        return Artifact("dataset", str(manifest_path), files, attestation, complete=False)
    problems = []
    for entry in manifest.files:
        try:
            files[entry.path] = resolve_inside(root, entry.path)
        except UnsafePathError as exc:
            raise AttestationError(f"{manifest_path}: field files.path: {exc}") from None
        if for_signing:
            actual = sha256_file(files[entry.path]) if files[entry.path].is_file() else "missing"
            if actual != entry.sha256:
                problems.append(f"{entry.path} sha256 {actual}, manifest says {entry.sha256}")
    if problems:
        raise SigningRefused(f"{manifest_path}: refusing to sign: " + "; ".join(problems))
    predicate = {"dataset_id": manifest.dataset_id, "dataset_version": manifest.dataset_version,
                 "manifest_digest": manifest.digest()}
    return Artifact("dataset", str(manifest_path), files, attestation, predicate=predicate)


def model_artifact(model_dir: Path) -> Artifact:
    """A model directory: every regular file in it except the attestation; a symlink or special file is refused."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise AttestationError(f"{model_dir}: expected a model directory")
    files: dict[str, Path] = {}
    for root, dirs, names in os.walk(model_dir, followlinks=False):
        for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = Path(root) / name
            rel = full.relative_to(model_dir).as_posix()
            if rel == ATTESTATION_NAME:
                continue
            if full.is_symlink() or not full.is_file():
                raise AttestationError(f"{full}: expected a regular file in the model directory")
            files[rel] = full
    if not files:
        raise AttestationError(f"{model_dir}: an empty directory; expected a model directory")
    return Artifact("model", str(model_dir), files, model_dir / ATTESTATION_NAME, predicate=_model_predicate(files))


def _model_predicate(files: Mapping[str, Path]) -> dict[str, Any]:
    path = files.get(MODEL_MANIFEST_NAME)
    if path is None:
        return {}
    try:
        raw = loads_json(read_input_bytes(path), str(path))
    except InputError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in ("model_id", "training_id", "dataset_manifest_digest") if isinstance(raw.get(k), str)}


def artifact_at(path: Path) -> Artifact:
    """``path`` is a dataset's manifest (a file) or a model directory."""
    path = Path(path)
    if path.is_dir():
        return model_artifact(path)
    if path.is_file():
        return dataset_artifact(path)
    raise AttestationError(f"{path}: no such file or directory; expected a dataset manifest.json or a model directory")


# statement and envelope ------------------------------------------------------------------------------------

def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(artifact: Artifact, signed_at: str) -> dict[str, Any]:
    subjects = [{"name": name, "digest": {"sha256": sha256_file(path)}}
                for name, path in sorted(artifact.files.items())]
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
            "predicate": {"kind": artifact.kind, "signed_at": signed_at, **artifact.predicate}}


def sign(artifact: Artifact, key: Ed25519PrivateKey, *, signed_at: str | None = None) -> Path:
    """Hash the artifact's files now, sign the statement, write the envelope beside them; returns its path."""
    body = statement(artifact, signed_at or utc_timestamp(utc_now()))
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    envelope = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode("ascii"),
                "signatures": [{"keyid": key_id(key.public_key()),
                                "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode("ascii")}]}
    line = json.dumps(envelope, sort_keys=True, separators=(",", ":")) + "\n"
    return write_atomic(artifact.attestation, line.encode("utf-8"))


def sign_path(path: Path, key_path: Path) -> Path:
    """Sign the dataset (``manifest.json``) or model directory at ``path`` with the private key at ``key_path``."""
    key = load_private_key(key_path)
    path = Path(path)
    artifact = model_artifact(path) if path.is_dir() else dataset_artifact(path, for_signing=True)
    return sign(artifact, key)


def signing_key_from_env() -> Path | None:
    """``FP_SIGNING_KEY``: the private key builds sign with; unset or empty → no signing."""
    value = os.environ.get(SIGNING_KEY_ENV, "").strip()
    return Path(value) if value else None


# verification ----------------------------------------------------------------------------------------------

def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(value.encode("ascii"), validate=True)


def _envelopes(artifact: Artifact) -> list[dict[str, Any]] | Verdict:
    where = str(artifact.attestation)
    if not artifact.attestation.exists() and not artifact.attestation.is_symlink():
        return Verdict("unsigned", artifact.label, where, f"no attestation ({where} is missing)")
    try:
        text = read_input_bytes(artifact.attestation, max_bytes=MAX_ATTESTATION_BYTES, nofollow=True).decode("utf-8")
        found = [loads_json(line, where) for line in text.splitlines() if line.strip()]
    except (InputError, UnicodeDecodeError) as exc:
        return Verdict("bad_signature", artifact.label, where, f"unreadable attestation: {str(exc).splitlines()[0]}")
    envelopes = [e for e in found if isinstance(e, dict)]
    if not envelopes or len(envelopes) != len(found):
        return Verdict("bad_signature", artifact.label, where, "expected one DSSE envelope (a JSON object) per line")
    return envelopes


def _open_envelope(artifact: Artifact, envelopes: list[dict[str, Any]],
                   trusted: Mapping[str, TrustedKey]) -> tuple[dict[str, Any], TrustedKey] | Verdict:
    """The statement of the first envelope a trusted key signed; otherwise why none was accepted."""
    where = str(artifact.attestation)
    unknown: list[str] = []
    bad: list[str] = []
    for envelope in envelopes:
        if envelope.get("payloadType") != PAYLOAD_TYPE:
            bad.append(f"payloadType {envelope.get('payloadType')!r}, expected {PAYLOAD_TYPE!r}")
            continue
        try:
            payload = _b64(envelope.get("payload"))
        except (ValueError, binascii.Error):
            bad.append("payload is not base64")
            continue
        signatures = envelope.get("signatures")
        for sig in signatures if isinstance(signatures, list) else []:
            keyid = sig.get("keyid") if isinstance(sig, dict) else None
            key = trusted.get(keyid) if isinstance(keyid, str) else None
            if key is None:
                unknown.append(str(keyid))
                continue
            try:
                key.public_key.verify(_b64(sig.get("sig")), pae(PAYLOAD_TYPE, payload))
            except (InvalidSignature, ValueError, binascii.Error):
                bad.append(f"the signature by {key.name} ({key.keyid[:16]}…) does not verify")
                continue
            if artifact.kind not in key.allow:
                unknown.append(f"{keyid} ({key.name} may sign {sorted(key.allow)}, not a {artifact.kind})")
                continue
            try:
                body = loads_json(payload, where)
            except InputError as exc:
                bad.append(f"payload: {exc}")
                continue
            if not isinstance(body, dict):
                bad.append("payload is not a JSON object")
                continue
            return body, key
    if bad:
        return Verdict("bad_signature", artifact.label, where, bad[0])
    if unknown:
        return Verdict("unknown_key", artifact.label, where, f"signed by key {unknown[0]}, which is not trusted")
    return Verdict("bad_signature", artifact.label, where, "the envelope has no signatures")


def _subjects(body: dict[str, Any]) -> dict[str, str] | str:
    if body.get("_type") != STATEMENT_TYPE:
        return f"statement _type {body.get('_type')!r}, expected {STATEMENT_TYPE!r}"
    if body.get("predicateType") != PREDICATE_TYPE:
        return f"predicateType {body.get('predicateType')!r}, expected {PREDICATE_TYPE!r}"
    subjects: dict[str, str] = {}
    raw = body.get("subject")
    for entry in raw if isinstance(raw, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        digest = entry.get("digest") if isinstance(entry, dict) else None
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(name, str) or not isinstance(sha, str) or name in subjects:
            return "statement subject: expected unique {name, digest.sha256} entries"
        subjects[name] = sha
    if not subjects:
        return "statement subject: expected at least one subject"
    return subjects


def verify(artifact: Artifact, trusted: Mapping[str, TrustedKey]) -> Verdict:
    """Is ``artifact`` signed by a trusted key, and are its bytes the signed bytes, now?"""
    where = str(artifact.attestation)
    envelopes = _envelopes(artifact)
    if isinstance(envelopes, Verdict):
        return envelopes
    opened = _open_envelope(artifact, envelopes, trusted)
    if isinstance(opened, Verdict):
        return opened
    body, key = opened
    predicate = body.get("predicate")
    kind = predicate.get("kind") if isinstance(predicate, dict) else None
    subjects = _subjects(body)
    if isinstance(subjects, str) or kind != artifact.kind:
        detail = subjects if isinstance(subjects, str) else f"predicate.kind {kind!r}, expected {artifact.kind!r}"
        return Verdict("bad_signature", artifact.label, where, detail, key.keyid, key.name)
    problems = []
    for name in sorted(set(artifact.files) | (set(subjects) if artifact.complete else set())):
        path = artifact.files.get(name)
        if name not in subjects:
            problems.append(f"{name} is not signed")
        elif path is None or not path.is_file():
            problems.append(f"{name} is missing")
        else:
            actual = sha256_file(path)
            if actual != subjects[name]:
                problems.append(f"{name} sha256 {actual}, signed {subjects[name]}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Verdict("changed", artifact.label, where, problems[0] + more, key.keyid, key.name)
    checked = len(artifact.files)
    return Verdict("verified", artifact.label, where, f"{checked} file(s) signed by {key.name} ({key.keyid[:16]}…)",
                   key.keyid, key.name)
