"""Fuzzing sdc's container reader and decoder front end: mutators and strategies.

Used by fuzz/run.py (the long runs) and tests/test_fuzz.py (a short run), with
the seed files and targets of targets.py (re-exported here). A mutator turns
(seed files, a random.Random) into one input; strategies:

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
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import numpy as np

# fuzz/ is on sys.path (run.py, tests/test_fuzz.py)
from spec_header import (MAGIC, V1_NAMES, V1_TYPES, V2_CHUNKS, build_header, header_length, refresh_header_crc,
                         split_header)
from targets import TARGETS, decoder_target, frontend_target, make_seeds, reader_target  # noqa: F401

INTERESTING = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFE, 0xFF)
MAX_MAP_CELLS = 64 * 64


# ----------------------------------------------------------------------------- container surgery
# A file is split into a dict of header fields and [(chunk, payload)]: chunk is a known chunk's
# name, or the type code of any other chunk (4 letters in format 1, one byte in format 2).
KNOWN = V2_CHUNKS
_HEAD_FIELDS = ("major", "minor", "width", "height", "codec_id", "qualities", "written")


def split(data: bytes) -> tuple[dict, list[tuple[str | bytes, bytes]]]:
    """(header fields, [(chunk, payload)]) of a well-formed complete file."""
    h = split_header(data)
    parts, off = [], header_length(data)
    for code, length, _ in h["entries"]:
        parts.append((V1_NAMES.get(code, code) if h["major"] == 1 else code, data[off:off + length]))
        off += length
    return {k: h[k] for k in _HEAD_FIELDS}, parts


def assemble(head: dict, parts: list[tuple[str | bytes, bytes]]) -> bytes:
    """A file with these chunks and valid lengths and CRCs (header CRC too)."""
    from sdc.bitstream import crc32c

    v1 = head["major"] == 1
    entries = [(V1_TYPES.get(code, code) if v1 else code, len(body), crc32c(body)) for code, body in parts]
    codec_id = head["codec_id"] if v1 else head["codec_id"][:4]
    return build_header(dict(head, codec_id=codec_id, entries=entries)) + b"".join(body for _, body in parts)


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
