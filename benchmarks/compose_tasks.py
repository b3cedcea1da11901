"""Composers on real partial decodes, judged by task models and by a feature distance.

COCO128's photos (never seen in training) are coded with sdc's default analysis
at one quality for every level, then decoded with L1 only and with L1+L2+L3.
Each partial decode is completed by each composer: "none" (the hyperprior fill
as the codec leaves it), "smooth" and "learned". Judged with the task models of
``shared/evalmodels`` (not the analyzer's detector):

- **classification agreement**, L1-only decodes: MobileNetV2's top-1 on the
  completed picture equals its top-1 on the uncompressed photo;
- **detection mAP@[.5:.95]**, L1-L3 decodes: SSD-MobileNet v1 against COCO's boxes;
- **FD-MNv2**: the Fréchet distance (FID's formula) between MobileNetV2's pooled
  features (AvgPool, 1280-d) of the completed pictures and of the originals. It
  is not FID (that is InceptionV3's); with 128 pictures its values compare only
  within one table;
- **paired feature distance**: mean L2 distance between a completed picture's
  pooled features and its original's;
- **decoded pixels changed** (must be 0) and the composer's milliseconds per
  photo, on these photos and on one 768x512 photo (median of 5).

Two references, which use what a receiver of L1 does not have, put the FD-MNv2
and agreement figures on a scale: "all levels" decodes the whole file, and
"original, blurred" fills the holes with the original photo blurred by a
Gaussian of sigma 4 px (that is, with every structure larger than about 10 px
right and only the fine detail lost).

It also writes ``results/compose_grid.jpg``: original, hyperprior fill, smooth
and learned, for L1-only decodes of four photos.

    nice python benchmarks/compose_tasks.py [--limit N] [--quality 5]   # ~6 min on 2 cores
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import common
import task_metrics as M
import task_models as TM
from decoded_cache import cache_root
from icm_methods import load_dataset

OUT = common.RESULTS / "compose_tasks.json"
GRID = common.RESULTS / "compose_grid.jpg"
COMPOSERS = ("none", "smooth", "learned")
SUBSETS = {"L1": ("L1",), "L1-L3": ("L1", "L2", "L3")}
REFERENCES = ("all levels", "original, blurred")
REFERENCE_BLUR = 4.0  # px, sigma of "original, blurred"
POOLED = "MobilenetV2/Logits/AvgPool"


class MobilenetJudge(TM.MobilenetClassifier):
    """MobileNetV2's top-1 and its pooled features from one run (all tensors kept to read AvgPool)."""

    def __init__(self):
        super().__init__(keep_tensors=True)
        details = {d["name"]: d for d in self.model.interpreter.get_tensor_details()}
        self.pooled = details[POOLED]

    def judge(self, rgb: np.ndarray) -> tuple[int, np.ndarray]:
        top1 = self.classify(rgb)
        scale, zero = self.pooled["quantization"]
        raw = self.model.interpreter.get_tensor(self.pooled["index"]).reshape(-1)
        return top1, (raw.astype(np.float64) - zero) * scale


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's formula between two sets of feature rows."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def encoded(image, quality: int, codec_id: str) -> bytes:
    """The photo's .sdc at `quality` with the default analysis (cached by codec and pixels)."""
    import sdc

    path = cache_root() / "compose_tasks" / f"{codec_id}-q{quality}" / f"{Path(image.name).stem}-{image.pixel_hash}.sdc"
    if path.exists():
        return path.read_bytes()
    data = sdc.encode(image.rgb, quality=quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def partial_decode(data: bytes, levels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    from sdc.pipeline import decode_sdc, missing_pixel_mask

    result = decode_sdc(data, levels=levels)
    return result.rgb, missing_pixel_mask(result.sdc, result.decoded_levels)


LEARNED_WEIGHTS: dict = {}  # compose()'s config for "learned" (--composer-weights)


def completed(rgb: np.ndarray, missing: np.ndarray, composer: str) -> tuple[np.ndarray, float]:
    from sdc.compose import compose

    t0 = time.perf_counter()
    out = compose(rgb, missing, composer=composer, config=LEARNED_WEIGHTS if composer == "learned" else None)
    return out, time.perf_counter() - t0


def references(image, data: bytes, rgb: np.ndarray, missing: np.ndarray) -> dict[str, np.ndarray]:
    """The reference pictures of an L1-only decode (see the module docstring)."""
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(image.rgb.astype(np.float32), (REFERENCE_BLUR, REFERENCE_BLUR, 0))
    return {"all levels": partial_decode(data, ("L1", "L2", "L3", "other"))[0],
            "original, blurred": np.where(missing[..., None], np.rint(blurred).astype(np.uint8), rgb)}


def measure(images, quality: int, judge, detector) -> tuple[dict, list]:
    """Per subset and composer: top-1s, features, detections, seconds, changed pixels; and grid rows."""
    from sdc.models.codec import default_codec

    codec_id = default_codec().codec_id.hex()[:16]
    runs = {s: {c: {"top1": [], "features": [], "detections": {}, "seconds": [], "changed": 0, "missing": []}
                for c in COMPOSERS} for s in SUBSETS}
    reference = {"top1": [], "features": []}
    runs["references"] = {r: {"top1": [], "features": []} for r in REFERENCES}
    grid = []
    for n, image in enumerate(images):
        top1, feats = judge.judge(image.rgb)
        reference["top1"].append(top1)
        reference["features"].append(feats)
        data = encoded(image, quality, codec_id)
        for subset, levels in SUBSETS.items():
            rgb, missing = partial_decode(data, levels)
            pictures = {}
            for composer in COMPOSERS:
                out, seconds = completed(rgb, missing, composer)
                pictures[composer] = out
                run = runs[subset][composer]
                run["changed"] += int((out[~missing] != rgb[~missing]).any(axis=-1).sum())
                run["seconds"].append(seconds)
                run["missing"].append(float(missing.mean()))
                if subset == "L1":
                    t, f = judge.judge(out)
                    run["top1"].append(t)
                    run["features"].append(f)
                else:
                    run["detections"][image.id] = detector.detect(out)
            if subset == "L1":
                for name, picture in references(image, data, rgb, missing).items():
                    t, f = judge.judge(picture)
                    runs["references"][name]["top1"].append(t)
                    runs["references"][name]["features"].append(f)
            if subset == "L1" and 0.4 <= missing.mean() <= 0.9 and len(grid) < 4:
                grid.append([image.rgb] + [pictures[c] for c in COMPOSERS])
        if n % 16 == 15:
            print(f"{n + 1}/{len(images)}", flush=True)
    return {"runs": runs, "reference": reference}, grid


def speed_768x512(quality: int) -> dict:
    """Median milliseconds of each composer on one 768x512 L1-only decode."""
    import sdc

    rgb = common.crop_768x512(common.load_rgb(sorted(common.VAL_DIR.glob("*.png"))[0]))
    partial, missing = partial_decode(sdc.encode(rgb, quality=quality), ("L1",))
    out = {}
    for composer in COMPOSERS:
        completed(partial, missing, composer)  # loads the model once
        out[composer] = 1000 * float(np.median([completed(partial, missing, composer)[1] for _ in range(5)]))
    return {"missing_share": float(missing.mean()), "ms": out}


def summarise(measured: dict, gt, image_ids: list[int]) -> dict:
    ref_top1 = np.array(measured["reference"]["top1"])
    ref_feats = np.stack(measured["reference"]["features"])
    rows = {}
    for composer in COMPOSERS:
        l1, l3 = measured["runs"]["L1"][composer], measured["runs"]["L1-L3"][composer]
        feats = np.stack(l1["features"])
        rows[composer] = {
            "top1_agreement_L1": float((np.array(l1["top1"]) == ref_top1).mean()),
            "fd_mnv2_L1": frechet_distance(feats, ref_feats),
            "paired_feature_distance_L1": float(np.linalg.norm(feats - ref_feats, axis=1).mean()),
            **{f"{k}_L1-L3": v for k, v in M.coco_map(gt, l3["detections"], image_ids).items()},
            "decoded_pixels_changed": l1["changed"] + l3["changed"],
            "ms_per_photo": 1000 * float(np.median(l1["seconds"] + l3["seconds"])),
            "missing_share_L1": float(np.mean(l1["missing"])),
            "missing_share_L1-L3": float(np.mean(l3["missing"])),
        }
    for name, run in measured["runs"]["references"].items():
        feats = np.stack(run["features"])
        rows[name] = {"reference": True, "top1_agreement_L1": float((np.array(run["top1"]) == ref_top1).mean()),
                      "fd_mnv2_L1": frechet_distance(feats, ref_feats),
                      "paired_feature_distance_L1": float(np.linalg.norm(feats - ref_feats, axis=1).mean())}
    return rows


def save_grid(grid: list, path: Path, tile_width: int = 256) -> None:
    from PIL import Image

    rows = []
    for pictures in grid:
        h, w = pictures[0].shape[:2]
        size = (tile_width, round(h * tile_width / w))
        rows.append(np.concatenate([np.asarray(Image.fromarray(p).resize(size, Image.LANCZOS)) for p in pictures], 1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    Image.fromarray(sheet).save(path, quality=88)


def main(argv=None) -> int:
    ap = common.arguments(__doc__, OUT, threads=1)
    ap.add_argument("--limit", type=int, help="first N photos of COCO128")
    ap.add_argument("--quality", type=int, default=5)
    ap.add_argument("--composer-weights", type=Path, help="the learned composer's folder (default: weights/)")
    ap.add_argument("--grid", type=Path, default=GRID)
    args = ap.parse_args(argv)
    if args.composer_weights:
        LEARNED_WEIGHTS["weights"] = args.composer_weights
    run = common.start(args)
    from sdc.compose.learned import weights_digest

    dataset, images = load_dataset(args.limit)
    judge = MobilenetJudge()
    detector = TM.TfliteSsdDetector(dataset["categories"])
    measured, grid = measure(images, args.quality, judge, detector)
    rows = summarise(measured, M.coco_gt(dataset), [im.id for im in images])
    speed = speed_768x512(args.quality)
    print(common.table(
        [[c if c in COMPOSERS else f"({c})", f"{r['top1_agreement_L1']:.3f}", f"{r['fd_mnv2_L1']:.2f}",
          f"{r['paired_feature_distance_L1']:.2f}", *([f"{r['map_L1-L3']:.4f}", r["decoded_pixels_changed"],
          f"{r['ms_per_photo']:.0f}", f"{speed['ms'][c]:.0f}"] if c in COMPOSERS else ["-"] * 4)]
         for c, r in rows.items()],
        ["composer", "top-1 agreement (L1)", "FD-MNv2 (L1)", "paired dist (L1)", "mAP (L1-L3)",
         "decoded px changed", "ms/photo", "ms 768x512"]))
    save_grid(grid, args.grid)
    common.write_json(args.out, {**run, "images": len(images), "quality": args.quality,
                                 "composer_manifest_sha256": weights_digest(args.composer_weights), "judges": {
                                     "classifier": judge.fingerprint, "detector": detector.fingerprint},
                                 "speed_768x512": speed, "composers": rows})
    print(f"wrote {args.out} and {args.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
