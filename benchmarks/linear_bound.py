"""How many latent channels the top qualities need: the linear (KLT) bound per 16x16 patch.

    python benchmarks/linear_bound.py [--train-images 300]

y has M values per 16x16 RGB patch (768 pixels' values). The best *linear*
code of that size is the patch KLT (PCA) keeping M components; its PSNR on the
val images, without quantization, is what a linear path (the patch bypass,
``--bypass``) can reach at all, and a yardstick for the nonlinear transforms:
at the top qualities the shipped codec stays below the KLT bound of its own M
(results/rd.json), so neither more rate nor more qualities can lift it past.

The KLT is fitted on every 7th patch of the first `--train-images` training
photos (patch-aligned, no overlap) and evaluated on all patches of the val
photos (mean of per-image PSNR). Writes results/linear_bound.json.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED, git_commit, load_rgb, machine_info, table, val_paths, write_json  # noqa: E402

OUT = RESULTS / "linear_bound.json"
PATCH = 16
COMPONENTS = (96, 144, 192, 256, 320, 384)


def patches(rgb: np.ndarray) -> np.ndarray:
    """(n, 768) float64 rows: the image's non-overlapping 16x16x3 patches in [0, 1]."""
    h, w = rgb.shape[0] // PATCH * PATCH, rgb.shape[1] // PATCH * PATCH
    a = rgb[:h, :w].astype(np.float64) / 255
    return a.reshape(h // PATCH, PATCH, w // PATCH, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(-1, PATCH * PATCH * 3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-images", type=int, default=300)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    train_dir = SHARED / "data" / "train"
    train = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.train_images]
    if not train:
        raise SystemExit(f"no training images in {train_dir}")
    rows = np.concatenate([patches(load_rgb(p))[::7] for p in train])
    mean = rows.mean(0)
    _, basis = np.linalg.eigh(np.cov((rows - mean).T))
    basis = basis[:, ::-1]  # descending variance
    per_image = {k: [] for k in COMPONENTS}
    for path in val_paths():
        x = patches(load_rgb(path)) - mean
        for k in COMPONENTS:
            err = x - (x @ basis[:, :k]) @ basis[:, :k].T
            per_image[k].append(-10 * math.log10(float((err**2).mean())))
    result = {
        "benchmark": "linear_bound", "command": " ".join(["python", "benchmarks/linear_bound.py"] + (argv or sys.argv[1:])),
        "git_commit": git_commit(), "machine": machine_info(),
        "fit": {"images": len(train), "patches": int(rows.shape[0])},
        "klt_psnr": {str(k): float(np.mean(v)) for k, v in per_image.items()},
        "klt_psnr_per_image": {str(k): v for k, v in per_image.items()},
    }
    write_json(args.out, result)
    print(table([[k, f"{PATCH * PATCH * 3 / k:.1f}", f"{np.mean(per_image[k]):.2f}"] for k in COMPONENTS],
                ["components per 16x16 patch", "pixel values per component", "KLT PSNR on val (dB)"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
