"""Sanity report for a tensor dataset: parameter histograms against declared bounds, sample IRFs, summary.

A glance at these catches the failures checksums cannot: parameters piled at a bound, a simulator
drawing outside its declared range, or impulse responses that explode instead of decaying. The CLI
(`fp dataset report`) and the Dagster `tensor_sanity_report` asset both call ``sanity_report_of``,
so they read the same evenly spaced samples and draw the same pictures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feature_platform.simulators.base import N_OBSERVABLES, SimulatorSpec

THETA_HIST = "theta_hist.png"
IRF_GRID = "irf_grid.png"
SUMMARY = "sanity_summary.md"


def _check(theta: np.ndarray, irfs: np.ndarray, spec: SimulatorSpec) -> None:
    if theta.ndim != 2 or theta.shape[1] != spec.n_params:
        raise ValueError(f"sanity report: theta shape expected (n, {spec.n_params}), got {theta.shape}")
    if irfs.ndim != 4 or irfs.shape[1] != spec.n_shocks or irfs.shape[3] != N_OBSERVABLES:
        raise ValueError(f"sanity report: irfs shape expected (n, {spec.n_shocks}, H+1, {N_OBSERVABLES}), "
                         f"got {irfs.shape}")
    if theta.shape[0] == 0 or irfs.shape[0] == 0:
        raise ValueError(f"sanity report: no samples (theta has {theta.shape[0]} rows, irfs {irfs.shape[0]})")


def write_sanity_report(theta: np.ndarray, irfs: np.ndarray, spec: SimulatorSpec, out_dir: Path, *,
                        max_irf_samples: int = 16) -> list[Path]:
    """Write ``theta_hist.png``, ``irf_grid.png`` and ``sanity_summary.md`` into ``out_dir``; return their paths."""
    _check(theta, irfs, spec)
    if max_irf_samples < 1:
        raise ValueError(f"sanity report: max_irf_samples must be >= 1, got {max_irf_samples}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    theta = np.asarray(theta, dtype=np.float64)
    irfs = np.asarray(irfs, dtype=np.float64)
    paths = [out_dir / THETA_HIST, out_dir / IRF_GRID, out_dir / SUMMARY]

    cols = min(3, spec.n_params)
    rows = -(-spec.n_params // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for k, var in enumerate(spec.parameters):
        ax = axes[k // cols][k % cols]
        values = theta[:, k][np.isfinite(theta[:, k])]
        ax.hist(values, bins=30, color="#4878a8")
        for bound in (var.lower, var.upper):
            ax.axvline(bound, color="#c0392b", linestyle="--", linewidth=1)
        ax.set_title(f"{var.name} [{var.lower:g}, {var.upper:g}]", fontsize=9)
    for k in range(spec.n_params, rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.suptitle(f"{spec.name} v{spec.version}: theta, n={theta.shape[0]} (dashed: declared bounds)")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=80)
    plt.close(fig)

    shown = irfs[: min(max_irf_samples, irfs.shape[0])]
    horizon = np.arange(irfs.shape[2])
    fig, axes = plt.subplots(spec.n_shocks, N_OBSERVABLES, figsize=(3.6 * N_OBSERVABLES, 2.4 * spec.n_shocks),
                             squeeze=False, sharex=True)
    for s, shock in enumerate(spec.shocks):
        for k, obs in enumerate(spec.observables):
            ax = axes[s][k]
            ax.plot(horizon, shown[:, s, :, k].T, linewidth=0.8, alpha=0.7)
            ax.axhline(0.0, color="black", linewidth=0.5)
            ax.set_title(f"{shock.name} → {obs.name}", fontsize=9)
    fig.suptitle(f"{spec.name}: impulse responses of {shown.shape[0]} samples (horizon 0..{irfs.shape[2] - 1})")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=80)
    plt.close(fig)

    paths[2].write_text(_summary(theta, irfs, spec), encoding="utf-8")
    return paths


def _summary(theta: np.ndarray, irfs: np.ndarray, spec: SimulatorSpec) -> str:
    lower, upper = spec.bounds()
    outside = ((theta < lower) | (theta > upper)).sum(axis=0)
    lines = [f"# Sanity report: {spec.name} v{spec.version}", "",
             f"samples: {theta.shape[0]}, shocks: {spec.n_shocks}, irf horizon: {irfs.shape[2] - 1}", "",
             "| parameter | lower | upper | min | mean | max | outside bounds | non-finite |",
             "|---|---|---|---|---|---|---|---|"]
    for k, var in enumerate(spec.parameters):
        col = theta[:, k]
        finite = col[np.isfinite(col)]
        stats = (f"{finite.min():.4g} | {finite.mean():.4g} | {finite.max():.4g}" if finite.size else "- | - | -")
        lines.append(f"| {var.name} | {var.lower:g} | {var.upper:g} | {stats} | {int(outside[k])} | "
                     f"{int((~np.isfinite(col)).sum())} |")
    peak = np.abs(irfs).max(axis=2)  # (n, S, 3)
    last = np.abs(irfs[:, :, -1, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = last.max(axis=(1, 2)) / peak.max(axis=(1, 2))  # near 0: decayed; near 1: not decaying
    lines += ["", "| shock | observable | max abs response | median abs response at H |", "|---|---|---|---|"]
    for s, shock in enumerate(spec.shocks):
        for k, obs in enumerate(spec.observables):
            lines.append(f"| {shock.name} | {obs.name} | {np.nanmax(peak[:, s, k]):.4g} | "
                         f"{np.nanmedian(last[:, s, k]):.4g} |")
    lines += ["", f"non-finite irf values: {int((~np.isfinite(irfs)).sum())}",
              f"|irf| at H / peak |irf| per sample: median {np.nanmedian(ratio):.3g}, max {np.nanmax(ratio):.3g}",
              ""]
    return "\n".join(lines)


DEFAULT_REPORT_SAMPLES = 2_000


def report_indices(n_samples: int, max_samples: int) -> np.ndarray:
    """At most ``max_samples`` indices spread evenly over ``[0, n_samples)``: the same every time, and
    every region of parameter space (and every chunk) is represented."""
    if n_samples <= 0 or max_samples <= 0:
        raise ValueError(f"n_samples and max_samples must be positive, got {n_samples} and {max_samples}")
    return np.unique(np.linspace(0, n_samples - 1, min(n_samples, max_samples)).round().astype(np.int64))


def sanity_report_of(manifest_path: Path | str, out_dir: Path, *,
                     max_samples: int = DEFAULT_REPORT_SAMPLES) -> tuple[int, list[Path]]:
    """Render the sanity report of the dataset at ``manifest_path`` into ``out_dir``.

    Reads trust the store: verify first (the CLI does; in Dagster the blocking checks do).
    Returns the number of samples read and the files written.
    """
    from feature_platform.contracts.safe_read import read_json
    from feature_platform.contracts.tensor_manifest import parse_tensor_manifest
    from feature_platform.datasets.zarr_store import load_tensor_dataset

    path = Path(manifest_path)
    manifest = parse_tensor_manifest(read_json(path), str(path))
    indices = report_indices(manifest.n_samples, max_samples)
    arrays = load_tensor_dataset(path, arrays=["theta", "irfs"], samples=indices)
    info = next(iter(manifest.simulators.values()))
    spec = SimulatorSpec.from_json(info.model_dump(mode="json"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return len(indices), write_sanity_report(arrays["theta"], arrays["irfs"], spec, out_dir)
