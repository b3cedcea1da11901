"""What benchmarks/icm.py codes: COCO128's images, and each codec setting as a `Method`.

Anchors are baselines.CODECS with the sweeps of ANCHOR_PARAMS; CODEC@SCALE codes
the picture at SCALE of its size and upsamples the decode. sdc runs in SDC_MODES:
name -> fn(rgb, image, q) -> the whole .sdc file. A Method's `key` is what its
cached results depend on besides the image, the setting and the task models.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import baselines as B
import common
from decoded_cache import cached_roundtrip

COCO_DIR = common.SHARED / "data" / "coco128"
ANNOTATIONS = COCO_DIR / "annotations" / "instances_train2017.json"

# Sweeps from each codec's lowest useful rate on COCO128 (JPEG bottoms out near 0.10 bpp, WebP 0.14,
# AVIF 0.10, JPEG XL 0.17 at its largest distance, HEVC 0.06 at QP 51) to about 1.5 bpp.
ANCHOR_PARAMS: dict[str, list] = {
    "jpeg": [2, 5, 10, 15, 20, 30, 40, 50, 60, 75],
    "webp": [0, 5, 10, 20, 30, 40, 50, 60, 75],
    "avif": [0, 10, 20, 30, 40, 50, 60, 70],
    "jxl": [1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 25.0],
    "hevc": [27, 30, 33, 36, 39, 42, 45, 48, 51],
    "vvc": list(B.PARAMS["vvc"]),
}
PARAM_NAME = {"jpeg": "q", "webp": "q", "avif": "q", "jxl": "d", "hevc": "QP", "vvc": "QP"}
# Anchors whose decoded images are kept in decoded_cache: too slow to run twice.
SLOW_ANCHORS = {"vvc", "hevc", "jxl", "avif"}


# ----------------------------------------------------------------------------- data
@dataclass
class ImageEntry:
    name: str
    id: int
    width: int
    height: int
    path: Path
    annotations: list
    dataset: dict = field(repr=False)  # the whole COCO JSON: gt-detection reads this image's regions from it
    rgb: np.ndarray = field(repr=False, default=None)
    pixel_hash: str = ""


def load_dataset(limit: int | None = None) -> tuple[dict, list[ImageEntry]]:
    """The COCO JSON and its images sorted by file name (the first `limit` of them)."""
    dataset = json.loads(ANNOTATIONS.read_text())
    anns: dict[int, list] = {}
    for a in dataset["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = []
    for im in sorted(dataset["images"], key=lambda i: i["file_name"])[:limit or None]:
        path = COCO_DIR / "train2017" / im["file_name"]
        rgb = common.load_rgb(path)
        if rgb.shape[:2] != (im["height"], im["width"]):
            raise SystemExit(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"its annotations say {im['width']}x{im['height']}")
        images.append(ImageEntry(im["file_name"], int(im["id"]), im["width"], im["height"], path,
                                 anns.get(im["id"], []), dataset, rgb, common.pixel_hash(rgb)))
    return dataset, images


# ----------------------------------------------------------------------------- sdc modes
ModeFn = Callable[[np.ndarray, ImageEntry, int], bytes]


def sdc_encode(rgb: np.ndarray, q: int, analysis=None, task: str | None = None, **preset_changes) -> bytes:
    """One .sdc file at the single quality q.

    Through encode_image's `q`, where the task's preset (sdc.task_coding), changed by
    `preset_changes` (TaskPreset fields), picks the per-level qualities, the background
    and the regions' shape; an sdc without `q` codes every level at q instead."""
    from sdc.levels import LEVELS
    from sdc.pipeline import encode_image

    if "q" not in inspect.signature(encode_image).parameters:
        if preset_changes:
            raise RuntimeError("this sdc has no task presets to change")
        return encode_image(rgb, qualities={lv: q for lv in LEVELS}, analysis=analysis, task=task).data
    extra = {}
    if preset_changes:
        from sdc.task_coding import preset_for

        extra["preset"] = preset_for(task).with_changes(**preset_changes)
    return encode_image(rgb, q=q, task=task, analysis=analysis, **extra).data


def mode_whole(rgb: np.ndarray, image: ImageEntry, q: int) -> bytes:
    """No regions and no task: the whole image is 'other', coded at q."""
    from sdc.analysis import Analysis

    return sdc_encode(rgb, q, Analysis(width=image.width, height=image.height, objects=[]))


_ANALYSES: dict[tuple, object] = {}


def analyzed(name: str, pixel_hash: str, rgb: np.ndarray, task: str):
    """sdc's default analysis of an image for a task, made once per image: what
    `encode_image` would run itself (the analyzer is deterministic), without
    repeating it for every quality and mode."""
    key = (name, pixel_hash, task)
    if key not in _ANALYSES:
        from PIL import Image

        from sdc.analysis import analyze

        _ANALYSES[key] = analyze(Image.fromarray(rgb), task=task, config={"masks": "box"})
    return _ANALYSES[key]


def task_mode(task: str, regions: str = "analyzer", **preset_changes) -> ModeFn:
    """A mode coding for `task`, its regions found by sdc's own analyzer ("analyzer") or
    read from the image's COCO annotations ("gt", an oracle), its preset changed by
    `preset_changes` -- e.g. task_mode("object detection", "gt", background="code",
    background_offset=-2) for an ablation."""
    if regions not in ("analyzer", "gt"):
        raise ValueError(f"regions must be 'analyzer' or 'gt', got {regions!r}")

    def mode(rgb: np.ndarray, image: ImageEntry, q: int) -> bytes:
        if regions == "gt":
            from sdc.analysis import load_regions

            analysis = load_regions(image.dataset, image.width, image.height, file_name=image.name)
        else:
            analysis = analyzed(image.name, image.pixel_hash, rgb, task)
        return sdc_encode(rgb, q, analysis, task, **preset_changes)

    mode.spec = f"task={task!r} regions={regions} preset_changes={sorted(preset_changes.items())!r}"
    return mode


# name -> fn(rgb, image, q) -> the whole .sdc file. Add a mode here to benchmark it (--modes NAME).
SDC_MODES: dict[str, ModeFn] = {
    "whole": mode_whole,
    "task-detection": task_mode("object detection"),
    "gt-detection": task_mode("object detection", regions="gt"),
    "task-classification": task_mode("classification"),
    "task-segmentation": task_mode("segmentation"),
}


def mode_fingerprint(fn: ModeFn) -> str:
    """What a mode's files depend on in this script: its spec (task_mode) or its source."""
    return getattr(fn, "spec", None) or inspect.getsource(fn)


def sdc_source_hash() -> str:
    """sha256 over the sdc package's Python sources (paths and contents): cached sdc results
    are only reused for the code that made them."""
    h = hashlib.sha256()
    root = common.CODE / "sdc"
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- methods
Roundtrip = Callable[[np.ndarray, ImageEntry, object], tuple[int, np.ndarray]]


@dataclass
class Method:
    name: str
    label: str
    params: list
    param_name: str
    key: str  # what the results depend on besides the image, the setting and the task models
    roundtrip: Roundtrip
    has_cached_pixels: Callable[[ImageEntry, object], bool] | None = None  # set: never encode, only read


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def uncompressed_method() -> Method:
    """The original pixels; the 'rate' is the size of the original COCO JPEG."""
    return Method("uncompressed", "uncompressed (original JPEG)", ["original"], "", "uncompressed",
                  lambda rgb, image, p: (image.path.stat().st_size, rgb))


def anchor_method(codec: str, params: list, version: str, cache_only: bool) -> Method:
    if codec in SLOW_ANCHORS:
        def roundtrip(rgb, image, p):
            return cached_roundtrip(codec, p, image.name, rgb, version)
    else:
        def roundtrip(rgb, image, p):
            return B.CODECS[codec](rgb, p)

    def has_cached_pixels(image, p):
        from decoded_cache import _entry_dir

        stem = f"{Path(image.name).stem}-{image.pixel_hash}-{p}"
        d = _entry_dir(codec, version)
        return (d / f"{stem}.json").is_file() and (d / f"{stem}.png").is_file()

    return Method(codec, B.LABELS[codec], params, PARAM_NAME[codec], _key(codec, B.CONFIG[codec], version),
                  roundtrip, has_cached_pixels if cache_only else None)


def resized(rgb: np.ndarray, size: tuple[int, int], down: bool) -> np.ndarray:
    """rgb resized to size (w, h) as sdc's task presets resize: Lanczos down, bicubic up."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS if down else Image.BICUBIC))


def scaled_anchor_method(codec: str, scale: float, params: list, version: str) -> Method:
    """An anchor given the picture at `scale` of its size and upsampled after decoding:
    the trick of sdc's detection preset (sdc.task_coding) played by a standard codec,
    to tell what the smaller picture buys from what sdc's coding buys."""
    def roundtrip(rgb, image, p):
        h, w = rgb.shape[:2]
        small = resized(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), down=True)
        if codec in SLOW_ANCHORS:
            nbytes, out = cached_roundtrip(codec, p, image.name, small, version)
        else:
            nbytes, out = B.CODECS[codec](small, p)
        return nbytes, resized(out, (w, h), down=False)

    return Method(f"{codec}@{scale:g}", f"{B.LABELS[codec]}, {scale:g} of the size", params, PARAM_NAME[codec],
                  _key(codec, B.CONFIG[codec], version, "scaled", scale), roundtrip)


def parse_anchor(spec: str) -> tuple[str, float]:
    """'vvc' -> ('vvc', 1.0); 'vvc@0.5' -> ('vvc', 0.5)."""
    codec, _, scale = spec.partition("@")
    try:
        value = float(scale) if scale else 1.0
    except ValueError:
        raise SystemExit(f"bad anchor {spec!r}: expected CODEC or CODEC@SCALE") from None
    if codec not in ANCHOR_PARAMS or not 0 < value <= 1:
        raise SystemExit(f"bad anchor {spec!r}: expected one of {', '.join(ANCHOR_PARAMS)}, at a scale in (0, 1]")
    return codec, value


def sdc_method(mode: str, qualities: list[int], weights_sha: str, source_hash: str) -> Method:
    fn = SDC_MODES[mode]

    def roundtrip(rgb, image, q):
        from sdc.pipeline import decode_sdc

        data = fn(rgb, image, int(q))
        return len(data), decode_sdc(data).rgb

    key = _key("sdc", mode, mode_fingerprint(fn), inspect.getsource(sdc_encode), weights_sha, source_hash)
    return Method(f"sdc:{mode}", f"sdc {mode}", list(qualities), "q", key, roundtrip)
