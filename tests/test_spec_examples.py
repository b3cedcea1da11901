"""The worked examples in spec/FORMAT.md, checked byte for byte against the code."""
from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from sdc.bitstream import (
    MAGIC, SdcFile, SdcHeader, crc32c, grid_size, read_sdc, truncate_sdc, write_sdc,
)
from sdc.bitstream.metadata import decode_metadata, encode_metadata, metadata_json
from sdc.errors import FormatError

SPEC = Path(__file__).resolve().parents[1] / "spec" / "FORMAT.md"


def spec_examples() -> dict[str, bytes]:
    text = SPEC.read_text(encoding="utf-8")
    out = {}
    for name, body in re.findall(r"```hex (\S+)\n(.*?)```", text, flags=re.S):
        hexes = " ".join(line.split("#", 1)[0] for line in body.splitlines())
        out[name] = bytes.fromhex(hexes)
    return out


EXAMPLES = spec_examples()


def example_1_file() -> SdcFile:
    rm = np.full((8, 8), 3, np.uint8)
    rm[2:5, 2:5] = 0
    rm[2:5, 5:8] = 1
    rm[5, 0:4] = 2
    header = SdcHeader(width=100, height=70, codec_id=bytes.fromhex("5d1c0e4b9a7721f3"),
                       qualities={"L1": 8, "L2": 6, "L3": 4, "other": 2})
    return SdcFile(header=header, region_map=rm, hyperprior=bytes.fromhex("01020304"),
                   levels={"L1": bytes.fromhex("a1a2a3"), "L2": bytes.fromhex("b1b2"),
                           "L3": b"", "other": bytes.fromhex("d1")})


EXAMPLE_3_META = {"analyzer": "offline(haar+saliency)", "task": "find faces",
                  "objects": [{"id": 0, "label": "face", "box": [10, 8, 40, 50], "score": 0.9,
                               "level": "L1"}]}


def test_all_examples_found():
    assert set(EXAMPLES) == {"example-1", "example-2", "example-3"}


def test_crc_check_value_in_spec():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert "0xE3069283" in SPEC.read_text(encoding="utf-8")


def test_example_1_matches_writer():
    data = EXAMPLES["example-1"]
    assert len(data) == 142
    assert data[:8] == MAGIC
    assert write_sdc(example_1_file()) == data
    assert grid_size(100, 70) == (8, 8)


def test_example_1_reads_back():
    f = read_sdc(EXAMPLES["example-1"])
    want = example_1_file()
    assert f.header == want.header
    assert np.array_equal(f.region_map, want.region_map)
    assert f.hyperprior == want.hyperprior and f.levels == want.levels
    assert f.metadata is None and f.missing_levels == ()


def test_example_1_prefix_claims():
    """"Any prefix of at least 136 bytes is readable: ..." (section 12)."""
    data = EXAMPLES["example-1"]
    expect = {136: (), 137: (), 138: (), 139: ("L1",), 140: ("L1",),
              141: ("L1", "L2", "L3"), 142: ("L1", "L2", "L3", "other")}
    for n, levels in expect.items():
        f = read_sdc(data[:n])
        assert tuple(f.levels) == levels
        assert f.missing_levels == tuple(lv for lv in ("L1", "L2", "L3", "other") if lv not in levels)
    for n in range(136):
        with pytest.raises(FormatError):
            read_sdc(data[:n])


def test_example_2_is_truncate_of_example_1():
    out = truncate_sdc(EXAMPLES["example-1"], ("L1",))
    assert out == EXAMPLES["example-2"]
    assert len(out) == 103
    f = read_sdc(out)
    assert tuple(f.levels) == ("L1",)
    assert f.missing_levels == ("L2", "L3", "other")


def test_example_3_meta_payload():
    payload = EXAMPLES["example-3"]
    raw = metadata_json(EXAMPLE_3_META)
    assert len(raw) == 137 and raw.decode() in SPEC.read_text(encoding="utf-8")
    assert decode_metadata(payload) == EXAMPLE_3_META
    assert zlib.decompress(payload[4:]) == raw
    # The writer's bytes are zlib's level-9 output; with the zlib the spec names they are
    # exactly the example. (The JSON text, checked above, is the same everywhere.)
    if zlib.ZLIB_RUNTIME_VERSION == "1.2.13":
        assert encode_metadata(EXAMPLE_3_META) == payload
    else:
        assert decode_metadata(encode_metadata(EXAMPLE_3_META)) == EXAMPLE_3_META
