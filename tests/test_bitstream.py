"""The .sdc container, formats 1.0 and 2.0: round trips, truncation, limits and malformed input."""
from __future__ import annotations

import itertools
import math
import random
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdc.bitstream import (
    DEFAULT_MAX_PIXELS, MAGIC, SdcFile, codec_id_matches, crc32c, describe_sdc, grid_size, is_sdc,
    read_header, read_sdc, truncate_sdc, write_sdc,
)
from sdc.bitstream.metadata import MAX_META_JSON, decode_metadata, encode_metadata
from sdc.bitstream.rangecoder import RangeDecoder, RangeEncoder
from sdc.bitstream.regionmap import (
    ENCODING_ADAPTIVE, ENCODING_ROW_RLE, decode_cells, encode_cells, encode_region_map,
)
from sdc.bitstream.tables import ANALYZER_TABLE, COCO_LABELS, LABELS
from sdc.errors import BadInputError, FormatError
from sdc.levels import LEVELS

from bitstream_helpers import (
    CODEC_ID, META, build_header, chunk_spans, entry_offset, header_length, patch_header,
    refresh_header_crc, sample_bytes, sample_file, set_chunk, split_header,
)

SUBSETS = [tuple(c) for r in range(len(LEVELS) + 1) for c in itertools.combinations(LEVELS, r)]
VERSIONS = (1, 2)


def same_file(a: SdcFile, b: SdcFile, version: int = 2) -> bool:
    """b read back from a written in `version` (format 2 keeps 4 bytes of the codec id)."""
    id_size = 8 if version == 1 else 4
    return (a.header.codec_id[:id_size] == b.header.codec_id and len(b.header.codec_id) == id_size
            and (a.header.width, a.header.height, a.header.qualities)
            == (b.header.width, b.header.height, b.header.qualities)
            and np.array_equal(a.region_map, b.region_map)
            and a.region_map.dtype == b.region_map.dtype == np.uint8 and a.hyperprior == b.hyperprior
            and a.levels == b.levels and a.metadata == b.metadata
            and tuple(a.missing_levels) == tuple(b.missing_levels))


def truncated_size(data: bytes, keep: tuple[str, ...]) -> int:
    """Size of `sdc truncate --levels keep`, from the spec: a header listing the
    chunks kept, then their payloads."""
    h = split_header(data)
    kept = [(e, (n, s, t)) for e, (n, s, t) in zip(h["entries"], chunk_spans(data))
            if n not in LEVELS or n in keep]
    h["entries"] = [e for e, _ in kept]
    return len(build_header(h)) + sum(t - s for _, (_, s, t) in kept)


# ------------------------------------------------------------------ round trips, both formats
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("quality", range(1, 9))
def test_round_trip_every_quality(version, quality):
    f = sample_file(qualities={lv: quality for lv in LEVELS})
    g = read_sdc(write_sdc(f, version=version))
    assert same_file(f, g, version)
    assert g.header.qualities == {lv: quality for lv in LEVELS}


@pytest.mark.parametrize("version", VERSIONS)
def test_round_trip_mixed_and_extreme_qualities(version):
    f = sample_file(qualities={"L1": 255, "L2": 1, "L3": 128, "other": 7})
    assert same_file(f, read_sdc(write_sdc(f, version=version)), version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("keep", SUBSETS)
def test_round_trip_every_level_subset(version, keep):
    missing = tuple(lv for lv in LEVELS if lv not in keep)
    f = sample_file(levels=keep, missing=missing)
    g = read_sdc(write_sdc(f, version=version))
    assert same_file(f, g, version)
    assert tuple(g.levels) == keep  # keys in LEVELS order


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("keep", SUBSETS)
def test_truncate_every_level_subset(version, keep):
    data = sample_bytes(version=version)
    out = truncate_sdc(data, keep)
    g = read_sdc(out)
    full = read_sdc(data)
    assert tuple(g.levels) == keep
    assert g.levels == {lv: full.levels[lv] for lv in keep}
    assert g.missing_levels == tuple(lv for lv in LEVELS if lv not in keep)
    assert g.metadata == full.metadata == META and np.array_equal(g.region_map, full.region_map)
    assert len(out) == truncated_size(data, keep)
    if version == 1:
        assert len(out) == len(data) - sum(12 + len(full.levels[lv]) for lv in LEVELS if lv not in keep)
    # the payloads kept are the input's bytes, with their CRCs
    spans = {n: data[s:e] for n, s, e in chunk_spans(data)}
    assert {n: out[s:e] for n, s, e in chunk_spans(out)} == {n: p for n, p in spans.items()
                                                              if n not in LEVELS or n in keep}
    assert [c for c in split_header(out)["entries"]] == [e for e, (n, _, _) in
                                                        zip(split_header(data)["entries"], chunk_spans(data))
                                                        if n not in LEVELS or n in keep]
    # truncating again is idempotent, and keeping more than is there keeps what is there
    assert truncate_sdc(out, keep) == out
    assert truncate_sdc(out, LEVELS) == out


@pytest.mark.parametrize("version", VERSIONS)
def test_truncate_copies_every_header_field_but_the_index(version):
    data = patch_header(sample_bytes(version=version), minor=7)
    out = truncate_sdc(data, ("L2",))
    a, b = split_header(data), split_header(out)
    for key in ("major", "minor", "width", "height", "codec_id", "qualities", "written"):
        assert a[key] == b[key], key
    assert out[:10] == data[:10]  # magic and version, bytes 0..9
    assert describe_sdc(out)["format_version"] == f"{version}.7"


def test_writer_writes_2_0_and_reads_1_0():
    new, old = write_sdc(sample_file()), write_sdc(sample_file(), version=1)
    assert new[8:10] == b"\x02\x00" and old[8:10] == b"\x01\x00"
    assert describe_sdc(new)["format_version"] == "2.0" and describe_sdc(old)["format_version"] == "1.0"
    assert len(new) < len(old)
    a, b = read_sdc(new), read_sdc(old)
    assert b.header.codec_id == CODEC_ID and a.header.codec_id == CODEC_ID[:4]
    assert codec_id_matches(a.header.codec_id, CODEC_ID) and codec_id_matches(b.header.codec_id, CODEC_ID)
    assert not codec_id_matches(a.header.codec_id, bytes(8)) and not codec_id_matches(b"", CODEC_ID)
    with pytest.raises(ValueError, match="unknown format version 3"):
        write_sdc(sample_file(), version=3)


def test_a_read_2_0_file_writes_again():
    """A file read back (4-byte codec id) writes the same 2.0 bytes; 1.0 needs all 8 bytes."""
    data = sample_bytes()
    f = read_sdc(data)
    assert write_sdc(f) == data
    with pytest.raises(ValueError, match="codec_id must be 8 bytes for format 1"):
        write_sdc(f, version=1)


def one_zero_reader(data: bytes) -> str:
    """A reader written from the 1.0 spec alone, section 7 steps 1-4."""
    if data[:8] != MAGIC or len(data) < 12:
        return "not sdc / truncated"
    major, minor, hl = struct.unpack_from(">BBH", data, 8)
    if hl < 16 or len(data) < hl:
        return "bad or truncated header"
    if crc32c(data[:hl - 4]) != struct.unpack_from(">I", data, hl - 4)[0]:
        return "header CRC mismatch"
    return "reads" if major == 1 else f"unsupported sdc format version {major}.{minor}"


def test_a_1_0_reader_refuses_2_0_by_its_version():
    """The preamble and the header CRC sit where 1.0 put them, so a 1.0 reader gets to
    the version check and names the version instead of calling the header damaged."""
    for data in (sample_bytes(), sample_bytes(meta=None, levels=("L1",), missing=("L2",)),
                 truncate_sdc(sample_bytes(), ())):
        assert one_zero_reader(data) == "unsupported sdc format version 2.0"
    assert one_zero_reader(sample_bytes(version=1)) == "reads"


@pytest.mark.parametrize("version", VERSIONS)
def test_levels_not_written_are_not_missing(version):
    f = sample_file(levels=("L1", "L2"), missing=())
    g = read_sdc(write_sdc(f, version=version))
    assert tuple(g.levels) == ("L1", "L2") and g.missing_levels == ()
    assert describe_sdc(write_sdc(f, version=version))["levels"]["L3"]["status"] == "not written"


@pytest.mark.parametrize("version", VERSIONS)
def test_no_meta(version):
    data = sample_bytes(version=version, meta=None)
    assert "META" not in [n for n, _, _ in chunk_spans(data)]
    assert read_sdc(data).metadata is None
    assert len(data) < len(sample_bytes(version=version))


@pytest.mark.parametrize("version", VERSIONS)
def test_metadata_unicode_and_numpy_values(version):
    meta = {"caption_short": "ein Hund \u00fcber Gras \U0001F415", "objects": [
        {"score": np.float32(0.5), "box": np.array([1, 2, 3, 4]), "id": np.int64(3)}]}
    g = read_sdc(write_sdc(sample_file(meta=meta), version=version))
    assert g.metadata == {"caption_short": "ein Hund \u00fcber Gras \U0001F415",
                          "objects": [{"score": 0.5, "box": [1, 2, 3, 4], "id": 3}]}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", [(1, 1), (64, 64), (65, 63), (481, 321), (2000, 17)])
def test_image_sizes_and_grid(version, size):
    w, h = size
    f = sample_file(width=w, height=h, seed=w)
    g = read_sdc(write_sdc(f, version=version))
    assert g.region_map.shape == grid_size(w, h) == (-(-h // 64) * 4, -(-w // 64) * 4)
    assert same_file(f, g, version)


# ------------------------------------------------------------------ region map
def blob_map(h: int, w: int, seed: int) -> np.ndarray:
    """A map like real objects' masks: a few overlapping discs of random levels."""
    rng = np.random.default_rng(seed)
    rm = np.full((h, w), 3, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(rng.integers(1, 6)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 3)
        lv = rng.integers(0, 3)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        rm[inside] = np.minimum(rm[inside], lv)
    return rm


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12), st.integers(1, 40), st.data())
def test_region_map_round_trip_any_map_every_encoding(h, w, data):
    cells = data.draw(st.lists(st.integers(0, 3), min_size=h * w, max_size=h * w))
    if data.draw(st.booleans()):  # blocky maps, the usual case
        cells = [cells[(r // 3) * w + (c // 5) * 5] for r in range(h) for c in range(w)]
    cells = bytes(cells)
    assert decode_cells(encode_cells(h, w, cells, version=1), (h, w), version=1) == cells
    for encoding in (ENCODING_ROW_RLE, ENCODING_ADAPTIVE):
        payload = encode_cells(h, w, cells, encoding=encoding)
        assert payload[0] == encoding
        assert decode_cells(payload, (h, w)) == cells


@pytest.mark.parametrize("seed", range(12))
def test_adaptive_region_map_reproduces_mask_maps(seed):
    rm = blob_map(32, 40, seed)
    payload = encode_region_map(rm, encoding=ENCODING_ADAPTIVE)
    assert decode_cells(payload, rm.shape) == rm.tobytes()
    # about a third of the run-length size on maps like these
    assert len(payload) < 0.6 * len(encode_region_map(rm, encoding=ENCODING_ROW_RLE))


@pytest.mark.parametrize("case", ["uniform", "blocks", "blobs", "noise", "tiny"])
def test_region_map_writer_picks_the_smaller_encoding(case):
    rng = np.random.default_rng(7)
    rm = {"uniform": np.full((128, 128), 3, np.uint8),
          "blocks": np.kron(rng.integers(0, 4, (4, 4)), np.ones((8, 10))).astype(np.uint8),
          "blobs": blob_map(32, 40, 3),
          "noise": rng.integers(0, 4, (16, 16)).astype(np.uint8),
          "tiny": np.array([[3, 3, 3, 3], [3, 0, 0, 3], [3, 0, 1, 3], [3, 3, 3, 3]], np.uint8)}[case]
    options = {enc: encode_region_map(rm, encoding=enc) for enc in (ENCODING_ROW_RLE, ENCODING_ADAPTIVE)}
    written = encode_region_map(rm)
    best = min(len(p) for p in options.values())
    assert len(written) == best
    assert written == (options[ENCODING_ROW_RLE] if len(options[ENCODING_ROW_RLE]) == best
                       else options[ENCODING_ADAPTIVE])  # run-length on a tie
    assert decode_cells(written, rm.shape) == rm.tobytes()
    if case == "uniform":
        assert written[0] == ENCODING_ROW_RLE
    if case == "blobs":
        assert written[0] == ENCODING_ADAPTIVE


def test_region_map_compact():
    rm = np.full((128, 128), 3, np.uint8)  # a 2048 x 2048 image
    rm[10:60, 20:90] = 0
    rm[70:100, 5:40] = 1
    for version in VERSIONS:
        payload = encode_region_map(rm, version=version)
        assert len(payload) < 60
        assert decode_cells(payload, (128, 128), version=version) == rm.tobytes()


def test_region_map_multibyte_varint():
    # run of 300 of level 2: v = (299 << 2) | 2 = 1198 = 0xae 0x09
    assert encode_cells(1, 300, bytes([2]) * 300, version=1) == struct.pack(">IIB", 1, 300, 1) + b"\x01\xae\x09"
    payload = encode_cells(1, 300, bytes([2]) * 300, encoding=ENCODING_ROW_RLE)
    assert payload == b"\x01\x01\xae\x09"
    assert decode_cells(payload, (1, 300)) == bytes([2]) * 300


@pytest.mark.parametrize("body, what", [
    (b"\x01\x1f", "ends inside row"),                # only 8 of 9 cells... row of 9
    (b"\x00\x23", "row group of 0"),                 # R = 0
    (b"\x02\x23", "row group of 2"),                 # R > h
    (b"\x01\x27", "overflows"),                      # run of 10 > 9
    (b"\x01\x23\x00", "unused bytes"),               # trailing byte
    (b"\x81\x00\x23", "non-minimal varint"),         # R = 1 written in 2 bytes
    (b"\x01\xff\xff\xff\xff\xff\x01", "longer than 5 bytes"),
])
@pytest.mark.parametrize("version", VERSIONS)
def test_region_map_run_length_malformed(body, what, version):
    head = struct.pack(">IIB", 1, 9, 1) if version == 1 else b"\x01"
    with pytest.raises(FormatError, match=what) as e:
        decode_cells(head + body, (1, 9), version=version)
    assert e.value.chunk == "RMAP"


def test_region_map_adaptive_malformed():
    rm = blob_map(8, 8, 1)
    good = encode_region_map(rm, encoding=ENCODING_ADAPTIVE)
    with pytest.raises(FormatError, match="unused bytes") as e:
        decode_cells(good + bytes(5), (8, 8))
    assert e.value.chunk == "RMAP"
    with pytest.raises(FormatError, match="bad range coder start"):
        decode_cells(b"\x02\xff\xff\xff\xff", (8, 8))
    with pytest.raises(FormatError, match="ends early"):  # a stream cut short: more than 4 bytes missing
        decode_cells(b"\x02", (64, 64))


def test_region_map_wrong_size_encoding_or_empty():
    good = encode_cells(4, 4, bytes(16), version=1)
    with pytest.raises(FormatError, match="header needs 8x4") as e:
        decode_cells(good, (8, 4), version=1)
    assert e.value.chunk == "RMAP"
    with pytest.raises(FormatError, match="encoding 2"):  # format 1 has only run-length
        decode_cells(good[:8] + b"\x02" + good[9:], (4, 4), version=1)
    with pytest.raises(FormatError, match="shorter"):
        decode_cells(good[:5], (4, 4), version=1)
    for enc in (0, 3, 255):
        with pytest.raises(FormatError, match=f"encoding {enc}"):
            decode_cells(bytes([enc]) + b"\x01\x0f", (4, 4))
    with pytest.raises(FormatError, match="empty"):
        decode_cells(b"", (4, 4))


def test_region_map_size_mismatch_in_a_1_0_file():
    bad = set_chunk(sample_bytes(version=1), "RMAP", encode_cells(4, 4, bytes(16), version=1))
    with pytest.raises(FormatError, match="region map is 4x4") as e:
        read_sdc(bad)
    assert e.value.chunk == "RMAP"


def test_region_map_of_the_wrong_size_in_a_2_0_file():
    """Format 2 takes the size from the header: a map of another grid does not fill it exactly."""
    bad = set_chunk(sample_bytes(), "RMAP", encode_cells(4, 4, bytes(16), encoding=ENCODING_ROW_RLE))
    with pytest.raises(FormatError) as e:
        read_sdc(bad)
    assert e.value.chunk == "RMAP"


def test_adaptive_region_map_work_is_bounded_by_its_bytes():
    """A few bytes cannot make the decoder walk a big map: at most 4 bytes past the end are read."""
    h, w = grid_size(8192, 8192)
    t0 = time.process_time()
    with pytest.raises(FormatError, match="ends early"):
        decode_cells(b"\x02\x00\x00\x00\x00", (h, w))
    assert time.process_time() - t0 < 0.5


# ------------------------------------------------------------------ range coder
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1)), max_size=3000), st.integers(0, 5))
def test_range_coder_round_trip(symbols, skew):
    # skewed bit sources make long runs of 0xFF bytes and carries into them
    rng = random.Random(skew)
    symbols = [(i, b if rng.random() < 0.5 ** skew else 1) for i, b in symbols]
    start = [16, 2048, 4080, 1000]
    enc, probs = RangeEncoder(), list(start)
    for i, b in symbols:
        enc.encode(probs, i, b)
    stream = enc.finish()
    dec, probs = RangeDecoder(stream, where="t", chunk="t"), list(start)
    assert [(i, dec.decode(probs, i)) for i, _ in symbols] == symbols
    dec.finish()
    assert dec.pos - len(stream) <= 4  # at most 4 zero bytes were left off


def test_range_coder_leaves_off_only_zero_bytes():
    enc, probs = RangeEncoder(), [2048]
    for k in range(200):
        enc.encode(probs, 0, k % 3 == 0)
    stream = enc.finish()
    dec = RangeDecoder(stream + b"\x00" * 4, where="t", chunk="t")
    probs = [2048]
    assert [dec.decode(probs, 0) for _ in range(200)] == [int(k % 3 == 0) for k in range(200)]


# ------------------------------------------------------------------ metadata, format 2
def meta_round_trip(meta: dict) -> tuple[dict, bytes]:
    payload = encode_metadata(meta)
    return decode_metadata(payload), payload


def test_meta_labels_in_and_out_of_the_table():
    labels = ["person", "toothbrush", "face", "salient region", "number", "red kite", "Person",
              "\u00e9cole \U0001F3EB", ""]
    objects = [{"id": k, "label": lab, "box": [k, k, k + 10, k + 20], "score": 1.0, "level": "L2"}
               for k, lab in enumerate(labels)]
    got, payload = meta_round_trip({"objects": objects})
    assert payload[0] == 1  # binary
    assert [o["label"] for o in got["objects"]] == labels
    assert got["objects"] == objects
    # a table label costs one byte, a literal one its UTF-8 bytes and a 1- or 2-byte length
    one = encode_metadata({"objects": objects[:1]})
    assert len(encode_metadata({"objects": [dict(objects[0], label="red kite")]})) == len(one) + 9
    assert LABELS[:80] == COCO_LABELS and len(set(LABELS)) == len(LABELS) < 128
    for label in ("face", "text", "salient region", "license plate"):  # sdc's offline detectors and tasks
        assert label in LABELS


def test_meta_analyzer_names():
    for name in ("regions(coco)/heuristic", "offline(haar+ppocr+saliency)/grabcut/heuristic",
                 "offline(haar+saliency)/grabcut/openai(qwen2.5-vl)", "grounding-dino(x)/sam(vit_b)/vlm(y)",
                 "", "a//b", "/", "\u00fcber"):
        got, payload = meta_round_trip({"analyzer": name})
        assert got == {"analyzer": name}
    assert len(encode_metadata({"analyzer": "regions(coco)/heuristic"})) == 4  # encoding, fields, count, id
    assert "regions(coco)/heuristic" in ANALYZER_TABLE


def test_format_2_1_only_when_the_analyzer_name_needs_it():
    """Files naming an analyzer-table entry appended by 2.1 say 2.1; all others stay 2.0."""
    from sdc.analysis.backends import Context, offline_grounding
    from sdc.analysis.config import resolve_config

    cfg = resolve_config({}, read_file=False)
    detector = offline_grounding(Context(cfg, lambda key, make: make(), np.zeros((64, 64, 3), np.uint8))).name
    default = f"{detector.replace('+saliency', '')}/box/heuristic"  # what the offline default writes
    for name, minor in ((default, 1), (default.replace(")/", "+saliency)/"), 1),
                        (default.replace("/box/", "/grabcut/"), 1), ("regions(coco)/heuristic", 0),
                        ("offline(haar+saliency)/grabcut/heuristic", 0), ("someone/else", 0)):
        data = write_sdc(sample_file(meta={"analyzer": name}))
        assert data[8:10] == bytes([2, minor]), name
        assert read_sdc(data).metadata == {"analyzer": name}
    assert len(encode_metadata({"analyzer": default})) == 4  # one table token, as 2.0's own defaults
    assert data[8:10] == write_sdc(sample_file(meta=None))[8:10] == bytes([2, 0])
    assert write_sdc(sample_file(meta={"analyzer": default}), version=1)[8:10] == bytes([1, 0])


@pytest.mark.parametrize("size", [(640, 480), (481, 640), (100, 70), (5000, 3000), (40000, 30)])
def test_meta_boxes_within_the_stated_precision(size):
    w, h = size
    rng = np.random.default_rng(w)
    objects = []
    for k in range(40):
        x0, x1 = sorted(rng.uniform(0, w, 2))
        y0, y1 = sorted(rng.uniform(0, h, 2))
        objects.append({"id": k, "label": "car", "box": [x0, y0, x1, y1], "score": 1.0, "level": "L1"})
    objects.append({"id": 40, "label": "car", "box": [0, 0, w, h], "score": 1.0, "level": "L3"})
    got, _ = meta_round_trip({"objects": objects})
    step = 1
    while math.floor(max(w, h) / step + 0.5) > 255:
        step *= 2
    assert step == {640: 4, 481: 4, 100: 1, 5000: 32, 40000: 256}[w]
    for a, b in zip(objects, got["objects"]):
        assert all(isinstance(v, int) and abs(v - u) <= max(step / 2, 0.5) for u, v in zip(a["box"], b["box"]))
        assert b["box"][0] <= b["box"][2] and b["box"][1] <= b["box"][3]


def test_meta_integer_boxes_in_small_images_are_exact():
    objects = [{"id": 0, "label": "dog", "box": [0, 3, 255, 200], "score": 0.5, "level": "L1"}]
    assert meta_round_trip({"objects": objects})[0]["objects"] == objects


def test_meta_scores_and_levels():
    scores = [0.0, 0.0024, 0.5, 0.62, 0.93, 0.9987, 1.0, 1]
    objects = [{"id": k, "label": "dog", "box": [1, 1, 2, 2], "score": s, "level": LEVELS[k % 3]}
               for k, s in enumerate(scores)]
    got, _ = meta_round_trip({"objects": objects})
    for a, b in zip(objects, got["objects"]):
        assert abs(a["score"] - b["score"]) <= 0.0025 and isinstance(b["score"], float)
        assert b["level"] == a["level"]
    # when every score is 1.0 no score is stored
    from sdc.bitstream.metadata import binary_body

    ones = [dict(o, score=1.0) for o in objects]
    assert len(binary_body({"objects": ones})) == len(binary_body({"objects": objects})) - len(objects)


def test_meta_reasons_only_when_given():
    objects = [{"id": 0, "label": "dog", "box": [1, 1, 2, 2], "score": 1.0, "level": "L1", "reason": "the task"},
               {"id": 1, "label": "cat", "box": [1, 1, 2, 2], "score": 1.0, "level": "L2"},
               {"id": 2, "label": "cat", "box": [1, 1, 2, 2], "score": 1.0, "level": "L2", "reason": ""}]
    got, _ = meta_round_trip({"objects": objects})
    assert got["objects"] == objects
    assert "reason" not in got["objects"][1] and got["objects"][2]["reason"] == ""
    without = [{k: v for k, v in o.items() if k != "reason"} for o in objects]
    assert "reason" not in str(meta_round_trip({"objects": without})[0])
    assert len(encode_metadata({"objects": without})) < len(encode_metadata({"objects": objects}))


def test_meta_ids_implicit_or_explicit():
    base = {"label": "dog", "box": [1, 1, 2, 2], "score": 1.0, "level": "L1"}
    for ids in ([0, 1, 2], [5, 6, 7], [2, 0, 1], [0, 4294967295]):
        objects = [dict(base, id=i) for i in ids]
        assert meta_round_trip({"objects": objects})[0]["objects"] == objects
    assert len(encode_metadata({"objects": [dict(base, id=i) for i in (0, 1, 2)]})) < \
        len(encode_metadata({"objects": [dict(base, id=i) for i in (1, 2, 3)]}))


@pytest.mark.parametrize("meta", [
    {"analyzer": "x", "extra": [1, 2]},
    {"objects": [{"id": 0, "label": "dog", "level": "L1"}]},                       # no box, no score
    {"objects": [{"id": 0, "label": "dog", "box": [-1, 0, 5, 5], "score": 1, "level": "L1"}]},
    {"objects": [{"id": 0, "label": "dog", "box": [5, 0, 1, 5], "score": 1, "level": "L1"}]},
    {"objects": [{"id": 0, "label": "dog", "box": [0, 0, 5, 5], "score": 1.5, "level": "L1"}]},
    {"objects": [{"id": 0, "label": "dog", "box": [0, 0, 5, 5], "score": 1, "level": "other"}]},
    {"objects": [{"id": -1, "label": "dog", "box": [0, 0, 5, 5], "score": 1, "level": "L1"}]},
    {"objects": [{"id": 0, "label": 7, "box": [0, 0, 5, 5], "score": 1, "level": "L1"}]},
    {"objects": [{"id": 0, "label": "dog", "box": [0, 0, 5, 5], "score": True, "level": "L1"}]},
    {"objects": [{"id": 0, "label": "dog", "box": [0, 0, 5, 5], "score": 1, "level": "L1", "mask": "x"}]},
    {"objects": [{"id": 0, "label": "dog", "box": [0, 0, 5, 5e12], "score": 1, "level": "L1"}]},
    {"task": ["a"]},
], ids=["extra-key", "missing-keys", "negative-box", "inverted-box", "score-over-1", "level-other",
        "negative-id", "label-not-str", "bool-score", "extra-object-key", "huge-box", "task-not-str"])
def test_meta_outside_the_schema_is_stored_as_json_exactly(meta):
    payload = encode_metadata(meta)
    assert payload[0] == 3  # JSON
    assert decode_metadata(payload) == meta


def test_meta_that_no_encoding_can_hold_is_refused():
    for version in VERSIONS:
        with pytest.raises(ValueError, match="not JSON-serializable"):
            encode_metadata({"caption_short": "lone surrogate \ud800"}, version=version)


def test_meta_long_text_is_deflated():
    caption = "a long caption written by a language model about a dog on a lawn, " * 6
    objects = [{"id": k, "label": "dog", "box": [k, k, 9, 9], "score": 0.9, "level": "L1",
                "reason": "the dog the task asks for, in the centre of the picture"} for k in range(6)]
    meta = {"analyzer": "x/y/openai(m)", "caption_long": caption, "objects": objects}
    payload = encode_metadata(meta)
    assert payload[0] == 2  # binary body, deflated
    got = decode_metadata(payload)
    assert got["caption_long"] == caption and [o["reason"] for o in got["objects"]] == [o["reason"] for o in objects]
    from sdc.bitstream.metadata import binary_body

    assert len(payload) < len(binary_body(meta)) and len(payload) < len(encode_metadata(meta, version=1))


def test_analysis_metadata_keeps_reasons_only_from_an_lmm():
    from sdc.analysis.core import Analysis, DetectedObject

    def analysis(analyzer: str) -> Analysis:
        objs = [DetectedObject(id=0, label="dog", box=(1, 2, 30, 40), score=0.8, level="L1", reason="why")]
        return Analysis(width=64, height=48, objects=objs, analyzer=analyzer)

    for analyzer, kept in (("regions(coco)/heuristic", False), ("offline(haar+saliency)/grabcut/heuristic", False),
                           ("grounding-dino(t)/sam(vit_b)/openai(qwen)", True), ("regions(coco)/given", True),
                           ("", True)):
        a = analysis(analyzer)
        assert a.ranked_by_heuristic is not kept
        assert ("reason" in a.metadata()["objects"][0]) is kept, analyzer
        assert decode_metadata(encode_metadata(a.metadata())) == a.metadata()


def _binary(body: bytes) -> bytes:
    return b"\x01" + body


@pytest.mark.parametrize("payload, what", [
    (_binary(b"\x10\x00\xff\xff\xff\xff\x0f"), "do not fit"),              # 2**32-1 objects
    (_binary(b"\x10\x00\x80\x80\x80\x80\x80\x01"), "longer than 5 bytes"),
    (_binary(b"\x10\x00\xff\xff\xff\xff\x1f"), "over 2\\*\\*32-1"),
    (_binary(b"\x02\xff\xff\xff\xff\x0f"), "ends inside task"),            # a 4 GiB string
    (_binary(b"\x01\x00"), "analyzer part count 0"),
    (_binary(b"\x01\xff\xff\xff\xff\x0f"), "does not fit"),
    (_binary(b"\x20"), "without objects"),
    (_binary(b"\x10\x19\x00"), "box shift 25"),
    (_binary(b"\x10\x00\x01\x03\x00\x00\x00\x01\x01"), "bad object levels"),   # level 3
    (_binary(b"\x10\x00\x01\x10\x00\x00\x00\x01\x01"), "bad object levels"),   # unused bits set
    (_binary(b"\x10\x00\x01\x00\x00\x05\x00\x01\x01"), "x1 < x0"),
    (_binary(b"\x30\x00\x01\x00\x00\x00\x00\x01\x01\xc9"), "score 201"),
    (_binary(b"\x10\x00\x01\x00\x85\x01\xff\x00\x00\x01\x01"), "not valid UTF-8"),
    (_binary(b"\x00\x00"), "1 unused bytes"),
    (_binary(b""), "ends before field flags"),
    (b"\x00", "unsupported metadata encoding 0"),
    (b"\x04", "unsupported metadata encoding 4"),
    (b"", "ends before encoding"),
], ids=["count", "varint-6", "varint-big", "string", "no-parts", "parts", "flags", "shift", "level3",
        "level-bits", "box", "score", "utf8", "trailing", "empty-body", "enc0", "enc4", "empty"])
def test_meta_binary_malformed(payload, what):
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=what) as e:
            decode_metadata(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.chunk == "META" and "\n" not in str(e.value)
    assert peak < 1_000_000  # refused before allocating anything the sizes claim
    with pytest.raises(FormatError, match=what):
        read_sdc(set_chunk(sample_bytes(), "META", payload))


@pytest.mark.parametrize("encoding", [2, 3])
def test_meta_deflated_bomb_is_bounded(encoding):
    bomb = zlib.compress(b"\x00" * 50_000_000, 9)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="more than the 100 bytes declared") as e:
            decode_metadata(bytes([encoding, 100]) + bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.chunk == "META" and peak < 2_000_000
    with pytest.raises(FormatError, match="limit"):
        decode_metadata(bytes([encoding]) + b"\x81\x80\x80\x08" + bomb)  # 16 MiB + 1
    for good in (encode_metadata({"analyzer": "x" * 300, "task": "y" * 300}),
                 encode_metadata({"x": "y" * 300})):
        assert good[0] in (2, 3)
        with pytest.raises(FormatError, match="incomplete"):
            decode_metadata(good[:-3])


# ------------------------------------------------------------------ metadata, format 1
def test_meta_1_0_is_json():
    payload = encode_metadata(META, version=1)
    (size,) = struct.unpack_from(">I", payload)
    assert len(zlib.decompress(payload[4:])) == size
    assert decode_metadata(payload, version=1) == META


def test_metadata_bomb_is_bounded_1_0():
    bomb = zlib.compress(b" " * 50_000_000, 9)  # ~50 KB that inflates to 50 MB
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="more than the 100 bytes declared") as e:
            decode_metadata(struct.pack(">I", 100) + bomb, version=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.chunk == "META" and peak < 2_000_000
    with pytest.raises(FormatError, match="limit"):
        decode_metadata(struct.pack(">I", MAX_META_JSON + 1) + bomb, version=1)


@pytest.mark.parametrize("raw, declared, what", [
    (b"[1, 2]", None, "not an object"),
    (b'{"a": NaN}', None, "not valid"),
    (b'{"a": 1', None, "not valid"),
    (b'{"a": "\xff"}', None, "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, None, "not valid"),
    (b'{"a": 1}', 9, "inflates to 8 bytes, 9 declared"),
], ids=["array", "nan", "unterminated", "bad-utf8", "deep-nesting", "short"])
@pytest.mark.parametrize("version", VERSIONS)
def test_metadata_json_malformed(raw, declared, what, version):
    size = len(raw) if declared is None else declared
    if version == 1:
        payload = struct.pack(">I", size) + zlib.compress(raw)
    else:
        head = bytearray([3])
        while size >= 0x80:
            head.append(size & 0x7F | 0x80)
            size >>= 7
        payload = bytes(head) + bytes([size]) + zlib.compress(raw)
    with pytest.raises(FormatError, match=what) as e:
        decode_metadata(payload, version=version)
    assert e.value.chunk == "META"
    with pytest.raises(FormatError, match=what):  # and inside a file
        read_sdc(set_chunk(sample_bytes(version=version), "META", payload))


def test_metadata_stream_problems_1_0():
    good = encode_metadata({"a": 1}, version=1)
    for payload, what in ((good[:-3], "incomplete"), (good + b"x", "after the metadata"),
                          (good[:4] + b"garbage!", "not a valid zlib"), (good[:2], "shorter")):
        with pytest.raises(FormatError, match=what):
            decode_metadata(payload, version=1)


# ------------------------------------------------------------------ header, format 2
def test_header_2_0_layout():
    data = sample_bytes()
    hl = header_length(data)
    spans = chunk_spans(data)
    assert data[:12] == MAGIC + b"\x02\x00" + struct.pack(">H", hl)
    assert data[12:15] == b"\x96\x01\x46"                    # width 150, height 70
    assert data[15:19] == CODEC_ID[:4]                         # the first 4 bytes of the codec id
    assert data[19:25] == b"\x08\x06\x04\x02\x0f\x7f"          # qualities, levels written, chunk set
    pos = 25
    for name, s, e in spans:                                   # every length fits in one varint byte here
        assert data[pos] == e - s and struct.unpack_from(">I", data, pos + 1)[0] == crc32c(data[s:e]), name
        pos += 5
    assert pos == hl - 4 and struct.unpack_from(">I", data, pos)[0] == crc32c(data[:pos])
    assert spans[0][1] == hl and spans[-1][2] == len(data)


@pytest.mark.parametrize("edit, what", [
    (lambda h: h.update(width=0), "bad image size"),
    (lambda h: h.update(qualities=b"\x01\x00\x01\x01"), "quality 0"),
    (lambda h: h.update(written=0x1F), "reserved header bits"),
    (lambda h: h.update(written=0x0E), "not written"),
    (lambda h: h.update(entries=[e for e in h["entries"] if e[0] != "RMAP"]), "no RMAP chunk"),
    (lambda h: h.update(entries=[e for e in h["entries"] if e[0] != "HYPR"]), "no HYPR chunk"),
    (lambda h: h.update(entries=h["entries"] + [(b"\x05", 0, 0)]), "unknown critical chunk 0x05"),
    (lambda h: h.update(entries=h["entries"] + [(b"\x7f", 0, 0)]), "unknown critical chunk 0x7f"),
    (lambda h: h.update(entries=h["entries"] + [(b"\x85", 0, 0)] * 2), "listed twice"),
], ids=["width0", "quality0", "reserved", "not-written", "no-rmap", "no-hypr", "critical", "critical7f", "twice"])
def test_header_2_0_field_checks(edit, what):
    h = split_header(sample_bytes())
    edit(h)
    data = sample_bytes()
    bad = build_header(h) + data[header_length(data):]
    with pytest.raises(FormatError, match=what) as e:
        read_sdc(bad)
    assert e.value.chunk == "header"


def _raw_header(fields: bytes, extra: bytes = b"") -> bytes:
    """A 2.0 header whose bytes after the preamble are `fields` (CRC valid)."""
    head = MAGIC + b"\x02\x00" + struct.pack(">H", 12 + len(fields) + 4) + fields
    return head + struct.pack(">I", crc32c(head)) + extra


@pytest.mark.parametrize("fields, what", [
    (b"\xff\xff\xff\xff\x1f", "width .* over 2\\*\\*32-1"),
    (b"\x80\x80\x80\x80\x80\x01", "longer than 5 bytes"),
    (b"\x80\x01\x81\x00", "non-minimal varint in height"),
    (b"\x01\x01" + bytes(4) + b"\x01" * 4, "ends before levels written"),
    (b"\x01\x01" + bytes(4) + b"\x01" * 4 + b"\x0f\x06\x05\x00\x00\x00", "ends inside CRC of RMAP"),
    (b"\x01\x01" + bytes(4) + b"\x01" * 4 + b"\x0f\x06" + bytes(10) + b"\x00", "1 unused bytes"),
    (b"\x01\x01" + bytes(4) + b"\x01" * 4 + b"\x0f\x86" + bytes(10) + b"\x00", "bad extra chunk count 0"),
    (b"\x01\x01" + bytes(4) + b"\x01" * 4 + b"\x0f\x86" + bytes(10) + b"\xff", "bad extra chunk count 255"),
], ids=["width-huge", "varint-6", "non-minimal", "short", "entry", "unused", "extras0", "extras255"])
def test_header_2_0_malformed_fields(fields, what):
    with pytest.raises(FormatError, match=what) as e:
        read_sdc(_raw_header(fields))
    assert e.value.chunk == "header" and "\n" not in str(e.value)


def test_header_2_0_extra_chunks_past_32_refused():
    h = split_header(sample_bytes())
    h["entries"] = h["entries"] + [(bytes([0x80 + k]), 0, 0) for k in range(26)]  # 7 + 26 = 33
    with pytest.raises(FormatError, match="bad extra chunk count 26"):
        read_sdc(build_header(h) + sample_bytes()[header_length(sample_bytes()):])


@pytest.mark.parametrize("version", VERSIONS)
def test_ancillary_chunk_is_skipped_but_checked(version):
    data = sample_bytes(version=version)
    code = b"xtra" if version == 1 else b"\x85"
    name = "xtra" if version == 1 else "0x85"
    h = split_header(data)
    h["entries"] = h["entries"] + [(code, 5, crc32c(b"hello"))]
    anc = build_header(h) + data[header_length(data):] + b"hello"
    f = read_sdc(anc)
    assert f.levels == read_sdc(data).levels
    out = truncate_sdc(anc, ("L1",))
    assert out.endswith(b"hello") and [n for n, _, _ in chunk_spans(out)][-1] == name
    assert [c["name"] for c in describe_sdc(anc)["chunks"]][-1] == name
    assert describe_sdc(anc)["levels"]["other"]["cumulative_bytes"] == len(anc)
    bad = anc[:-1] + b"!"
    with pytest.raises(FormatError, match=f"CRC mismatch in chunk {name}") as e:
        read_sdc(bad)
    assert e.value.chunk == name
    assert read_sdc(anc[:-2]).levels == f.levels  # cut inside the ancillary chunk: still every level


# ------------------------------------------------------------------ header, format 1
def _patched(data: bytes, fmt: str, offset: int, *values) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return refresh_header_crc(buf)


def test_header_1_0_field_checks():
    data = sample_bytes(version=1)
    with pytest.raises(FormatError, match="bad image size"):
        read_sdc(_patched(data, ">I", 12, 0))
    with pytest.raises(FormatError, match="quality 0"):
        read_sdc(_patched(data, ">B", 29, 0))
    with pytest.raises(FormatError, match="does not match"):
        read_sdc(_patched(data, ">B", 34, 5))
    with pytest.raises(FormatError, match="bad chunk count"):
        read_sdc(_patched(data, ">B", 34, 1))
    with pytest.raises(FormatError, match="not written"):
        read_sdc(_patched(data, ">B", 32, 0b1110))
    for off, val in ((33, 1), (35, 1), (32, 0x1F)):
        with pytest.raises(FormatError, match="reserved"):
            read_sdc(_patched(data, ">B", off, val))


def test_index_1_0_checks():
    data = sample_bytes(version=1)
    rmap, hypr = entry_offset(data, "RMAP"), entry_offset(data, "HYPR")
    with pytest.raises(FormatError, match="out of order"):
        read_sdc(_patched(_patched(data, ">4s", rmap, b"HYPR"), ">4s", hypr, b"RMAP"))
    with pytest.raises(FormatError, match="listed twice"):
        read_sdc(_patched(data, ">4s", rmap, b"HYPR"))
    with pytest.raises(FormatError, match="unknown critical chunk ZZZZ"):
        read_sdc(_patched(data, ">4s", entry_offset(data, "L3"), b"ZZZZ"))
    with pytest.raises(FormatError, match="bad chunk type"):
        read_sdc(_patched(data, ">4s", rmap, b"RM P"))
    with pytest.raises(FormatError, match="no HYPR chunk"):
        read_sdc(_patched(data, ">4s", hypr, b"hYPR"))


# ------------------------------------------------------------------ both headers
@pytest.mark.parametrize("version", VERSIONS)
def test_unsupported_major_and_newer_minor_versions(version):
    data = sample_bytes(version=version)
    with pytest.raises(FormatError, match=r"unsupported sdc format version 3\.1: this sdc reads versions "
                                          r"1\.x and 2\.x") as e:
        read_sdc(_patched(data, ">BB", 8, 3, 1))
    assert e.value.chunk == "header"
    assert read_sdc(patch_header(data, minor=7)).levels  # a newer minor version reads


@pytest.mark.parametrize("version", VERSIONS)
def test_huge_image_rejected_before_allocation(version):
    data = patch_header(sample_bytes(version=version), width=100_000, height=100_000)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="over the limit") as e:
            read_sdc(data)
        with pytest.raises(FormatError, match="over the limit"):
            describe_sdc(data)
        if version == 1:  # with the limit lifted, the RMAP size check still comes before allocating the map
            with pytest.raises(FormatError, match="region map is"):
                read_sdc(data, max_pixels=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.chunk == "header"
    assert peak < 1_000_000
    assert read_header(sample_bytes(version=version), max_pixels=150 * 70).width == 150
    with pytest.raises(FormatError, match="over the limit"):
        read_sdc(sample_bytes(version=version), max_pixels=150 * 70 - 1)
    assert DEFAULT_MAX_PIXELS >= 8192 * 8192


@pytest.mark.parametrize("version", VERSIONS)
def test_every_prefix_decodes_complete_levels_or_says_why(version):
    data = sample_bytes(version=version)
    hl = header_length(data)
    spans = {name: (s, e) for name, s, e in chunk_spans(data)}
    hypr_end = spans["HYPR"][1]
    for n in range(len(data) + 1):
        if n < hypr_end:
            with pytest.raises(FormatError) as e:
                read_sdc(data[:n])
            msg = str(e.value)
            assert "\n" not in msg
            if n < hl:
                assert e.value.chunk == "header"
                assert ("truncated header" in msg or "empty" in msg), msg
            else:
                assert e.value.chunk in ("RMAP", "HYPR") and "no level can be decoded" in msg
        else:
            f = read_sdc(data[:n])
            complete = tuple(lv for lv in LEVELS if spans[lv][1] <= n)
            assert tuple(f.levels) == complete
            assert f.missing_levels == tuple(lv for lv in LEVELS if lv not in complete)
            # describe agrees, and truncating the prefix gives a complete file of that size
            d = describe_sdc(data[:n])
            assert d["present_levels"] == list(complete)
            out = truncate_sdc(data[:n], LEVELS)
            assert read_sdc(out).levels == f.levels
            assert len(out) == (d["levels"][complete[-1]]["cumulative_bytes"] if complete
                                else truncated_size(data, ()))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_single_bit_flip_is_detected_and_named(version):
    data = sample_bytes(version=version)
    hl = header_length(data)
    spans = chunk_spans(data)

    def owner(i: int) -> str:
        if i < hl:
            return "header"
        return next(name for name, s, e in spans if s <= i < e)

    for i in range(len(data)):
        expected = owner(i)
        buf = bytearray(data)
        for bit in range(8):
            buf[i] = data[i] ^ (1 << bit)
            with pytest.raises(FormatError) as e:
                read_sdc(bytes(buf))
            assert e.value.chunk == expected, (i, bit, str(e.value))
            with pytest.raises(FormatError):
                truncate_sdc(bytes(buf), LEVELS)
        if i >= hl:
            buf[i] = data[i] ^ 1
            assert any(expected in p for p in describe_sdc(bytes(buf))["problems"])


@pytest.mark.parametrize("version", VERSIONS)
def test_truncate_checks_the_crc_of_chunks_it_drops(version):
    data = bytearray(sample_bytes(version=version))
    s, _ = next((s, e) for n, s, e in chunk_spans(bytes(data)) if n == "other")
    data[s] ^= 1
    with pytest.raises(FormatError, match="CRC mismatch in chunk other"):
        truncate_sdc(bytes(data), ("L1",))


def test_non_sdc_inputs():
    cases = {
        b"": "empty",
        b"\x89PNG\r\n\x1a\n" + bytes(40): "PNG",
        b"\xff\xd8\xff\xe0" + bytes(40): "JPEG",
        b'{"objects": []}': "JSON",
        b"hello world, this is text": "not an sdc file",
        MAGIC[:5] + b"xyz": "not an sdc file",
    }
    for data, what in cases.items():
        with pytest.raises(FormatError, match=what) as e:
            read_sdc(data)
        assert e.value.chunk == "header"
        assert isinstance(e.value, BadInputError) and e.value.exit_code == 2
        assert not is_sdc(data)
    assert is_sdc(sample_bytes()[:8]) and not is_sdc(MAGIC[:7])


@pytest.mark.parametrize("version", VERSIONS)
def test_trailing_data(version):
    with pytest.raises(FormatError, match="3 bytes of trailing data"):
        read_sdc(sample_bytes(version=version) + b"abc")


def test_write_rejects_bad_input():
    f = sample_file()
    f.region_map = np.zeros((3, 3), np.uint8)
    with pytest.raises(ValueError, match="region map shape"):
        write_sdc(f)
    f = sample_file()
    f.region_map = f.region_map + 4
    with pytest.raises(ValueError, match="0..3"):
        write_sdc(f)
    f = sample_file()
    f.header.qualities["L1"] = 0
    with pytest.raises(ValueError, match="quality"):
        write_sdc(f)
    f = sample_file()
    f.header.codec_id = b"short"
    with pytest.raises(ValueError, match="codec_id"):
        write_sdc(f)
    with pytest.raises(ValueError, match="both present and missing"):
        write_sdc(sample_file(levels=("L1",), missing=("L1",)))
    for version in VERSIONS:
        with pytest.raises(ValueError, match="JSON"):
            write_sdc(sample_file(meta={"x": object()}), version=version)
    with pytest.raises(ValueError, match="unknown level"):
        truncate_sdc(sample_bytes(), ("L4",))


# ------------------------------------------------------------------ describe
@pytest.mark.parametrize("version", VERSIONS)
def test_describe_counts_whole_file(version):
    data = sample_bytes(version=version)
    d = describe_sdc(data)
    pixels = 150 * 70
    assert d["format_version"] == f"{version}.0"
    assert d["file_bytes"] == len(data) and d["bpp"] == pytest.approx(8 * len(data) / pixels)
    assert [c["name"] for c in d["chunks"]] == ["header", "META", "RMAP", "HYPR", "L1", "L2", "L3", "other"]
    assert sum(c["length"] for c in d["chunks"]) == len(data)
    assert all(c["status"] == "ok" for c in d["chunks"])
    for k, lv in enumerate(LEVELS):
        size = len(truncate_sdc(data, LEVELS[:k + 1]))
        assert d["levels"][lv]["cumulative_bytes"] == size == truncated_size(data, LEVELS[:k + 1])
        assert d["levels"][lv]["bpp"] == pytest.approx(8 * size / pixels)
    assert d["levels"]["other"]["cumulative_bytes"] == len(data)
    rm = read_sdc(data).region_map
    assert [d["levels"][lv]["region_cells"] for lv in LEVELS] == [int((rm == i).sum()) for i in range(4)]
    assert d["metadata"]["analyzer"] == "test(fixed)" and d["metadata"]["task"] == "find the dog"
    assert [o["label"] for o in d["metadata"]["objects"]] == ["dog", "ball", "tree"]
    assert d["metadata"]["captions"] == {"caption_short": "a dog on grass"}
    assert d["codec_id"] == CODEC_ID[:8 if version == 1 else 4].hex() and d["problems"] == []


@pytest.mark.parametrize("version", VERSIONS)
def test_describe_bpp_of_a_file_missing_some_levels(version):
    """With levels dropped or never written, the per-level sizes still equal truncate's."""
    data = truncate_sdc(sample_bytes(version=version, levels=("L1", "L3", "other"), missing=("L2",)), ("L1", "other"))
    d = describe_sdc(data)
    assert d["levels"]["L1"]["cumulative_bytes"] == len(truncate_sdc(data, ("L1",)))
    assert d["levels"]["other"]["cumulative_bytes"] == len(data)
    assert d["levels"]["L2"]["status"] == "dropped" and d["levels"]["L3"]["status"] == "dropped"


@pytest.mark.parametrize("version", VERSIONS)
def test_describe_truncated_and_dropped(version):
    data = sample_bytes(version=version)
    cut = data[:chunk_spans(data)[-2][2] - 1]  # ends inside L3
    d = describe_sdc(cut)
    assert d["present_levels"] == ["L1", "L2"] and d["missing_levels"] == ["L3", "other"]
    assert d["levels"]["L3"]["status"] == "missing"
    assert d["chunks"][-2]["status"].startswith("truncated")
    assert d["chunks"][-1]["status"] == "missing"
    d = describe_sdc(truncate_sdc(data, ("L2",)))
    assert d["levels"]["L1"]["status"] == "dropped" and d["present_levels"] == ["L2"]


@pytest.mark.parametrize("version", VERSIONS)
def test_describe_tolerates_odd_metadata(version):
    meta = {"objects": [1, {"label": 5, "box": "x", "score": True}], "task": ["a"]}
    d = describe_sdc(write_sdc(sample_file(meta=meta), version=version))
    assert d["metadata"]["objects"] == [{"label": "5", "level": None, "score": None, "box": None,
                                         "reason": None}]
    assert d["metadata"]["task"] == '["a"]'


def test_describe_skips_cell_counts_of_maps_over_the_pixel_limit():
    """Counting cells decodes the map; with the limit lifted (sdc truncate), not beyond the default."""
    data = patch_header(sample_bytes(meta=None), width=10_000, height=8_000)
    d = describe_sdc(data, max_pixels=None)
    assert "region_cells" not in d["levels"]["L1"]


# ------------------------------------------------------------------ fuzz
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_reader_only_raises_format_errors(data):
    version = data.draw(st.sampled_from(VERSIONS))
    base = sample_bytes(version=version, meta=META if data.draw(st.booleans()) else None)
    mode = data.draw(st.sampled_from(["mutate", "mutate-fixcrc", "random", "splice"]))
    if mode == "random":
        buf = MAGIC + data.draw(st.binary(max_size=300))
    else:
        buf = bytearray(base)
        for _ in range(data.draw(st.integers(1, 6))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
        if mode == "splice":
            cut = data.draw(st.integers(0, len(buf)))
            buf = buf[:cut] + data.draw(st.binary(max_size=40))
        if mode == "mutate-fixcrc" and len(buf) >= header_length(buf) >= 16:
            buf = refresh_header_crc(buf)
        buf = bytes(buf)
    for fn in (read_sdc, describe_sdc, lambda b: truncate_sdc(b, ("L1",))):
        try:
            fn(buf)
        except FormatError as e:
            assert str(e) and "\n" not in str(e)


# ------------------------------------------------------------------ DISP (2.1)
def test_display_size_round_trip_and_version():
    from dataclasses import replace as dc_replace

    plain = sample_file()  # 150 x 70
    data = write_sdc(dc_replace(plain, display_size=(300, 139)))
    assert data[8:10] == bytes([2, 1])  # DISP makes the file 2.1
    assert len(data) == len(write_sdc(plain)) + 11  # count, type, length, CRC; two 2-byte varints
    f = read_sdc(data)
    assert f.display_size == (300, 139) and (f.header.width, f.header.height) == (150, 70)
    assert read_sdc(write_sdc(plain)).display_size is None
    # truncation keeps it; a file cut short loses it (it comes last) and decodes at its coded size
    assert read_sdc(truncate_sdc(data, ("L1",))).display_size == (300, 139)
    cut = read_sdc(data[:-1])
    assert cut.display_size is None and cut.levels == f.levels
    d = describe_sdc(data)
    assert d["display_size"] == [300, 139] and d["chunks"][-1]["name"] == "DISP"
    assert d["bpp"] == pytest.approx(8 * len(data) / (300 * 139))  # bits per pixel of the picture shown


@pytest.mark.parametrize("display, problem", [((149, 70), "from the coded size"), ((150, 69), "from the coded size"),
                                              ((2401, 70), "16 times"), ((150, 1121), "16 times")])
def test_display_size_out_of_range_is_refused(display, problem):
    from dataclasses import replace as dc_replace

    with pytest.raises(ValueError, match=problem):
        write_sdc(dc_replace(sample_file(), display_size=display))
    # the same payload written by hand is a damaged DISP chunk for a reader
    from sdc.bitstream.wire import put_varint

    good = write_sdc(dc_replace(sample_file(), display_size=(150, 70)))
    payload = bytearray()
    put_varint(payload, display[0])
    put_varint(payload, display[1])
    bad = set_chunk(good, "0x80", bytes(payload))
    with pytest.raises(FormatError, match=problem) as e:
        read_sdc(bad)
    assert e.value.chunk == "DISP"
    assert any(problem in p for p in describe_sdc(bad)["problems"])


def test_display_size_is_bounded_by_the_pixel_limit_and_absent_from_format_1():
    from dataclasses import replace as dc_replace

    data = write_sdc(dc_replace(sample_file(), display_size=(1500, 700)))
    assert read_sdc(data, max_pixels=1500 * 700).display_size == (1500, 700)
    with pytest.raises(FormatError, match="over the limit"):
        read_sdc(data, max_pixels=1500 * 700 - 1)
    with pytest.raises(ValueError, match="format 1 has no display size"):
        write_sdc(dc_replace(sample_file(), display_size=(300, 140)), version=1)

