"""Fuzzing sdc's container reader and decoder front end: seeds, mutators, targets.

Used by fuzz/run.py (the long runs) and tests/test_fuzz.py (a short run).

Seeds are real .sdc files, encoded at start-up with the loaded codec from
crops of samples/astronaut.png (so their codec id matches and the mutated
substreams reach the entropy decoders), in format 2.0 and one in 1.0. A
mutator turns (seed files, a random.Random) into one input; strategies:

container level (CRCs left as they are, so most are caught by a CRC):
    flip, byteset, insert, delete, truncate (a byte prefix of a real file),
    splice (two files), random (random bytes, or the magic / a real header
    followed by random bytes), header (header fields and index changed,
    header CRC recomputed so that the field checks run)
re-wrapped (the damage is inside chunk payloads, and every CRC and length
is rewritten so the file passes the container checks and reaches the RMAP and
META parsers and the entropy decoders):
    payload (flip/byteset/insert/delete/truncate/replace/empty/extend one
    chunk: META, RMAP, HYPR or a level), swap (exchange two substreams),
    transplant (a substream from another seed file), regionmap (a valid random
    region map in either encoding, so the groups no longer match their
    substreams), metadata (valid random metadata: in and out of the binary
    schema, table and literal labels, long text), qualities (1..255), resize
    (another image size of the same or another grid, with a valid region map
    of the new grid), stack (2-4 of these in a row)

Targets: `reader` runs read_header, read_sdc, describe_sdc and truncate_sdc
(and reads back what truncate_sdc wrote); `frontend` runs
sdc.pipeline.decode_symbols: read_sdc, the codec and quality checks, the
hyperprior decoding (GroupedLatentCodec.decode_z with constriction), the
integer hyper-synthesis and every group's entropy decoding (decode_groups);
`decoder` runs the whole sdc.pipeline.decode_sdc, synthesis included.
Only sdc.errors.SdcError counts as a documented error; any other exception,
or a wrong result (e.g. symbols of the wrong shape), is a failure.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "astronaut.png"
MAGIC = b"\x89SDC\r\n\x1a\n"
LEVEL_NAMES = ("L1", "L2", "L3", "other")
# The decoder front end is fuzzed at the seeds' sizes: a crafted header may
# claim up to this many pixels (the file's own hyperprior then sets the work).
FRONTEND_MAX_PIXELS = 256 * 256

INTERESTING = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFE, 0xFF)
MAX_MAP_CELLS = 64 * 64


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


# ----------------------------------------------------------------------------- container surgery
# From spec/FORMAT.md, independently of sdc.bitstream. A file is split into a dict of
# header fields and [(chunk, payload)]: chunk is a known chunk's name, or the type
# code of any other chunk (4 letters in format 1, one byte in format 2).
KNOWN = ("META", "RMAP", "HYPR", "L1", "L2", "L3", "other")  # format 2: bit i of the chunk set
V1_TYPES = dict(zip(KNOWN, (b"META", b"RMAP", b"HYPR", b"LVL1", b"LVL2", b"LVL3", b"OTHR")))
V1_NAMES = {t: n for n, t in V1_TYPES.items()}


def header_length(data: bytes) -> int:
    return struct.unpack_from(">H", data, 10)[0]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return value, pos
        shift += 7


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def split(data: bytes) -> tuple[dict, list[tuple[str | bytes, bytes]]]:
    """(header fields, [(chunk, payload)]) of a well-formed complete file."""
    head = {"major": data[8], "minor": data[9]}
    lengths = []
    if head["major"] == 1:
        (head["width"], head["height"], head["codec_id"], head["qualities"], head["written"], _, count,
         _) = struct.unpack_from(">II8s4sBBBB", data, 12)
        for i in range(count):
            ctype, length, _ = struct.unpack_from(">4sII", data, 36 + 12 * i)
            lengths.append((V1_NAMES.get(ctype, ctype), length))
    else:
        head["width"], pos = _varint(data, 12)
        head["height"], pos = _varint(data, pos)
        head["codec_id"], head["qualities"] = data[pos:pos + 4], data[pos + 4:pos + 8]
        head["written"], present = data[pos + 8], data[pos + 9]
        pos += 10
        for name in (name for i, name in enumerate(KNOWN) if present >> i & 1):
            length, pos = _varint(data, pos)
            lengths.append((name, length))
            pos += 4
        if present & 0x80:  # extra chunks: a count, then type, length, crc each
            count, pos = data[pos], pos + 1
            for _ in range(count):
                code = data[pos:pos + 1]
                length, pos = _varint(data, pos + 1)
                lengths.append((code, length))
                pos += 4
    parts, off = [], header_length(data)
    for code, length in lengths:
        parts.append((code, data[off:off + length]))
        off += length
    return head, parts


def assemble(head: dict, parts: list[tuple[str | bytes, bytes]]) -> bytes:
    """A file with these chunks and valid lengths and CRCs (header CRC too)."""
    from sdc.bitstream import crc32c

    if head["major"] == 1:
        hl = 36 + 12 * len(parts) + 4
        out = bytearray(struct.pack(">8sBBHII8s4sBBBB", MAGIC, 1, head["minor"], hl, head["width"], head["height"],
                                    head["codec_id"], head["qualities"], head["written"], 0, len(parts), 0))
        for code, body in parts:
            out += struct.pack(">4sII", V1_TYPES.get(code, code), len(body), crc32c(body))
    else:
        known = [(c, b) for c, b in parts if isinstance(c, str)]
        extras = [(c, b) for c, b in parts if not isinstance(c, str)]
        body = bytearray()
        _put_varint(body, head["width"])
        _put_varint(body, head["height"])
        body += head["codec_id"][:4] + head["qualities"] + bytes([head["written"]])
        body.append(sum(1 << KNOWN.index(c) for c, _ in known) | (0x80 if extras else 0))
        for _, payload in known:
            _put_varint(body, len(payload))
            body += struct.pack(">I", crc32c(payload))
        if extras:
            body.append(len(extras))
        for code, payload in extras:
            body += code
            _put_varint(body, len(payload))
            body += struct.pack(">I", crc32c(payload))
        out = bytearray(struct.pack(">8sBBH", MAGIC, 2, head["minor"], 12 + len(body) + 4)) + body
    out += struct.pack(">I", crc32c(bytes(out)))
    return bytes(out) + b"".join(body for _, body in parts)


def refresh_header_crc(data: bytes) -> bytes:
    from sdc.bitstream import crc32c

    hl = header_length(data)
    if not 16 <= hl <= len(data):
        return data
    buf = bytearray(data)
    buf[hl - 4:hl] = struct.pack(">I", crc32c(bytes(buf[:hl - 4])))
    return bytes(buf)


# ----------------------------------------------------------------------------- byte mutations
def mutate_bytes(rng: random.Random, data: bytes, max_ops: int = 4) -> bytes:
    """1..max_ops generic byte-level edits (never grows by more than 256 bytes)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        op = rng.randrange(6)
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # byte set
            buf[rng.randrange(n)] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        elif op == 2:  # insert
            i = rng.randint(0, n)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and n:  # delete a range
            i = rng.randrange(n)
            del buf[i:i + rng.randint(1, 16)]
        elif op == 4 and n:  # overwrite a u32 with an interesting value
            i = rng.randrange(n)
            val = rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, rng.randrange(1 << 32), n, n + 1))
            buf[i:i + 4] = struct.pack(">I", val)[: max(0, min(4, n - i))]
        elif op == 5 and n > 1:  # duplicate a slice
            i = rng.randrange(n)
            j = rng.randint(i, min(n, i + 32))
            k = rng.randint(0, n)
            buf[k:k] = buf[i:j]
    return bytes(buf)


def mutate_payload(rng: random.Random, body: bytes) -> bytes:
    op = rng.randrange(8)
    if op == 0:
        return b""
    if op == 1:  # truncate (to a multiple of 4 half the time: then only the coder can tell)
        n = rng.randint(0, max(0, len(body) - 1)) if body else 0
        return body[: n - n % 4 if rng.random() < 0.5 else n]
    if op == 2:  # extend
        return body + rng.randbytes(rng.choice((1, 4, 8, rng.randint(1, 64))))
    if op == 3:  # replace with random bytes of the same length
        return rng.randbytes(len(body))
    if op == 4:  # replace with a constant
        return bytes([rng.choice(INTERESTING)]) * (len(body) or 4 * rng.randint(1, 8))
    return mutate_bytes(rng, body, 3)


# ----------------------------------------------------------------------------- strategies
@dataclass
class Seeds:
    files: dict[str, bytes]

    def __post_init__(self):
        self.names = sorted(self.files)
        self.parsed = {k: split(v) for k, v in self.files.items()}

    def pick(self, rng: random.Random) -> tuple[str, bytes]:
        name = rng.choice(self.names)
        return name, self.files[name]


def _random_map(rng: random.Random, h: int, w: int) -> np.ndarray:
    mode = rng.randrange(3)
    if mode == 0:
        return np.full((h, w), rng.randrange(4), np.uint8)
    if mode == 1:
        nrng = np.random.default_rng(rng.randrange(1 << 32))
        return nrng.integers(0, 4, (h, w), dtype=np.uint8)
    m = np.full((h, w), 3, np.uint8)
    m[: rng.randint(0, h), : rng.randint(0, w)] = rng.randrange(4)
    return m


def _with(parts, chunk: str, body: bytes) -> list[tuple[str | bytes, bytes]]:
    return [(c, body if c == chunk else b) for c, b in parts]


def _region_map_payload(rng: random.Random, head: dict, h: int, w: int) -> bytes:
    from sdc.bitstream.regionmap import encode_region_map

    m = _random_map(rng, h, w)
    if head["major"] == 1:
        return encode_region_map(m, version=1)
    return encode_region_map(m, encoding=rng.choice((None, 1, 2)))  # the writer's choice, or either


def s_flip(rng, seeds):
    _, data = seeds.pick(rng)
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def s_bytes(rng, seeds):
    return mutate_bytes(rng, seeds.pick(rng)[1], 6)


def s_truncate(rng, seeds):
    _, data = seeds.pick(rng)
    return data[: rng.randint(0, len(data))]


def s_splice(rng, seeds):
    a, b = seeds.pick(rng)[1], seeds.pick(rng)[1]
    return a[: rng.randint(0, len(a))] + b[rng.randint(0, len(b)):]


def s_random(rng, seeds):
    body = rng.randbytes(rng.choice((0, 1, 7, 12, 40, rng.randint(0, 600))))
    mode = rng.randrange(4)
    if mode == 0:
        return body
    if mode == 1:
        return MAGIC + body
    _, data = seeds.pick(rng)
    hl = header_length(data)
    return data[:hl] + body if mode == 2 else data[:hl + rng.randint(0, len(data) - hl)] + body


def s_header(rng, seeds):
    name, data = seeds.pick(rng)
    hl = header_length(data)
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(8, hl - 4)
        buf[i] = rng.choice(INTERESTING) if rng.random() < 0.4 else (
            buf[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.randrange(256))
    if rng.random() < 0.2:  # a plausible chunk type from the known ones, or an ancillary or unknown one
        head, parts = seeds.parsed[name]
        parts = list(parts)
        if head["major"] == 1:
            i = rng.randrange(len(parts))
            parts[i] = (rng.choice((*KNOWN, b"xtra", b"ZZZZ")), parts[i][1])
        else:
            parts.append((bytes([rng.choice((0x00, 0x05, 0x7F, 0x80, 0x85, 0xFF))]), rng.randbytes(rng.randint(0, 8))))
        return assemble(head, parts)
    return refresh_header_crc(bytes(buf))


def s_payload(rng, seeds):
    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    i = rng.randrange(len(parts))
    parts = list(parts)
    parts[i] = (parts[i][0], mutate_payload(rng, parts[i][1]))
    return assemble(head, parts)


def s_swap(rng, seeds):
    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    subs = [i for i, (c, _) in enumerate(parts) if c in ("HYPR", "L1", "L2", "L3", "other")]
    parts = list(parts)
    i, j = rng.sample(subs, 2) if len(subs) > 1 else (subs[0], subs[0])
    parts[i], parts[j] = (parts[i][0], parts[j][1]), (parts[j][0], parts[i][1])
    return assemble(head, parts)


def s_transplant(rng, seeds):
    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    _, donor = seeds.parsed[rng.choice(seeds.names)]
    donor = [b for c, b in donor if c not in ("RMAP", "META")]
    parts = list(parts)
    i = rng.choice([k for k, (c, _) in enumerate(parts) if c not in ("META", "RMAP")])
    parts[i] = (parts[i][0], rng.choice(donor))
    return assemble(head, parts)


def s_regionmap(rng, seeds):
    from sdc.bitstream.regionmap import grid_size

    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    h, w = grid_size(head["width"], head["height"])
    if h * w > MAX_MAP_CELLS:  # a file the atheris engine made; mutate a seed instead
        raise ValueError("image too large to rewrite its region map")
    return assemble(head, _with(parts, "RMAP", _region_map_payload(rng, head, h, w)))


_WORDS = ("dog", "person", "face", "text", "red kite", "\u00e9cole", "", "x" * 300, "a/b", "salient region")


def _random_metadata(rng: random.Random) -> dict:
    """Valid metadata: mostly within the binary schema (any of its options), sometimes outside."""
    meta = {key: rng.choice(_WORDS) for key in ("analyzer", "task", "caption_short", "caption_long")
            if rng.random() < 0.5}
    if rng.random() < 0.2:
        meta["analyzer"] = rng.choice(("regions(coco)/heuristic", "offline(haar+saliency)/grabcut/openai(m)"))
    top = rng.choice((1, 100, 640, 5000, 1 << 20))
    objects = []
    for k in range(rng.choice((0, 1, 3, 9, 40))):
        x0, x1 = sorted(rng.uniform(0, top) for _ in range(2))
        y0, y1 = sorted(rng.uniform(0, top) for _ in range(2))
        o = {"id": k if rng.random() < 0.9 else rng.randrange(1 << 32), "label": rng.choice(_WORDS),
             "box": [round(x0), round(y0), round(x1), round(y1)],
             "score": rng.choice((1.0, round(rng.random(), 3))), "level": rng.choice(("L1", "L2", "L3"))}
        if rng.random() < 0.3:
            o["reason"] = rng.choice(_WORDS)
        objects.append(o)
    if objects or rng.random() < 0.5:
        meta["objects"] = objects
    if rng.random() < 0.1:
        meta["extra"] = [1, {"nested": None}]  # outside the schema: JSON
    return meta


def s_metadata(rng, seeds):
    from sdc.bitstream.metadata import encode_metadata

    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    payload = encode_metadata(_random_metadata(rng), version=head["major"])
    if any(c == "META" for c, _ in parts):
        return assemble(head, _with(parts, "META", payload))
    return assemble(head, [("META", payload), *parts])  # META comes first


def s_qualities(rng, seeds):
    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    q = bytearray(head["qualities"])
    for k in range(4):
        if rng.random() < 0.5:
            q[k] = rng.choice((1, 8, 9, 255, rng.randint(1, 8), rng.randint(1, 255)))
    return assemble(dict(head, qualities=bytes(q)), parts)


def s_resize(rng, seeds):
    from sdc.bitstream.regionmap import grid_size

    name, _ = seeds.pick(rng)
    head, parts = seeds.parsed[name]
    width, height = head["width"], head["height"]
    if rng.random() < 0.5 and width * height <= MAX_MAP_CELLS * 256:  # same grid: the region map stays valid
        gw, gh = -(-width // 64), -(-height // 64)
        width, height = rng.randint(64 * gw - 63, 64 * gw), rng.randint(64 * gh - 63, 64 * gh)
    else:
        width, height = rng.choice((1, 16, 63, 64, 65, 128, 200, 256)), rng.choice((1, 17, 64, 100, 192, 256))
    head = dict(head, width=width, height=height)
    h, w = grid_size(width, height)
    return assemble(head, _with(parts, "RMAP", _region_map_payload(rng, head, h, w)))


CONTAINER = (s_flip, s_bytes, s_truncate, s_splice, s_random, s_header)
REWRAPPED = (s_payload, s_swap, s_transplant, s_regionmap, s_metadata, s_qualities, s_resize)


def s_stack(rng, seeds):
    """2-4 re-wrapped strategies, each on the output of the last."""
    data = None
    for _ in range(rng.randint(2, 4)):
        sub = Seeds({"x": data}) if data is not None else seeds
        try:
            data = rng.choice(REWRAPPED)(rng, sub)
        except Exception:  # noqa: BLE001 - the previous step made a file this one cannot take apart
            break
    return data if data is not None else rng.choice(REWRAPPED)(rng, seeds)


STRATEGIES = {f.__name__[2:]: f for f in (*CONTAINER, *REWRAPPED, s_stack)}
# The front end is fuzzed mostly with re-wrapped inputs (the container ones stop at a CRC).
WEIGHTS = {
    "reader": {**{k: 1.0 for k in STRATEGIES}},
    "frontend": {**{f.__name__[2:]: 0.25 for f in CONTAINER}, **{f.__name__[2:]: 2.0 for f in REWRAPPED},
                 "stack": 2.0},
}
WEIGHTS["decoder"] = WEIGHTS["frontend"]


def generate(rng: random.Random, seeds: Seeds, target: str) -> tuple[str, bytes]:
    names = list(WEIGHTS[target])
    name = rng.choices(names, weights=[WEIGHTS[target][n] for n in names])[0]
    return name, STRATEGIES[name](rng, seeds)


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
