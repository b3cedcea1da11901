"""The .sdc container: round trips, truncation, limits and malformed input."""
from __future__ import annotations

import itertools
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdc.bitstream import (
    DEFAULT_MAX_PIXELS, MAGIC, SdcFile, describe_sdc, grid_size, is_sdc, read_header,
    read_sdc, truncate_sdc, write_sdc,
)
from sdc.bitstream.metadata import MAX_META_JSON, decode_metadata, encode_metadata
from sdc.bitstream.regionmap import decode_cells, encode_cells, encode_region_map
from sdc.errors import BadInputError, FormatError
from sdc.levels import LEVELS

from bitstream_helpers import (
    CODEC_ID, META, chunk_spans, header_length, refresh_header_crc, sample_bytes, sample_file,
    set_chunk,
)

SUBSETS = [tuple(c) for r in range(len(LEVELS) + 1) for c in itertools.combinations(LEVELS, r)]


def same_file(a: SdcFile, b: SdcFile) -> bool:
    return (a.header == b.header and np.array_equal(a.region_map, b.region_map)
            and a.region_map.dtype == np.uint8 and a.hyperprior == b.hyperprior
            and a.levels == b.levels and a.metadata == b.metadata
            and tuple(a.missing_levels) == tuple(b.missing_levels))


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("quality", range(1, 9))
def test_round_trip_every_quality(quality):
    f = sample_file(qualities={lv: quality for lv in LEVELS})
    g = read_sdc(write_sdc(f))
    assert same_file(f, g)
    assert g.header.qualities == {lv: quality for lv in LEVELS}


def test_round_trip_mixed_and_extreme_qualities():
    f = sample_file(qualities={"L1": 255, "L2": 1, "L3": 128, "other": 7})
    assert same_file(f, read_sdc(write_sdc(f)))


@pytest.mark.parametrize("keep", SUBSETS)
def test_round_trip_every_level_subset(keep):
    missing = tuple(lv for lv in LEVELS if lv not in keep)
    f = sample_file(levels=keep, missing=missing)
    g = read_sdc(write_sdc(f))
    assert same_file(f, g)
    assert tuple(g.levels) == keep  # keys in LEVELS order


@pytest.mark.parametrize("keep", SUBSETS)
def test_truncate_every_level_subset(keep):
    data = sample_bytes()
    out = truncate_sdc(data, keep)
    g = read_sdc(out)
    full = read_sdc(data)
    assert tuple(g.levels) == keep
    assert g.levels == {lv: full.levels[lv] for lv in keep}
    assert g.missing_levels == tuple(lv for lv in LEVELS if lv not in keep)
    assert g.metadata == META and np.array_equal(g.region_map, full.region_map)
    assert len(out) == len(data) - sum(12 + len(full.levels[lv]) for lv in LEVELS if lv not in keep)
    # truncating again is idempotent, and keeping more than is there keeps what is there
    assert truncate_sdc(out, keep) == out
    assert truncate_sdc(out, LEVELS) == out


def test_levels_not_written_are_not_missing():
    f = sample_file(levels=("L1", "L2"), missing=())
    g = read_sdc(write_sdc(f))
    assert tuple(g.levels) == ("L1", "L2") and g.missing_levels == ()
    assert describe_sdc(write_sdc(f))["levels"]["L3"]["status"] == "not written"


def test_no_meta():
    f = sample_file(meta=None)
    data = write_sdc(f)
    assert b"META" not in data[:header_length(data)]
    assert read_sdc(data).metadata is None
    assert len(data) < len(sample_bytes())


def test_metadata_unicode_and_numpy_values():
    meta = {"caption_short": "ein Hund \u00fcber Gras \U0001F415", "objects": [
        {"score": np.float32(0.5), "box": np.array([1, 2, 3, 4]), "id": np.int64(3)}]}
    g = read_sdc(write_sdc(sample_file(meta=meta)))
    assert g.metadata == {"caption_short": "ein Hund \u00fcber Gras \U0001F415",
                          "objects": [{"score": 0.5, "box": [1, 2, 3, 4], "id": 3}]}


@pytest.mark.parametrize("size", [(1, 1), (64, 64), (65, 63), (481, 321), (2000, 17)])
def test_image_sizes_and_grid(size):
    w, h = size
    f = sample_file(width=w, height=h, seed=w)
    g = read_sdc(write_sdc(f))
    assert g.region_map.shape == grid_size(w, h) == (-(-h // 64) * 4, -(-w // 64) * 4)
    assert same_file(f, g)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12), st.integers(1, 40), st.data())
def test_region_map_round_trip_any_map(h, w, data):
    cells = data.draw(st.lists(st.integers(0, 3), min_size=h * w, max_size=h * w))
    if data.draw(st.booleans()):  # blocky maps, the usual case
        cells = [cells[(r // 3) * w + (c // 5) * 5] for r in range(h) for c in range(w)]
    payload = encode_cells(h, w, bytes(cells))
    assert decode_cells(payload, (h, w)) == bytes(cells)


def test_region_map_compact():
    rm = np.full((128, 128), 3, np.uint8)  # a 2048 x 2048 image
    rm[10:60, 20:90] = 0
    rm[70:100, 5:40] = 1
    payload = encode_region_map(rm)
    assert len(payload) < 60
    assert np.array_equal(np.frombuffer(decode_cells(payload, (128, 128)), np.uint8).reshape(128, 128), rm)


def test_region_map_multibyte_varint():
    payload = encode_cells(1, 300, bytes([2]) * 300)
    # run of 300 of level 2: v = (299 << 2) | 2 = 1198 = 0xae 0x09
    assert payload == struct.pack(">IIB", 1, 300, 1) + bytes([1, 0xAE, 0x09])
    assert decode_cells(payload, (1, 300)) == bytes([2]) * 300


@pytest.mark.parametrize("body, what", [
    (b"\x01\x1f", "ends in the middle"),             # only 8 of 9 cells... row of 9
    (b"\x00\x23", "row group of 0"),                 # R = 0
    (b"\x02\x23", "row group of 2"),                 # R > h
    (b"\x01\x27", "overflows"),                      # run of 10 > 9
    (b"\x01\x23\x00", "unused bytes"),               # trailing byte
    (b"\x81\x00\x23", "non-minimal varint"),         # R = 1 written in 2 bytes
    (b"\x01\xff\xff\xff\xff\xff\x01", "longer than 5 bytes"),
])
def test_region_map_malformed(body, what):
    payload = struct.pack(">IIB", 1, 9, 1) + body
    with pytest.raises(FormatError, match=what) as e:
        decode_cells(payload, (1, 9))
    assert e.value.chunk == "RMAP"


def test_region_map_wrong_size_or_encoding():
    good = encode_cells(4, 4, bytes(16))
    with pytest.raises(FormatError, match="header needs 8x4") as e:
        decode_cells(good, (8, 4))
    assert e.value.chunk == "RMAP"
    with pytest.raises(FormatError, match="encoding 2"):
        decode_cells(good[:8] + b"\x02" + good[9:], (4, 4))
    with pytest.raises(FormatError, match="shorter"):
        decode_cells(good[:5], (4, 4))


def test_region_map_size_mismatch_in_file():
    data = sample_bytes()
    bad = set_chunk(data, "RMAP", encode_cells(4, 4, bytes(16)))
    with pytest.raises(FormatError, match="region map is 4x4") as e:
        read_sdc(bad)
    assert e.value.chunk == "RMAP"


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
    with pytest.raises(ValueError, match="JSON"):
        write_sdc(sample_file(meta={"x": object()}))
    with pytest.raises(ValueError, match="unknown level"):
        truncate_sdc(sample_bytes(), ("L4",))


# ------------------------------------------------------------------ prefixes and flips
def test_every_prefix_decodes_complete_levels_or_says_why():
    data = sample_bytes()
    hl = header_length(data)
    spans = {name: (s, e) for name, s, e in chunk_spans(data)}
    hypr_end = spans["HYPR"][1]
    for n in range(len(data) + 1):
        if n < hypr_end:
            with pytest.raises(FormatError) as e:
                read_sdc(data[:n])
            msg = str(e.value)
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
            # describe agrees, and truncating the prefix gives a complete file
            d = describe_sdc(data[:n])
            assert d["present_levels"] == list(complete)
            assert read_sdc(truncate_sdc(data[:n], LEVELS)).levels == f.levels


def test_every_single_bit_flip_is_detected_and_named():
    data = sample_bytes()
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


def test_trailing_data():
    with pytest.raises(FormatError, match="3 bytes of trailing data"):
        read_sdc(sample_bytes() + b"abc")


def test_unsupported_major_version_and_reserved_bits():
    data = bytearray(sample_bytes())
    data[8] = 2
    with pytest.raises(FormatError, match=r"unsupported sdc format version 2\.0") as e:
        read_sdc(refresh_header_crc(data))
    assert e.value.chunk == "header"
    data = bytearray(sample_bytes())
    data[9] = 7  # a newer minor version reads fine
    assert read_sdc(refresh_header_crc(data)).levels
    for off, val in ((33, 1), (35, 1), (32, 0x1F)):
        data = bytearray(sample_bytes())
        data[off] = val
        with pytest.raises(FormatError, match="reserved"):
            read_sdc(refresh_header_crc(data))


def _patched(data: bytes, fmt: str, offset: int, *values) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return refresh_header_crc(buf)


def test_header_field_checks():
    data = sample_bytes()
    with pytest.raises(FormatError, match="bad image size"):
        read_sdc(_patched(data, ">I", 12, 0))
    with pytest.raises(FormatError, match="quality 0"):
        read_sdc(_patched(data, ">B", 29, 0))
    with pytest.raises(FormatError, match="does not match"):
        read_sdc(_patched(data, ">B", 34, 5))
    with pytest.raises(FormatError, match="bad chunk count"):
        read_sdc(_patched(data, ">B", 34, 1))
    # level chunk present but not recorded as written
    with pytest.raises(FormatError, match="not written"):
        read_sdc(_patched(data, ">B", 32, 0b1110))


def _entry_offset(data: bytes, name: str) -> int:
    return 36 + 12 * [n for n, _, _ in chunk_spans(data)].index(name)


def test_index_checks():
    data = sample_bytes()
    rmap, hypr = _entry_offset(data, "RMAP"), _entry_offset(data, "HYPR")
    with pytest.raises(FormatError, match="out of order"):
        read_sdc(_patched(_patched(data, ">4s", rmap, b"HYPR"), ">4s", hypr, b"RMAP"))
    with pytest.raises(FormatError, match="listed twice"):
        read_sdc(_patched(data, ">4s", rmap, b"HYPR"))
    with pytest.raises(FormatError, match="unknown critical chunk ZZZZ"):
        read_sdc(_patched(data, ">4s", _entry_offset(data, "L3"), b"ZZZZ"))
    with pytest.raises(FormatError, match="bad chunk type"):
        read_sdc(_patched(data, ">4s", rmap, b"RM P"))
    with pytest.raises(FormatError, match="no HYPR chunk"):
        read_sdc(_patched(data, ">4s", hypr, b"hYPR"))


def test_ancillary_chunk_is_skipped_but_checked():
    data = sample_bytes()
    # rename L3 into an ancillary chunk: readers skip it, truncate keeps it
    anc = _patched(data, ">4s", _entry_offset(data, "L3"), b"xtra")
    f = read_sdc(anc)
    assert tuple(f.levels) == ("L1", "L2", "other") and f.missing_levels == ("L3",)
    assert truncate_sdc(anc, ("L1",)).count(b"xtra") == 1
    assert "xtra" in [c["name"] for c in describe_sdc(anc)["chunks"]]
    start, end = [(s, e) for n, s, e in chunk_spans(anc) if n == "xtra"][0]
    bad = bytearray(anc)
    bad[start] ^= 0x40
    with pytest.raises(FormatError) as e:
        read_sdc(bytes(bad))
    assert e.value.chunk == "xtra"


def test_huge_image_rejected_before_allocation():
    data = _patched(sample_bytes(), ">II", 12, 100_000, 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="over the limit") as e:
            read_sdc(data)
        with pytest.raises(FormatError, match="over the limit"):
            describe_sdc(data)
        # with the limit lifted, the RMAP size check still comes before allocating the map
        with pytest.raises(FormatError, match="region map is"):
            read_sdc(data, max_pixels=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.chunk == "header"
    assert peak < 1_000_000
    assert read_header(sample_bytes(), max_pixels=150 * 70).width == 150
    with pytest.raises(FormatError, match="over the limit"):
        read_sdc(sample_bytes(), max_pixels=150 * 70 - 1)
    assert DEFAULT_MAX_PIXELS >= 8192 * 8192


# ------------------------------------------------------------------ metadata
def test_metadata_bomb_is_bounded():
    bomb = zlib.compress(b" " * 50_000_000, 9)  # ~50 KB that inflates to 50 MB
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="more than the 100 bytes declared") as e:
            decode_metadata(struct.pack(">I", 100) + bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.chunk == "META" and peak < 2_000_000
    with pytest.raises(FormatError, match="limit"):
        decode_metadata(struct.pack(">I", MAX_META_JSON + 1) + bomb)


@pytest.mark.parametrize("raw, declared, what", [
    (b"[1, 2]", None, "not an object"),
    (b'{"a": NaN}', None, "not valid"),
    (b'{"a": 1', None, "not valid"),
    (b'{"a": "\xff"}', None, "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, None, "not valid"),
    (b'{"a": 1}', 9, "inflates to 8 bytes, 9 declared"),
], ids=["array", "nan", "unterminated", "bad-utf8", "deep-nesting", "short"])
def test_metadata_malformed(raw, declared, what):
    payload = struct.pack(">I", len(raw) if declared is None else declared) + zlib.compress(raw)
    with pytest.raises(FormatError, match=what) as e:
        decode_metadata(payload)
    assert e.value.chunk == "META"
    # and inside a file
    with pytest.raises(FormatError, match=what):
        read_sdc(set_chunk(sample_bytes(), "META", payload))


def test_metadata_stream_problems():
    good = encode_metadata({"a": 1})
    for payload, what in ((good[:-3], "incomplete"), (good + b"x", "after the metadata"),
                          (good[:4] + b"garbage!", "not a valid zlib"), (good[:2], "shorter")):
        with pytest.raises(FormatError, match=what):
            decode_metadata(payload)


# ------------------------------------------------------------------ describe
def test_describe_counts_whole_file():
    data = sample_bytes()
    d = describe_sdc(data)
    pixels = 150 * 70
    assert d["file_bytes"] == len(data) and d["bpp"] == pytest.approx(8 * len(data) / pixels)
    assert [c["name"] for c in d["chunks"]] == ["header", "META", "RMAP", "HYPR", "L1", "L2", "L3", "other"]
    assert sum(c["length"] for c in d["chunks"]) == len(data)
    assert all(c["status"] == "ok" for c in d["chunks"])
    for k, lv in enumerate(LEVELS):
        size = len(truncate_sdc(data, LEVELS[:k + 1]))
        assert d["levels"][lv]["cumulative_bytes"] == size
        assert d["levels"][lv]["bpp"] == pytest.approx(8 * size / pixels)
    assert d["levels"]["other"]["cumulative_bytes"] == len(data)
    rm = read_sdc(data).region_map
    assert [d["levels"][lv]["region_cells"] for lv in LEVELS] == [int((rm == i).sum()) for i in range(4)]
    assert d["metadata"]["analyzer"] == "test(fixed)" and d["metadata"]["task"] == "find the dog"
    assert [o["label"] for o in d["metadata"]["objects"]] == ["dog", "ball", "tree"]
    assert d["metadata"]["captions"] == {"caption_short": "a dog on grass"}
    assert d["codec_id"] == CODEC_ID.hex() and d["problems"] == []


def test_describe_truncated_and_dropped():
    data = sample_bytes()
    cut = data[:chunk_spans(data)[-2][2] - 1]  # ends inside L3
    d = describe_sdc(cut)
    assert d["present_levels"] == ["L1", "L2"] and d["missing_levels"] == ["L3", "other"]
    assert d["levels"]["L3"]["status"] == "missing"
    assert d["chunks"][-2]["status"].startswith("truncated")
    assert d["chunks"][-1]["status"] == "missing"
    d = describe_sdc(truncate_sdc(data, ("L2",)))
    assert d["levels"]["L1"]["status"] == "dropped" and d["present_levels"] == ["L2"]


def test_describe_tolerates_odd_metadata():
    meta = {"objects": [1, {"label": 5, "box": "x", "score": True}], "task": ["a"]}
    d = describe_sdc(write_sdc(sample_file(meta=meta)))
    assert d["metadata"]["objects"] == [{"label": "5", "level": None, "score": None, "box": None,
                                         "reason": None}]
    assert d["metadata"]["task"] == '["a"]'


# ------------------------------------------------------------------ fuzz
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_reader_only_raises_format_errors(data):
    base = sample_bytes(meta=META if data.draw(st.booleans()) else None)
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
