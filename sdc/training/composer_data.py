"""Training data for the learned composer: real partial decodes of the training photos.

A receiver that decodes only some levels gets, in the missing regions, the
hyperprior's mean pushed through g_s. The composer learns to complete exactly
that, so its data is made by the shipped (frozen) codec itself:

1. each photo gets a random region map at latent resolution: a few random
   ellipses and rectangles on L1, L2 and L3 ("objects"), the rest "other";
2. it is encoded once, with random qualities per level;
3. it is decoded with L1, L1+L2 and L1+L2+L3 (and, for some photos, with no
   level at all: the hyperprior alone); each decode is one sample.

A sample is (original, partial decode, missing cells). The files are one
``.npz`` per photo (uint8 and bool arrays only: read with ``allow_pickle=False``).

    python -m sdc.training.composer_data --images ../shared/data/train --out DIR [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from sdc.levels import LEVELS

SUBSETS: tuple[tuple[str, ...], ...] = (("L1",), ("L1", "L2"), ("L1", "L2", "L3"))
SOURCE = "source.json"
HYPERPRIOR_ONLY_SHARE = 0.15  # photos that also get a decode with no level at all


def random_region_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(h, w) uint8 LEVELS indexes: 1-8 blobs (ellipses or rectangles) on L1..L3 over "other".

    Blob sizes span from a few cells to most of the picture, so that holes cover
    from a sliver to nearly everything, as real analyses give."""
    h, w = shape
    gmap = np.full(shape, LEVELS.index("other"), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, 9))):
        level = int(rng.integers(0, 3))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.5, max(1.0, h / 2)), rng.uniform(0.5, max(1.0, w / 2))
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        # a more important level is never overwritten by a later, less important blob
        gmap[inside] = np.minimum(gmap[inside], level)
    return gmap


def partial_decodes(codec, rgb: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The samples of one photo: {"original", "partial" (k, H, W, 3), "missing_cells" (k, h, w)}."""
    from dataclasses import replace

    from sdc.geometry import latent_shape

    height, width = rgb.shape[:2]
    gmap = random_region_map(latent_shape(height, width), rng)
    qualities = {lv: int(rng.integers(1, codec.num_qualities + 1)) for lv in LEVELS}
    coded = codec.encode(rgb, gmap, qualities)
    subsets = list(SUBSETS) + ([()] if rng.random() < HYPERPRIOR_ONLY_SHARE else [])
    partial, missing = [], []
    for subset in subsets:
        cells_missing = ~np.isin(gmap, [LEVELS.index(lv) for lv in subset])
        if not cells_missing.any():
            continue  # nothing to complete
        groups = {lv: data for lv, data in coded.groups.items() if lv in subset}
        partial.append(codec.decode(replace(coded, groups=groups)))
        missing.append(cells_missing)
    return {"original": rgb, "partial": np.stack(partial), "missing_cells": np.stack(missing)}


def _make(job: tuple[Path, Path, int]) -> str:
    path, out, seed = job
    from PIL import Image

    from sdc.models.codec import default_codec

    target = out / f"{path.stem}.npz"
    if target.exists():
        return target.name
    rgb = np.asarray(Image.open(path).convert("RGB"))
    sample = partial_decodes(default_codec(), rgb, np.random.default_rng(seed))
    tmp = target.with_suffix(".tmp.npz")
    np.savez(tmp, **sample)
    os.replace(tmp, target)
    return target.name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of training photos")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz samples")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(p, args.out, args.seed * 100_003 + i) for i, p in enumerate(paths)]
    # what the samples were made from, for the trained composer's manifest
    (args.out / SOURCE).write_text(json.dumps({"images": str(args.images), "photos": len(paths), "seed": args.seed}))
    os.environ.setdefault("SDC_THREADS", "1")
    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers) as pool:
            for i, name in enumerate(pool.imap_unordered(_make, jobs, chunksize=4)):
                if i % 50 == 0:
                    print(f"{i}/{len(jobs)} {name}", file=sys.stderr, flush=True)
    else:
        for job in jobs:
            _make(job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
