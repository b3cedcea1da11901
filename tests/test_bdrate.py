"""Bjøntegaard metrics of benchmarks/bdrate.py on synthetic curves with known answers."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "sdc_bench_bdrate", Path(__file__).resolve().parents[1] / "benchmarks" / "bdrate.py")
bdrate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bdrate)

try:
    import scipy  # noqa: F401  (only the pchip variant needs it)
    METHODS = ["cubic", "pchip"]
except ImportError:
    METHODS = ["cubic"]


def anchor_curve():
    # A plausible image-codec curve: PSNR grows ~ 4.3 dB per doubling of rate, with curvature.
    rate = np.array([0.1, 0.2, 0.35, 0.6, 1.0, 1.6])
    psnr = 24.0 + 5.5 * np.log2(rate / 0.1) - 0.25 * np.log2(rate / 0.1) ** 2
    return rate, psnr


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25, 0.5])
def test_constant_rate_factor(method, factor):
    rate, psnr = anchor_curve()
    got = bdrate.bd_rate(rate, psnr, rate * factor, psnr, method=method)
    assert got == pytest.approx((factor - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_antisymmetric_in_log_domain(method):
    rate, psnr = anchor_curve()
    test_rate = rate * np.array([0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    ab = bdrate.bd_rate(rate, psnr, test_rate, psnr, method=method)
    ba = bdrate.bd_rate(test_rate, psnr, rate, psnr, method=method)
    assert (1 + ab / 100) * (1 + ba / 100) == pytest.approx(1.0, abs=1e-9)
    assert -30 < ab < -5


def test_resampled_curve_matches_analytic_value():
    # Test curve = the anchor's exact cubic law shifted by a 30% rate saving, sampled at other
    # points and over a narrower range: the cubic fit is then exact, so BD-rate is exactly -30%.
    coeffs = [0.002, -0.09, 1.6, -10.0]  # log10(rate) as a cubic in PSNR
    pa = np.linspace(24, 40, 6)
    pt = np.array([27.0, 29.5, 31.0, 33.0, 36.0])
    ra = 10 ** np.polyval(coeffs, pa)
    rt = 0.7 * 10 ** np.polyval(coeffs, pt)
    assert bdrate.bd_rate(ra, pa, rt, pt) == pytest.approx(-30.0, abs=1e-6)
    # points given in any order
    perm = [3, 0, 4, 1, 2]
    assert bdrate.bd_rate(ra[::-1], pa[::-1], rt[perm], pt[perm]) == pytest.approx(-30.0, abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_constant_offset(method):
    rate, psnr = anchor_curve()
    assert bdrate.bd_psnr(rate, psnr, rate, psnr + 1.0, method=method) == pytest.approx(1.0, abs=1e-9)
    assert bdrate.bd_psnr(rate, psnr, rate, psnr - 0.5, method=method) == pytest.approx(-0.5, abs=1e-9)


def test_errors():
    rate, psnr = anchor_curve()
    with pytest.raises(ValueError, match="overlap"):
        bdrate.bd_rate(rate, psnr, rate, psnr + 100)
    with pytest.raises(ValueError, match="4 points"):
        bdrate.bd_rate(rate[:3], psnr[:3], rate, psnr)
    with pytest.raises(ValueError, match="positive"):
        bdrate.bd_rate(rate - 1, psnr, rate, psnr)
    with pytest.raises(ValueError, match="method"):
        bdrate.bd_rate(rate, psnr, rate, psnr, method="linear")
