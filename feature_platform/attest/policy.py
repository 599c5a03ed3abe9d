"""The trust policy: which public keys may sign datasets and models (``FP_TRUST_POLICY``).

A JSON or TOML file (by its suffix ``.json`` / ``.toml``)::

    # trust_policy.toml
    [[keys]]
    name = "ci"                          # shown in verdicts
    public_key = "keys/ci.pub.pem"       # PEM ed25519 public key; relative paths are relative to this file
    allow = ["dataset", "model"]         # what this key may sign

When ``FP_TRUST_POLICY`` is set, promotion refuses a model or dataset that is unsigned, signed by a key
the policy does not list (or does not allow for that kind), or whose bytes changed after signing. A policy
that cannot be read is itself a refusal: promotion never falls back to "no policy".
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feature_platform.attest.attestation import AttestationError, TrustedKey, trusted_key
from feature_platform.contracts.manifest import validation_message
from feature_platform.contracts.safe_read import InputError, loads_json, read_input_bytes

TRUST_POLICY_ENV: Final = "FP_TRUST_POLICY"
MAX_POLICY_BYTES: Final = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PolicyKey(_Strict):
    name: str = Field(min_length=1)
    public_key: str = Field(min_length=1, description="path to a PEM ed25519 public key")
    allow: list[Literal["dataset", "model"]] = Field(min_length=1)


class PolicyFile(_Strict):
    keys: list[PolicyKey] = Field(min_length=1)


@dataclass(frozen=True)
class TrustPolicy:
    path: Path
    keys: dict[str, TrustedKey]


def load_policy(path: Path) -> TrustPolicy:
    """The policy at ``path``; ``AttestationError`` (one line: file, field, expected) when it cannot be used."""
    path = Path(path)
    try:
        data = read_input_bytes(path, what=f"trust policy {path}", max_bytes=MAX_POLICY_BYTES)
        if path.suffix == ".toml":
            raw: object = tomllib.loads(data.decode("utf-8"))
        elif path.suffix == ".json":
            raw = loads_json(data, str(path))
        else:
            raise AttestationError(f"trust policy {path}: expected a .json or .toml file")
    except (InputError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AttestationError(f"trust policy {path}: {str(exc).splitlines()[0]}") from None
    try:
        parsed = PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise AttestationError(validation_message(exc, f"trust policy {path}")) from None
    keys: dict[str, TrustedKey] = {}
    for entry in parsed.keys:
        key_path = Path(entry.public_key)
        key = trusted_key(key_path if key_path.is_absolute() else path.parent / key_path, entry.name,
                          frozenset(entry.allow))
        if key.keyid in keys:
            raise AttestationError(f"trust policy {path}: field keys.public_key: {entry.name} repeats the key of "
                                   f"{keys[key.keyid].name}; expected each key once")
        keys[key.keyid] = key
    return TrustPolicy(path, keys)


def policy_path_from_env() -> Path | None:
    value = os.environ.get(TRUST_POLICY_ENV, "").strip()
    return Path(value) if value else None


def policy_from_env() -> TrustPolicy | None:
    """The policy ``FP_TRUST_POLICY`` names, or ``None`` when it is unset (raises when set but unusable)."""
    path = policy_path_from_env()
    return None if path is None else load_policy(path)
