"""What is fuzzed: the seed files, and the targets that run sdc on one input.

Seeds are real .sdc files, encoded at start-up with the loaded codec from crops
of samples/astronaut.png (so their codec id matches and the mutated substreams
reach the entropy decoders), in format 2.0 and one in 1.0.

Targets: `reader` runs read_header, read_sdc, describe_sdc and truncate_sdc
(and reads back what truncate_sdc wrote); `frontend` runs
sdc.pipeline.decode_symbols: read_sdc, the codec and quality checks, the
hyperprior decoding (GroupedLatentCodec.decode_z with constriction), the
integer hyper-synthesis and every group's entropy decoding (decode_groups);
`decoder` runs the whole sdc.pipeline.decode_sdc, synthesis included.
Only sdc.errors.SdcError counts as a documented error; any other exception,
or a wrong result (e.g. symbols of the wrong shape), is a failure, raised as
`Failure`. sdc is imported inside the functions, so that fuzz/run.py can
instrument its modules first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "astronaut.png"
LEVEL_NAMES = ("L1", "L2", "L3", "other")
# The decoder front end is fuzzed at the seeds' sizes: a crafted header may
# claim up to this many pixels (the file's own hyperprior then sets the work).
FRONTEND_MAX_PIXELS = 256 * 256


# ----------------------------------------------------------------------------- seeds
def seed_analysis(width: int, height: int, levels=LEVEL_NAMES[:3], meta_text: str = "seed"):
    from sdc.analysis.core import Analysis, DetectedObject

    boxes = [(0, 0, width / 2, height / 2), (width / 2, 0, width, height / 2), (0, height / 2, width / 2, height)]
    objs = [DetectedObject(id=i, label=f"obj{i}", box=b, score=0.9 - 0.1 * i, level=lv, reason="fuzz seed")
            for i, (b, lv) in enumerate(zip(boxes, levels))]
    return Analysis(width=width, height=height, objects=objs, caption_short=f"{meta_text} short",
                    caption_long=f"{meta_text}: a longer caption", analyzer="fuzz-seed", task="fuzz")


def _crop(rgb: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    return np.ascontiguousarray(rgb[y:y + h, x:x + w])


def make_seeds() -> dict[str, bytes]:
    """Small real .sdc files made with the loaded codec (about 0.1 s each)."""
    from PIL import Image

    from sdc.bitstream import truncate_sdc
    from sdc.pipeline import encode_image

    with Image.open(SAMPLE) as im:
        rgb = np.asarray(im.convert("RGB"))
    seeds = {}
    small = _crop(rgb, 200, 180, 64, 48)
    seeds["64x48_all_levels"] = encode_image(small, qualities={"L1": 6, "L2": 5, "L3": 4, "other": 3},
                                             analysis=seed_analysis(64, 48)).data
    seeds["130x70_mixed_no_meta"] = encode_image(_crop(rgb, 150, 100, 130, 70),
                                                 qualities={"L1": 8, "L2": 1, "L3": 2, "other": 1},
                                                 analysis=seed_analysis(130, 70), include_meta=False).data
    seeds["40x90_L1_other"] = encode_image(_crop(rgb, 300, 300, 40, 90), qualities={lv: 4 for lv in LEVEL_NAMES},
                                           keep_levels=("L1", "other"), analysis=seed_analysis(40, 90)).data
    seeds["64x48_dropped_to_L1"] = truncate_sdc(seeds["64x48_all_levels"], ("L1",))
    seeds["16x16_background"] = encode_image(_crop(rgb, 0, 0, 16, 16), qualities={lv: 2 for lv in LEVEL_NAMES},
                                             analysis=seed_analysis(16, 16, levels=(), meta_text="x" * 200)).data
    seeds["64x48_all_levels_v1"] = as_format_1(seeds["64x48_all_levels"])
    return seeds


def as_format_1(data: bytes) -> bytes:
    """The same file in format 1.0 (which stores the whole 8-byte codec id)."""
    from sdc.bitstream import read_sdc, write_sdc
    from sdc.models.codec import default_codec

    f = read_sdc(data)
    f.header.codec_id = default_codec().codec_id
    return write_sdc(f, version=1)


# ----------------------------------------------------------------------------- targets
class Failure(Exception):
    """A target misbehaved: not an SdcError, or a wrong result."""


def reader_target(data: bytes) -> str:
    """Outcome: "read ok" or the error class of read_sdc; raises on anything but FormatError
    (or on inconsistent results)."""
    from sdc.bitstream import describe_sdc, read_header, read_sdc, truncate_sdc
    from sdc.errors import FormatError

    for fn in (read_header, describe_sdc):
        try:
            fn(data)
        except FormatError as e:
            _check_message(e)
    try:
        f = read_sdc(data)
        outcome = "read ok"
    except FormatError as e:
        _check_message(e)
        f, outcome = None, type(e).__name__
    try:
        out = truncate_sdc(data, ("L1", "other"))
    except FormatError as e:
        _check_message(e)
        if f is not None:
            raise Failure(f"read_sdc reads the input but truncate_sdc refuses it: {e}") from None
    else:
        if f is not None:  # what truncate writes must read back, with the levels asked for
            g = read_sdc(out)
            if g.levels != {lv: b for lv, b in f.levels.items() if lv in ("L1", "other")}:
                raise Failure(f"truncate_sdc kept {sorted(g.levels)} of {sorted(f.levels)}")
            if g.metadata != f.metadata or not np.array_equal(g.region_map, f.region_map):
                raise Failure("truncate_sdc changed the metadata or the region map")
    return outcome


def frontend_target(data: bytes) -> str:
    """Outcome: "symbols ok", "codec:<error>" (the file passed the container and codec checks
    and reached the entropy decoders) or "open:<error>"; raises on anything but SdcError."""
    from sdc.errors import SdcError
    from sdc.models.codec import default_codec
    from sdc.pipeline import open_sdc

    try:  # = sdc.pipeline.decode_symbols, keeping the parsed file to check the result
        sdc_file, coded, _ = open_sdc(data, max_pixels=FRONTEND_MAX_PIXELS)
    except SdcError as e:
        _check_message(e)
        return "open:" + type(e).__name__
    try:
        symbols = default_codec().decode_symbols(coded)
    except SdcError as e:
        _check_message(e)
        return "codec:" + type(e).__name__
    # a success must be a consistent one
    gmap = sdc_file.region_map
    n, hz, wz = default_codec().z_shape(sdc_file.header.height, sdc_file.header.width)
    if symbols["hyperprior"].shape != (n, hz, wz):
        raise Failure(f"hyperprior symbols have shape {symbols['hyperprior'].shape}")
    for lv, sym in symbols.items():
        if lv != "hyperprior" and sym.shape[1:] != (int((gmap == LEVEL_NAMES.index(lv)).sum()),):
            raise Failure(f"{lv} symbols have shape {sym.shape}")
    if set(symbols) != set(coded.groups) | {"hyperprior"}:
        raise Failure(f"decoded {sorted(symbols)}, expected {sorted(coded.groups)}")
    return "symbols ok"


def decoder_target(data: bytes) -> str:
    """The whole decoder, bytes to pixels (sdc.pipeline.decode_sdc, synthesis included)."""
    from sdc.errors import SdcError
    from sdc.pipeline import decode_sdc

    try:
        r = decode_sdc(data, max_pixels=FRONTEND_MAX_PIXELS)
    except SdcError as e:
        _check_message(e)
        return type(e).__name__
    h = r.sdc.header
    if r.rgb.shape != (h.height, h.width, 3) or r.rgb.dtype != np.uint8:
        raise Failure(f"decoded {r.rgb.shape} {r.rgb.dtype} for a {h.width}x{h.height} image")
    return "pixels ok"


def _check_message(e: Exception) -> None:
    msg = str(e)
    if not msg or "\n" in msg:
        raise Failure(f"{type(e).__name__} message is not one line: {msg!r}")


TARGETS = {"reader": reader_target, "frontend": frontend_target, "decoder": decoder_target}
