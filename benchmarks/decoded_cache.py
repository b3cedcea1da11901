"""A disk cache of decoded anchor images, for codecs too slow to re-run (VVC: 2-10 s a frame).

``cached_roundtrip(codec, param, name, rgb)`` returns ``(nbytes, decoded_rgb)``
like ``baselines.CODECS[codec]``, computing it only when the cache has no entry
for this codec's settings (``baselines.CONFIG`` and the tool's version), this
parameter and this image's pixels. Decoded images are stored as lossless PNG
under ``$SDC_BENCH_CACHE`` (default ``~/.cache/sdc-bench``), never in the
repository; each entry's byte count sits in a JSON file beside it, written
after the PNG, so an interrupted run leaves no half entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

import baselines as B
from common import pixel_hash


def cache_root() -> Path:
    return Path(os.environ.get("SDC_BENCH_CACHE", Path.home() / ".cache" / "sdc-bench"))


def _entry_dir(codec: str, version: str) -> Path:
    key = hashlib.sha256(f"{codec}|{B.CONFIG[codec]}|{version}".encode()).hexdigest()[:16]
    return cache_root() / "decoded" / f"{codec}-{key}"


def cached_roundtrip(codec: str, param, name: str, rgb: np.ndarray, version: str) -> tuple[int, np.ndarray]:
    from PIL import Image

    d = _entry_dir(codec, version)
    stem = f"{Path(name).stem}-{pixel_hash(rgb)}-{param}"
    png, meta = d / f"{stem}.png", d / f"{stem}.json"
    if meta.is_file() and png.is_file():
        with Image.open(png) as im:
            return int(json.loads(meta.read_text())["bytes"]), np.asarray(im.convert("RGB")).copy()
    nbytes, out = B.CODECS[codec](rgb, param)
    d.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(f".{os.getpid()}.tmp")
    Image.fromarray(out).save(tmp, format="PNG")
    os.replace(tmp, png)
    meta.write_text(json.dumps({"bytes": int(nbytes), "codec": codec, "param": param, "image": name,
                                "config": B.CONFIG[codec], "version": version}))
    return nbytes, out
