"""Sanity report: real PNGs from real simulator output; empty or mis-shaped input fails clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feature_platform.datasets.tensor_report import write_sanity_report
from feature_platform.simulators import get_simulator, simulate_range

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["var", "regime_switching"])
def test_report_writes_valid_pngs_and_summary(name: str, tmp_path: Path) -> None:
    batch = simulate_range(name, 1, 0, 40, 10, 8)
    spec = get_simulator(name).spec
    paths = write_sanity_report(batch.theta.astype(np.float32), batch.irfs, spec, tmp_path / "report",
                                max_irf_samples=5)
    assert [p.name for p in paths] == ["theta_hist.png", "irf_grid.png", "sanity_summary.md"]
    for png in paths[:2]:
        data = png.read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 10_000
    text = paths[2].read_text()
    assert f"# Sanity report: {name}" in text and "| rho |" in text
    assert "samples: 40" in text and "non-finite irf values: 0" in text
    assert "|irf| at H / peak |irf| per sample: median 0." in text  # stable models decay


def test_report_counts_out_of_bounds(tmp_path: Path) -> None:
    batch = simulate_range("var", 1, 0, 10, 5, 2)
    theta = batch.theta.copy()
    theta[:3, 0] = 5.0  # rho declared in [0.1, 0.95]
    text = write_sanity_report(theta, batch.irfs, get_simulator("var").spec, tmp_path)[2].read_text()
    assert "| rho | 0.1 | 0.95 | " in text and " | 3 | 0 |" in text


def test_report_rejects_empty_and_misshaped(tmp_path: Path) -> None:
    spec = get_simulator("var").spec
    with pytest.raises(ValueError, match="sanity report: no samples"):
        write_sanity_report(np.zeros((0, 9)), np.zeros((0, 3, 5, 3)), spec, tmp_path)
    with pytest.raises(ValueError, match=r"theta shape expected \(n, 9\), got \(4, 2\)"):
        write_sanity_report(np.zeros((4, 2)), np.zeros((4, 3, 5, 3)), spec, tmp_path)
    with pytest.raises(ValueError, match=r"irfs shape expected \(n, 3, H\+1, 3\)"):
        write_sanity_report(np.zeros((4, 9)), np.zeros((4, 3, 5)), spec, tmp_path)
    assert not list(tmp_path.iterdir())
