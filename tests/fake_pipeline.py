"""A stand-in for sdc.pipeline with the same signatures, for CLI plumbing tests.

It writes real .sdc containers (sdc.bitstream) but "codes" the image
losslessly with zlib inside HYPR, so a round trip is exact and fast, and each
level substream is a few marker bytes. No torch.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from sdc.bitstream import SdcFile, SdcHeader, grid_size, read_sdc, write_sdc
from sdc.errors import CodecMismatchError, UsageError
from sdc.levels import LEVELS

NUM_QUALITIES = 8
CODEC_ID = b"fakecdc1"
calls: list[tuple[str, dict]] = []


@dataclass
class FakeAnalysis:
    analyzer: str = "fake(center)"
    objects: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    task: str | None = None

    def metadata(self) -> dict:
        md = {"analyzer": self.analyzer, "objects": []}
        if self.task:
            md["task"] = self.task
        return md


@dataclass
class EncodeResult:
    data: bytes
    analysis: object
    seconds: float


@dataclass
class DecodeResult:
    rgb: np.ndarray
    decoded_levels: tuple
    missing_levels: tuple
    sdc: SdcFile


def encode_image(rgb, *, qualities, keep_levels=LEVELS, analysis=None, analyzer="auto", task=None,
                 include_meta=True):
    calls.append(("encode", {"qualities": dict(qualities), "keep_levels": tuple(keep_levels),
                             "analysis": analysis, "analyzer": analyzer, "task": task,
                             "include_meta": include_meta}))
    if analyzer not in ("auto", "offline", "fake"):
        raise UsageError(f"unknown analyzer {analyzer!r}")
    t0 = time.perf_counter()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    H, W = rgb.shape[:2]
    h, w = grid_size(W, H)
    if analysis is None:
        analysis = FakeAnalysis(task=task)
        rm = np.full((h, w), 3, np.uint8)
        rm[h // 4: h // 2, w // 4: w // 2] = 0
        rm[h // 2: 3 * h // 4, w // 2: 3 * w // 4] = 1
    else:
        rm = analysis.group_map(h, w)
    hyper = np.array([H, W], ">u4").tobytes() + zlib.compress(rgb.tobytes(), 1)
    levels = {lv: bytes([i + 1]) * (8 * (i + 1) + qualities[lv]) for i, lv in enumerate(LEVELS)}
    f = SdcFile(header=SdcHeader(W, H, CODEC_ID, dict(qualities)), region_map=rm, hyperprior=hyper,
                levels={lv: b for lv, b in levels.items() if lv in keep_levels},
                metadata=analysis.metadata() if include_meta else None,
                missing_levels=tuple(lv for lv in LEVELS if lv not in keep_levels))
    return EncodeResult(write_sdc(f), analysis, time.perf_counter() - t0)


def decode_sdc(data, *, levels=None, composer=None):
    calls.append(("decode", {"levels": levels, "composer": composer}))
    f = read_sdc(data)
    if f.header.codec_id != CODEC_ID:
        raise CodecMismatchError("made with other codec weights")
    want = LEVELS if levels is None else tuple(levels)
    decoded = tuple(lv for lv in want if lv in f.levels)
    missing = tuple(lv for lv in want if lv not in f.levels)
    H, W = (int(x) for x in np.frombuffer(f.hyperprior[:8], ">u4"))
    rgb = np.frombuffer(zlib.decompress(f.hyperprior[8:]), np.uint8).reshape(H, W, 3).copy()
    return DecodeResult(rgb, decoded, missing, f)
