"""Signed artifacts: `fp attest` on real datasets and model directories, and the trust policy at promotion
(real MLflow on SQLite): unsigned, unknown key and changed bytes are each refused and production stays put."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from feature_platform.attest.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    AttestationError,
    dataset_artifact,
    keygen,
    trusted_key,
    verify,
)
from feature_platform.attest.policy import load_policy
from feature_platform.datasets.verify import sha256_file, verify_dataset
from feature_platform.orchestration.metadata import sign_if_configured, signature_metadata
from feature_platform.registry.lineage import lineage
from feature_platform.registry.promotion import production_history, promote
from feature_platform.registry.rollback import rollback
from feature_platform.registry.tracking import PRODUCTION, log_training
from tests.conftest import CliResult
from tests.registry import test_registry as registry_tests
from tests.registry.test_registry import DATASET_ID, artifact_path, flip_byte, make_model_dir, production_version

# the registry tests' module fixtures: one tracking store, dataset and trained ONNX for this module too
_default_tracking = registry_tests._default_tracking
monkeypatch_module = registry_tests.monkeypatch_module
data_root = registry_tests.data_root
golden_dataset = registry_tests.golden_dataset
trained = registry_tests.trained

Cli = Callable[..., CliResult]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two key pairs: the trusted signer and a stranger."""
    root = tmp_path_factory.mktemp("keys")
    return {name: keygen(root / name) for name in ("signer", "stranger")}


@pytest.fixture
def dataset_copy(golden_dataset: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ds" / DATASET_ID
    shutil.copytree(golden_dataset, target)
    return target / "manifest.json"


def _policy(tmp_path: Path, public: Path, allow: list[str] | None = None, suffix: str = "toml") -> Path:
    path = tmp_path / f"trust_policy.{suffix}"
    allow = allow or ["dataset", "model"]
    if suffix == "toml":
        path.write_text(f'[[keys]]\nname = "signer"\npublic_key = "{public}"\nallow = {json.dumps(allow)}\n')
    else:
        path.write_text(json.dumps({"keys": [{"name": "signer", "public_key": str(public), "allow": allow}]}))
    return path


def _envelope(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text().strip()))


# --- fp attest on a dataset ------------------------------------------------------------------------------

def test_sign_verify_dataset_and_the_statement(dataset_copy: Path, keys: dict[str, tuple[Path, Path]],
                                               cli: Cli) -> None:
    private, public = keys["signer"]
    code, out, err = cli("attest", "sign", "--key", private, dataset_copy, "--json")
    assert code == 0, err
    attestation = Path(json.loads(out)["attestation"])
    assert attestation == dataset_copy.parent / "attestation.intoto.jsonl"
    envelope = _envelope(attestation)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    assert statement["predicate"]["kind"] == "dataset"
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        "manifest.json": sha256_file(dataset_copy),
        "data.parquet": sha256_file(dataset_copy.parent / "data.parquet")}
    assert verify_dataset(dataset_copy).ok  # the attestation beside the manifest is not an extra file

    code, out, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 0 and out.startswith("verified") and err == ""
    code, out, _ = cli("attest", "verify", "--pub", public, dataset_copy, "--json")
    assert code == 0 and json.loads(out)["outcome"] == "verified"


def test_one_changed_byte_fails_verify(dataset_copy: Path, keys: dict[str, tuple[Path, Path]], cli: Cli) -> None:
    private, public = keys["signer"]
    assert cli("attest", "sign", "--key", private, dataset_copy)[0] == 0
    flip_byte(dataset_copy.parent / "data.parquet")
    code, out, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "changed: data.parquet sha256" in err and str(dataset_copy) in err


def test_edited_or_broken_manifest_fails_verify_not_usage(dataset_copy: Path, keys: dict[str, tuple[Path, Path]],
                                                          cli: Cli) -> None:
    private, public = keys["signer"]
    assert cli("attest", "sign", "--key", private, dataset_copy)[0] == 0
    raw = json.loads(dataset_copy.read_text())
    dataset_copy.write_text(json.dumps({**raw, "row_count": raw["row_count"] + 1}))
    code, _, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and "changed: manifest.json sha256" in err
    dataset_copy.write_text("{not json")
    code, _, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and "changed: manifest.json sha256" in err


def test_unsigned_unknown_key_and_forged_signature(dataset_copy: Path, keys: dict[str, tuple[Path, Path]],
                                                   cli: Cli) -> None:
    private, public = keys["signer"]
    code, _, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and "unsigned: no attestation" in err

    assert cli("attest", "sign", "--key", keys["stranger"][0], dataset_copy)[0] == 0
    code, _, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and "unknown key: signed by key" in err

    assert cli("attest", "sign", "--key", private, dataset_copy)[0] == 0
    attestation = dataset_copy.parent / "attestation.intoto.jsonl"
    envelope = _envelope(attestation)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64  # a different statement under the old signature
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    attestation.write_text(json.dumps(envelope) + "\n")
    code, _, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and "bad signature" in err and "does not verify" in err

    attestation.write_text("not json\n")
    code, _, err = cli("attest", "verify", "--pub", public, dataset_copy)
    assert code == 1 and "bad signature" in err


def test_refuses_to_sign_a_dataset_that_disagrees_with_its_manifest(dataset_copy: Path,
                                                                    keys: dict[str, tuple[Path, Path]],
                                                                    cli: Cli) -> None:
    flip_byte(dataset_copy.parent / "data.parquet")
    code, _, err = cli("attest", "sign", "--key", keys["signer"][0], dataset_copy)
    assert code == 1 and "refusing to sign" in err and "data.parquet" in err
    assert not (dataset_copy.parent / "attestation.intoto.jsonl").exists()


def test_usage_errors(dataset_copy: Path, keys: dict[str, tuple[Path, Path]], tmp_path: Path, cli: Cli) -> None:
    private, public = keys["signer"]
    cases = [
        (("attest", "verify", dataset_copy), "--pub"),
        (("attest", "verify", "--pub", private, dataset_copy), "expected a PEM ed25519 public key"),
        (("attest", "sign", "--key", public, dataset_copy), "expected an unencrypted PEM ed25519 private key"),
        (("attest", "verify", "--pub", public, tmp_path / "nope"), "no such file or directory"),
        (("attest", "sign", "--key", tmp_path / "missing.pem", dataset_copy), "missing.pem"),
        (("attest", "verify", "--pub", public, "--policy", public, dataset_copy), "not allowed with"),
    ]
    for args, needle in cases:
        code, out, err = cli(*args)
        assert code == 2 and out == "" and needle in err, (args, err)
        assert err.count("\n") == 1, err


def test_keygen_never_overwrites(keys: dict[str, tuple[Path, Path]], cli: Cli) -> None:
    private, _ = keys["signer"]
    before = private.read_bytes()
    code, _, err = cli("attest", "keygen", "--out", private.parent)
    assert code == 1 and "already exists" in err and private.read_bytes() == before
    assert private.stat().st_mode & 0o077 == 0  # the private key is readable by its owner only


# --- model directories -----------------------------------------------------------------------------------

def test_model_directory_added_removed_changed(tmp_path: Path, keys: dict[str, tuple[Path, Path]], cli: Cli) -> None:
    private, public = keys["signer"]
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"\x08\x01onnx")
    (model / "sub" / "notes.txt").write_text("n")
    assert cli("attest", "sign", "--key", private, model)[0] == 0
    assert cli("attest", "verify", "--pub", public, model)[0] == 0
    (model / "extra.bin").write_bytes(b"x")
    code, _, err = cli("attest", "verify", "--pub", public, model)
    assert code == 1 and "extra.bin is not signed" in err
    (model / "extra.bin").unlink()
    (model / "sub" / "notes.txt").unlink()
    code, _, err = cli("attest", "verify", "--pub", public, model)
    assert code == 1 and "sub/notes.txt is missing" in err
    (model / "sub" / "notes.txt").write_text("N")
    code, _, err = cli("attest", "verify", "--pub", public, model)
    assert code == 1 and "sub/notes.txt sha256" in err
    (model / "link").symlink_to(model / "model.onnx")
    code, _, err = cli("attest", "sign", "--key", private, model)
    assert code == 2 and "expected a regular file" in err


# --- trust policy ----------------------------------------------------------------------------------------

def test_policy_parsing(tmp_path: Path, keys: dict[str, tuple[Path, Path]], dataset_copy: Path) -> None:
    private, public = keys["signer"]
    for suffix in ("toml", "json"):
        policy = load_policy(_policy(tmp_path, public, suffix=suffix))
        assert [k.name for k in policy.keys.values()] == ["signer"]
    relative = tmp_path / "rel" / "policy.toml"
    relative.parent.mkdir()
    shutil.copy(public, relative.parent / "k.pem")
    relative.write_text('[[keys]]\nname = "r"\npublic_key = "k.pem"\nallow = ["model"]\n')
    assert next(iter(load_policy(relative).keys.values())).allow == frozenset({"model"})
    hostile = {
        "allow.toml": ('[[keys]]\nname = "a"\npublic_key = "k.pem"\nallow = "dataset"\n', "keys.0.allow"),
        "kind.toml": ('[[keys]]\nname = "a"\npublic_key = "k.pem"\nallow = ["wheel"]\n', "keys.0.allow"),
        "extra.toml": ('[[keys]]\nname = "a"\npublic_key = "k.pem"\nallow = ["model"]\nadmin = true\n', "admin"),
        "empty.toml": ("keys = []\n", "keys"),
        "syntax.toml": ("[[keys]\n", "trust policy"),
        "policy.yaml": ("keys: []\n", "expected a .json or .toml file"),
        "dup.toml": ('[[keys]]\nname = "a"\npublic_key = "k.pem"\nallow = ["model"]\n'
                     '[[keys]]\nname = "b"\npublic_key = "k.pem"\nallow = ["dataset"]\n', "repeats the key"),
        "nokey.toml": ('[[keys]]\nname = "a"\npublic_key = "absent.pem"\nallow = ["model"]\n', "absent.pem"),
    }
    for name, (text, needle) in hostile.items():
        path = relative.parent / name
        path.write_text(text)
        with pytest.raises(AttestationError, match=needle.replace(".", r"\.")):
            load_policy(path)
    # a key the policy allows for models only does not vouch for a dataset
    from feature_platform.attest.attestation import sign_path

    sign_path(dataset_copy, private)
    verdict = verify(dataset_artifact(dataset_copy), load_policy(relative).keys)
    assert verdict.outcome == "unknown_key" and "not a dataset" in verdict.detail
    assert verify(dataset_artifact(dataset_copy), {k.keyid: k for k in [trusted_key(public)]}).ok


# --- promotion under a policy ----------------------------------------------------------------------------

def _signed_case(tmp_path: Path, trained: Any, golden_dataset: Path, data_root: Path, model_key: str,
                 dataset_key: Path | None, model_key_path: Path | None, n: int) -> tuple[Any, Path]:
    from feature_platform.attest.attestation import sign_path

    ds = tmp_path / f"ds{n}" / DATASET_ID
    shutil.copytree(golden_dataset, ds)
    if dataset_key is not None:
        sign_path(ds / "manifest.json", dataset_key)
    model_dir = make_model_dir(tmp_path / "models", trained, ds, f"train_{model_key}_{n}", model_key)
    logged = log_training(model_dir, data_root=data_root, signing_key=model_key_path)
    return logged, ds


@pytest.mark.parametrize(("fault", "failed"), [
    ("unsigned_model", {"signature[model]"}),
    ("unsigned_dataset", {"signature[dataset]"}),
    ("unknown_key", {"signature[model]", "signature[dataset]"}),
    ("changed_data_byte", {"signature[dataset]", "verify_dataset"}),
    ("changed_registry_file", {"signature[model]"}),
    ("policy_unreadable", {"trust_policy"}),
])
def test_policy_refusals_leave_production(fault: str, failed: set[str], tmp_path: Path, trained: Any,
                                          golden_dataset: Path, data_root: Path,
                                          keys: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch,
                                          cli: Cli) -> None:
    private, public = keys["signer"]
    stranger = keys["stranger"][0]
    model_key = f"m_sig_{fault}"
    monkeypatch.setenv("FP_TRUST_POLICY", str(_policy(tmp_path, public)))
    monkeypatch.setenv("FP_DATA_ROOT", str(data_root))
    good, _ = _signed_case(tmp_path, trained, golden_dataset, data_root, model_key, private, private, 1)
    first = promote(model_key, good.version, data_root=data_root)
    assert first.promoted, first.decision.reasons
    assert set(first.decision.signatures) == {"model", "dataset"}
    assert all(v["ok"] for v in first.decision.signatures.values())

    ds_key = None if fault == "unsigned_dataset" else stranger if fault == "unknown_key" else private
    m_key = None if fault == "unsigned_model" else stranger if fault == "unknown_key" else private
    bad, ds = _signed_case(tmp_path, trained, golden_dataset, data_root, model_key, ds_key, m_key, 2)
    if fault == "changed_data_byte":
        flip_byte(ds / "data.parquet")
        code, _, err = cli("attest", "verify", "--pub", public, ds / "manifest.json")
        assert code == 1 and "data.parquet" in err
    elif fault == "changed_registry_file":  # a file no other promotion check reads: only the signature sees it
        path = artifact_path(data_root, model_key, bad.version, "evaluation.json")
        path.write_text(path.read_text().replace("1.2", "9.9"))
    elif fault == "policy_unreadable":
        monkeypatch.setenv("FP_TRUST_POLICY", str(tmp_path / "missing_policy.toml"))
    result = promote(model_key, bad.version, data_root=data_root)
    assert not result.promoted
    assert {c.name for c in result.decision.checks if not c.passed} == failed
    assert result.decision.signature_refused
    assert production_version(data_root, model_key) == "1"
    assert len(production_history(data_root, model_key)) == 1
    code, out, _ = cli("promote", "--model-key", model_key, "--version", bad.version, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["promoted"] is False and set(doc["reasons"]) and doc["previous_version"] == "1"
    assert {r.split(":")[0] for r in doc["reasons"]} == failed
    assert production_version(data_root, model_key) == "1"


def test_signed_chain_promotes_and_lineage_shows_every_signature(tmp_path: Path, trained: Any,
                                                                 golden_dataset: Path, data_root: Path,
                                                                 keys: dict[str, tuple[Path, Path]],
                                                                 monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    private, public = keys["signer"]
    logged, ds = _signed_case(tmp_path, trained, golden_dataset, data_root, "m_sig_chain", private, private, 1)
    monkeypatch.setenv("FP_TRUST_POLICY", str(_policy(tmp_path, public, suffix="json")))
    monkeypatch.setenv("FP_DATA_ROOT", str(data_root))
    assert promote("m_sig_chain", logged.version, data_root=data_root).promoted
    report = lineage("m_sig_chain", alias=PRODUCTION, data_root=data_root)
    assert report.ok, report.render()
    assert all(report.signature(link) == "verified" for link in report.links)
    assert {"signature[model]", "signature[dataset]"} <= {link.name for link in report.links}
    code, out, _ = cli("lineage", "--model-key", "m_sig_chain")
    assert code == 0 and "signatures verified on every link" in out and "[dataset signature: verified]" in out

    flip_byte(ds / "data.parquet")
    broken = lineage("m_sig_chain", alias=PRODUCTION, data_root=data_root)
    assert not broken.ok
    dataset_links = [link for link in broken.links if link.target == "dataset"]
    assert dataset_links and all(broken.signature(link) == "changed" for link in dataset_links)
    assert all(broken.signature(link) == "verified" for link in broken.links if link.target == "model")
    # rollback under the policy re-checks signatures too
    assert "signature[dataset]" in {c.name for c in rollback("m_sig_chain", logged.version,
                                                             data_root=data_root).decision.checks if not c.passed}


def test_without_policy_unsigned_still_promotes(tmp_path: Path, trained: Any, golden_dataset: Path,
                                                data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FP_TRUST_POLICY", raising=False)
    logged, _ = _signed_case(tmp_path, trained, golden_dataset, data_root, "m_sig_none", None, None, 1)
    result = promote("m_sig_none", logged.version, data_root=data_root)
    assert result.promoted and result.decision.signatures == {}
    assert not any(c.name.startswith("signature") for c in result.decision.checks)
    unsigned = lineage("m_sig_none", version=1, data_root=data_root)
    assert all(unsigned.signature(link) is None for link in unsigned.links)


# --- Dagster helpers -------------------------------------------------------------------------------------

def test_asset_signing_follows_fp_signing_key(dataset_copy: Path, keys: dict[str, tuple[Path, Path]],
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FP_SIGNING_KEY", raising=False)
    assert sign_if_configured(dataset_copy) == {"signed": False}
    assert not (dataset_copy.parent / "attestation.intoto.jsonl").exists()
    monkeypatch.setenv("FP_SIGNING_KEY", str(keys["signer"][0]))
    assert sign_if_configured(dataset_copy)["signed"] is True
    assert verify(dataset_artifact(dataset_copy), {(k := trusted_key(keys["signer"][1])).keyid: k}).ok
    monkeypatch.setenv("FP_SIGNING_KEY", str(tmp_path / "absent.pem"))
    with pytest.raises(dg.Failure) as failure:
        sign_if_configured(dataset_copy)
    assert failure.value.allow_retries is False and "absent.pem" in str(failure.value.description)
    meta = signature_metadata({"model": {"ok": True}, "dataset": {"ok": False}})
    assert meta["signatures_verified"] is False
    assert signature_metadata({}) == {}
