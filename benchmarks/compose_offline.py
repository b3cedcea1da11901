"""Offline composer candidates on real partial decodes (the table in sdc/compose/smooth.py).

Each image (samples/astronaut.png and ../shared/data/val/*.png, longer side at
most 768) is encoded with the default analysis, then decoded with L1, L1+L2 and
L1+L2+L3; every decode that leaves a proper partial hole is a case. For each
method: PSNR against the original inside the hole, grid blockiness inside the
hole (mean step across 16 px latent-grid lines / elsewhere; 1.0 = no grid),
PSNR in the 8 px band inside the seam, and milliseconds per image (these
depend on the machine's load).

    nice -n 10 python benchmarks/compose_offline.py   # ~2-3 min on the 2-core dev machine
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdc.compose.smooth import SIGMA, smooth_compose  # noqa: E402

SHARED = REPO.parent / "shared"


def psnr(a, b, where):
    err = ((a.astype(np.float64) - b.astype(np.float64))[where] ** 2).mean()
    return float(10 * np.log10(255.0**2 / err))


def blockiness(img, where, stride=16):
    g = img.astype(np.float32).mean(2)
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    mx, my = where[:, 1:] & where[:, :-1], where[1:] & where[:-1]
    cx = np.arange(dx.shape[1]) % stride == stride - 1
    cy = np.arange(dy.shape[0]) % stride == stride - 1
    on = np.concatenate([dx[:, cx][mx[:, cx]], dy[cy][my[cy]]])
    off = np.concatenate([dx[:, ~cx][mx[:, ~cx]], dy[~cy][my[~cy]]])
    on, off = on.mean() if on.size else 0.0, off.mean() if off.size else 0.0
    return float(on / off) if off > 0 else float("nan")


def band_psnr(img, truth, missing, width=8):
    d = cv2.distanceTransform(missing.astype(np.uint8), cv2.DIST_L2, 5)
    band = missing & (d <= width)
    return psnr(img, truth, band) if band.any() else float("nan")


def cv_inpaint(rgb, missing, flag, scale=4):
    h, w = missing.shape
    small = cv2.resize(rgb, (max(1, w // scale), max(1, h // scale)), interpolation=cv2.INTER_AREA)
    hole = (cv2.resize(missing.astype(np.float32), small.shape[1::-1], interpolation=cv2.INTER_AREA) > 0)
    out = cv2.inpaint(small, hole.astype(np.uint8), 5, flag)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)


def telea_fade(rgb, missing, sigma, fade, scale=4):
    """The smooth composer (Gaussian `sigma`) with, near the seam, the decoded pixels continued
    into the hole by Telea inpainting at 1/`scale` and cross-faded to the low-passed fill with
    weight exp(-distance / fade)."""
    out = smooth_compose(rgb, missing, sigma=sigma).astype(np.float32)
    if missing.all():
        return out
    h, w = missing.shape
    for s in (scale, 1):  # a decoded region thinner than `scale` vanishes at 1/scale: then full resolution
        size = (max(1, w // s), max(1, h // s))
        hole = cv2.resize(missing.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        if not hole.all():
            small = cv2.inpaint(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), hole.astype(np.uint8), 5,
                                cv2.INPAINT_TELEA)
            continued = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
            weight = np.exp(-cv2.distanceTransform(missing.astype(np.uint8), cv2.DIST_L2, 5) / fade)[..., None]
            return weight * continued + (1 - weight) * out
    return out


def flat(rgb, missing):
    out = rgb.copy()
    out[missing] = np.rint(rgb[~missing].mean(0)).astype(np.uint8)
    return out


METHODS = {
    "hyperprior fill as is": lambda rgb, m: rgb,
    "flat mean colour": flat,
    "Telea, 1/4 scale": lambda rgb, m: cv_inpaint(rgb, m, cv2.INPAINT_TELEA),
    "Navier-Stokes, 1/4 scale": lambda rgb, m: cv_inpaint(rgb, m, cv2.INPAINT_NS),
    "Telea, full scale": lambda rgb, m: cv2.inpaint(rgb, m.astype(np.uint8), 5, cv2.INPAINT_TELEA),
    "bilateral filter of fill": lambda rgb, m: cv2.bilateralFilter(rgb, 0, 25, 8),
    "Gaussian sigma 4": lambda rgb, m: smooth_compose(rgb, m, sigma=4),
    "Gaussian sigma 8": lambda rgb, m: smooth_compose(rgb, m, sigma=8),
    "Gaussian sigma 12": lambda rgb, m: smooth_compose(rgb, m, sigma=12),
    "Gaussian 8 + Telea, fade 16": lambda rgb, m: telea_fade(rgb, m, 8, 16),
    "Gaussian 8 + Telea, fade 32": lambda rgb, m: telea_fade(rgb, m, 8, 32),
    "Gaussian 8 + Telea, fade 64": lambda rgb, m: telea_fade(rgb, m, 8, 64),
    "Gaussian 4 + Telea, fade 16": lambda rgb, m: telea_fade(rgb, m, 4, 16),
    "Gaussian 2 + Telea, fade 16": lambda rgb, m: telea_fade(rgb, m, 2, 16),
    "no low-pass, Telea, fade 16": lambda rgb, m: telea_fade(rgb, m, 0, 16),
    "Gaussian 4 + Telea, fade 8": lambda rgb, m: telea_fade(rgb, m, 4, 8),
    "Gaussian 4 + Telea, fade 4": lambda rgb, m: telea_fade(rgb, m, 4, 4),
    f"smooth composer as shipped (Gaussian {SIGMA:g})": smooth_compose,
}


def cases():
    from sdc import pipeline

    paths = [REPO / "samples" / "astronaut.png"] + sorted((SHARED / "data" / "val").glob("*.png"))
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max(im.size) > 768:
                s = 768 / max(im.size)
                im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC)
            truth = np.asarray(im).copy()
        data = pipeline.encode_image(truth, qualities={}).data
        for levels in (("L1",), ("L1", "L2"), ("L1", "L2", "L3")):
            dec = pipeline.decode_sdc(data, levels=levels)
            missing = pipeline.missing_pixel_mask(dec.sdc, dec.decoded_levels)
            if 0 < missing.mean() < 1:
                yield f"{path.stem}:{'+'.join(levels)}", truth, dec.rgb, missing


def main():
    rows = {name: [] for name in METHODS}
    names = []
    for name, truth, fill, missing in cases():
        names.append(name)
        print(f"{name}: {missing.mean():.0%} missing", flush=True)
        for method, fn in METHODS.items():
            t0 = time.perf_counter()
            composed = np.clip(np.rint(fn(fill, missing)), 0, 255).astype(np.uint8)
            ms = 1000 * (time.perf_counter() - t0)
            out = fill.copy()
            out[missing] = composed[missing]
            rows[method].append([psnr(out, truth, missing), blockiness(out, missing),
                                 band_psnr(out, truth, missing), ms])
    print(f"\n{len(names)} cases\n{'method':56s} {'hole PSNR':>9s} {'block':>6s} {'band PSNR':>9s} {'ms':>6s}")
    summary = {}
    for method, vals in rows.items():
        a = np.array(vals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column (blockiness of a flat fill)
            summary[method] = dict(zip(("hole_psnr", "blockiness", "band_psnr", "ms"),
                                       [float(np.nanmean(a[:, i])) for i in range(4)]))
        s = summary[method]
        print(f"{method:56s} {s['hole_psnr']:9.2f} {s['blockiness']:6.2f} {s['band_psnr']:9.2f} {s['ms']:6.0f}")
    out = REPO / "benchmarks" / "results" / "compose_offline.json"
    from sdc.models.codec import default_codec

    weights = default_codec().manifest.get("sha256", "")
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "weights_sha256": weights,
                               "cases": names, "methods": summary}, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
