"""Bjøntegaard delta rate and delta PSNR (VCEG-M33).

``bd_rate(anchor_rate, anchor_q, test_rate, test_q)`` is the average rate
difference of `test` against `anchor` at equal quality, in percent (negative
= `test` needs fewer bits). Each curve's log10(rate) is fitted as a function
of quality, the two fits are integrated over the quality range both curves
cover, and the mean log-rate difference d gives ``100 * (10**d - 1)``.

method="cubic" is the original Bjøntegaard fit (least-squares cubic
polynomial through all points, as in VCEG-M33 and most papers); "pchip" is the
piecewise cubic Hermite interpolation used by later VCEG/JVET common test
conditions, which is better behaved when a curve has many points.

``bd_psnr`` is the dual: mean quality difference at equal rate (fit quality
as a function of log10(rate)).

Only numpy is needed for "cubic"; "pchip" imports scipy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["bd_rate", "bd_psnr"]


def _prepare(rate, quality) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError("rate and quality must be 1-D arrays of the same length")
    if len(r) < 4:
        raise ValueError("Bjøntegaard metrics need at least 4 points per curve")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))) or np.any(r <= 0):
        raise ValueError("rates must be positive and all values finite")
    return r, q


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over [lo, hi] of the curve y(x) fitted through the points."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if method == "cubic":
        poly = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(poly, hi) - np.polyval(poly, lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        if np.any(np.diff(x) <= 0):
            raise ValueError("pchip needs strictly increasing quality values")
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    raise ValueError(f"unknown method {method!r}: expected 'cubic' or 'pchip'")


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if hi <= lo:
        raise ValueError(f"curves do not overlap ({a.min():.3g}..{a.max():.3g} vs {b.min():.3g}..{b.max():.3g})")
    return float(lo), float(hi)


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "cubic") -> float:
    """Percent rate change of `test` vs `anchor` at equal quality (negative = test is better)."""
    ra, qa = _prepare(anchor_rate, anchor_quality)
    rt, qt = _prepare(test_rate, test_quality)
    lo, hi = _overlap(qa, qt)
    ia = _integral(qa, np.log10(ra), lo, hi, method)
    it = _integral(qt, np.log10(rt), lo, hi, method)
    return float((10.0 ** ((it - ia) / (hi - lo)) - 1.0) * 100.0)


def bd_psnr(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "cubic") -> float:
    """Mean quality gain (dB) of `test` vs `anchor` at equal rate (positive = test is better)."""
    ra, qa = _prepare(anchor_rate, anchor_quality)
    rt, qt = _prepare(test_rate, test_quality)
    la, lt = np.log10(ra), np.log10(rt)
    lo, hi = _overlap(la, lt)
    ia = _integral(la, qa, lo, hi, method)
    it = _integral(lt, qt, lo, hi, method)
    return float((it - ia) / (hi - lo))
