"""`fp dataset build|verify|report` on Zarr tensor datasets, through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from feature_platform.datasets.tensor_verify import verify_tensor_dataset
from feature_platform.datasets.zarr_store import load_tensor_dataset
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
TINY = ["--samples", "40", "--seed", "3", "--T", "16", "--H", "6", "--chunk-samples", "10"]


def build_args(out: Path, dataset_id: str = "sim", *extra: str) -> list[str]:
    return ["dataset", "build", "--source", "simulator", "--format", "zarr", "--out-dir", str(out),
            "--dataset-id", dataset_id, *TINY, *extra]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny tensor dataset built through the CLI (inline executor); tests copy it before tampering."""
    from feature_platform.cli import main

    out = tmp_path_factory.mktemp("tensor_cli")
    assert main(build_args(out, "sim", "--executor", "inline", "--dataset-version", "v1")) == 0
    return out / "sim"


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "datasets" / built.name
    shutil.copytree(built, target)
    return target


def test_build_prints_real_compression_and_verifies(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli(*build_args(tmp_path, "demo", "--executor", "inline", "-v"))
    assert code == 0, err
    assert "built demo (40 samples, zarr" in out and "manifest digest:" in out and "merkle root:" in out
    assert "compression:     lossless" in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip().split(" ")[0] in
            ("trajectories", "irfs", "shocks", "theta")}
    assert set(rows) == {"trajectories", "irfs", "shocks", "theta"}
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    for name, line in rows.items():
        assert f"{manifest['arrays'][name]['compression_ratio']:.3f}x" in line  # the manifest's ratio, as measured
    assert "wrote 40/40 samples" in err  # -v progress
    code, out, _ = cli("dataset", "verify", "--path", tmp_path / "demo" / "manifest.json")
    assert code == 0 and out.startswith("OK: demo:")


def test_json_output_and_tensor_verify_options(cli: Cli, built: Path) -> None:
    manifest = built / "manifest.json"
    code, out, _ = cli("dataset", "verify", "--path", manifest, "--json", "--reproduce", "3", "--reproduce-seed", "1")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert sum(c["name"] == "reproduce_sample" for c in report["checks"]) == 3
    code, out, _ = cli("dataset", "verify", "--path", manifest, "--samples", "10:20", "-v")
    assert code == 0
    hashed = {line.split("[")[1].split("]")[0] for line in out.splitlines() if line.startswith("PASS file_sha256[")}
    assert hashed and all(p.endswith("json") or "/c/1" in p for p in hashed)  # only chunk 1 (samples 10..19) read


def test_deep_verify_recounts_values_the_default_takes_from_the_manifest(cli: Cli, copy: Path) -> None:
    from tests.datasets.test_tensor_verify import nan_chunk_resealed

    nan_chunk_resealed(copy)  # a forger rewrote a chunk with a NaN and resealed every hash and the root
    manifest = copy / "manifest.json"
    code, out, _ = cli("dataset", "verify", "--path", manifest)
    assert code == 0, out  # the hashes bind the bytes, and the manifest still declares 0 NaN
    code, out, _ = cli("dataset", "verify", "--path", manifest, "--deep")
    assert code == 1 and "failed: nan_inf_counts at trajectories" in out


def test_build_json_matches_the_manifest(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli(*build_args(tmp_path, "j", "--executor", "inline", "--json",
                                     "--split", "extrapolation_slice:rho>=0.7"))
    assert code == 0, err
    summary = json.loads(out)
    manifest = json.loads((tmp_path / "j" / "manifest.json").read_text())
    assert summary["samples"] == 40 and summary["merkle_root"] == manifest["merkle_root"]
    assert summary["split_algorithm"] == "extrapolation_slice" and sum(summary["splits"].values()) == 40
    assert {n: a["compression_ratio"] for n, a in summary["arrays"].items()} == {
        n: round(a["compression_ratio"], 4) for n, a in manifest["arrays"].items()}
    assert verify_tensor_dataset(tmp_path / "j" / "manifest.json").ok


def test_flipped_byte_fails_and_names_the_chunk(cli: Cli, copy: Path) -> None:
    chunk = copy / "data.zarr" / "trajectories" / "c" / "2" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    code, out, _ = cli("dataset", "verify", "--path", copy / "manifest.json")
    assert code == 1
    assert "FAIL file_sha256[data.zarr/trajectories/c/2/0/0]" in out
    assert out.splitlines()[-1].startswith("FAILED: sim:") and "at data.zarr/trajectories/c/2/0/0" in out
    # a range that does not touch chunk 2 verifies without reading it; one that does, fails
    assert cli("dataset", "verify", "--path", copy / "manifest.json", "--samples", "0:20")[0] == 0
    assert cli("dataset", "verify", "--path", copy / "manifest.json", "--samples", "15:25")[0] == 1


@pytest.mark.parametrize("tamper", ["delete_chunk", "extra_chunk", "edit_zarr_json"])
def test_store_tampering_exits_one(cli: Cli, copy: Path, tamper: str) -> None:
    store = copy / "data.zarr"
    if tamper == "delete_chunk":
        (store / "shocks" / "c" / "1" / "0" / "0").unlink()
        named = "data.zarr/shocks/c/1/0/0"
    elif tamper == "extra_chunk":
        shutil.copy(store / "theta" / "c" / "0" / "0", store / "theta" / "c" / "0" / "1")
        named = "data.zarr/theta/c/0/1"
    else:
        meta = store / "irfs" / "zarr.json"
        doc = json.loads(meta.read_text())
        doc["fill_value"] = 1.0
        meta.write_text(json.dumps(doc))
        named = "data.zarr/irfs/zarr.json"
    code, out, _ = cli("dataset", "verify", "--path", copy / "manifest.json", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    failed = [c for c in report["checks"] if not c["passed"]]
    assert any(named in f"{c['target']} {c['actual']} {c['detail']}" for c in failed), failed


def test_existing_dataset_needs_force(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    args = build_args(tmp_path, "f", "--executor", "inline", "--dataset-version", "v1", "--json")
    code, out, _ = cli(*args)
    first = json.loads(out)["manifest_digest"]
    code, _, err = cli(*args)
    assert code == 1 and "already exists" in err and "--force" in err
    code, out, _ = cli(*args, "--seed", "4", "--force")  # argparse: the later --seed wins
    assert code == 0 and json.loads(out)["manifest_digest"] != first
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no staging directory left behind
    assert verify_tensor_dataset(tmp_path / "f" / "manifest.json").ok


def test_two_workers_write_the_same_bytes_as_one(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # created_at is part of the digest: pin it
    digests = []
    for workers in ("1", "2"):
        code, out, err = cli(*build_args(tmp_path / workers, "w", "--executor", "process", "--workers", workers,
                                         "--dataset-version", "v1", "--json"))
        assert code == 0, err
        digests.append(json.loads(out)["manifest_digest"])
    assert digests[0] == digests[1]
    one = load_tensor_dataset(tmp_path / "1" / "w")
    two = load_tensor_dataset(tmp_path / "2" / "w")
    assert all(one[k].tobytes() == two[k].tobytes() for k in one)


def test_ray_executor_writes_the_same_bytes(cli: Cli, built: Path, tmp_path: Path, ray_local: str | None) -> None:
    code, out, err = cli(*build_args(tmp_path, "sim", "--executor", "ray", "--workers", "2",
                                     "--dataset-version", "v1", "--json"))
    assert code == 0, err
    ours = json.loads((built / "manifest.json").read_text())
    theirs = json.loads((tmp_path / "sim" / "manifest.json").read_text())
    assert theirs["merkle_root"] == ours["merkle_root"] and json.loads(out)["executor"] == "ray"


def test_sharded_store_reads_back_the_same_samples(cli: Cli, built: Path, tmp_path: Path) -> None:
    code, out, err = cli(*build_args(tmp_path, "sharded", "--executor", "inline", "--inner-chunk-samples", "2"))
    assert code == 0, err
    assert "(sharded, inner chunks of 2)" in out
    manifest = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert manifest["arrays"]["trajectories"]["shard_shape"][0] == 10
    assert len(manifest["arrays"]["trajectories"]["chunks"]) == 4  # still one file per 10 samples
    plain, sharded = load_tensor_dataset(built), load_tensor_dataset(tmp_path / "sharded")
    assert all(plain[k].tobytes() == sharded[k].tobytes() for k in plain)
    assert cli("dataset", "verify", "--path", tmp_path / "sharded" / "manifest.json", "--reproduce", "2")[0] == 0


def test_bitround_is_an_explicit_lossy_opt_in(cli: Cli, built: Path, tmp_path: Path) -> None:
    code, out, err = cli(*build_args(tmp_path, "lossy", "--executor", "inline", "--bitround-keepbits", "10"))
    assert code == 0, err
    assert "LOSSY bitround keepbits=10" in out
    exact = load_tensor_dataset(built, arrays=["trajectories"])["trajectories"]
    rounded = load_tensor_dataset(tmp_path / "lossy", arrays=["trajectories"])["trajectories"]
    assert not (exact == rounded).all()
    assert (abs(rounded - exact) <= 2.0**-10 * abs(exact)).all()


def test_report_renders_pngs_and_refuses_a_tampered_dataset(cli: Cli, copy: Path, tmp_path: Path) -> None:
    code, out, err = cli("dataset", "report", "--path", copy / "manifest.json", "--out", tmp_path / "rep",
                         "--max-samples", "25", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["samples_read"] == 25
    pngs = [Path(p) for p in result["files"] if p.endswith(".png")]
    assert len(pngs) == 2 and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    (copy / "data.zarr" / "theta" / "c" / "3" / "0").write_bytes(b"not a chunk")
    code, _, err = cli("dataset", "report", "--path", copy / "manifest.json", "--out", tmp_path / "rep2")
    assert code == 1 and "data.zarr/theta/c/3/0" in err and not (tmp_path / "rep2").exists()


SIM = ["dataset", "build", "--source", "simulator", "--out-dir", "o", "--dataset-id", "x"]


@pytest.mark.parametrize("args", [
    [*SIM, "--samples", "40"],  # --format defaults to parquet
    [*SIM, "--format", "parquet", "--samples", "40"],
    [*SIM, "--format", "zarr"],  # no --samples
    [*SIM, "--format", "zarr", "--samples", "0"],
    [*SIM, "--format", "zarr", "--samples", "40", "--rows", "10"],
    [*SIM, "--format", "zarr", "--samples", "40", "--simulator", "nope"],
    [*SIM, "--format", "zarr", "--samples", "40", "--split", "bogus"],
    [*SIM, "--format", "zarr", "--samples", "40", "--split", "extrapolation_slice:nope>=0.9"],
    [*SIM, "--format", "zarr", "--samples", "40", "--bitround-keepbits", "23"],
    [*SIM, "--format", "zarr", "--samples", "40", "--executor", "threads"],
    [*SIM, "--format", "zarr", "--samples", "40", "--workers", "0"],
    [*SIM, "--format", "zarr", "--samples", "40", "--dataset-version", "a/b"],
    [*SIM, "--format", "zarr", "--samples", "40", "--chunk-samples", "10", "--inner-chunk-samples", "3"],
    ["dataset", "build", "--source", "synthetic", "--format", "zarr", "--out-dir", "o", "--dataset-id", "x"],
    ["dataset", "build", "--source", "synthetic", "--out-dir", "o", "--dataset-id", "x", "--samples", "4"],
    ["dataset", "verify", "--path", "m.json", "--samples", "5:2"],
    ["dataset", "verify", "--path", "m.json", "--reproduce", "-1"],
    ["dataset", "report", "--path", "m.json"],  # no --out
])
def test_bad_arguments_exit_two_and_write_nothing(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*args)
    assert code == 2 and err.strip()
    assert list(tmp_path.iterdir()) == []


def test_tensor_options_on_a_parquet_dataset_are_a_usage_error(cli: Cli, dataset: Path) -> None:
    code, _, err = cli("dataset", "verify", "--path", dataset / "manifest.json", "--reproduce", "2")
    assert code == 2 and "zarr" in err
    code, _, err = cli("dataset", "report", "--path", dataset / "manifest.json", "--out", dataset.parent / "r")
    assert code == 2 and not (dataset.parent / "r").exists()
    assert cli("dataset", "verify", "--path", dataset / "manifest.json")[0] == 0  # the parquet path is unchanged


@pytest.mark.parametrize("command", [["dataset", "build"], ["dataset", "verify"], ["dataset", "report"]])
def test_help_mentions_the_tensor_options(cli: Cli, command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0 and "zarr" in out
