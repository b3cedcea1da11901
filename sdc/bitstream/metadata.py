"""The META chunk: semantic metadata (spec/FORMAT.md, "META").

Format 1: u32 BE length of a JSON text (at most MAX_META_JSON), then a zlib
stream (RFC 1950) that inflates to exactly that UTF-8 JSON object.

Format 2: u8 encoding, then
  1  a binary body: the keys of the metadata schema, labels and analyzer
     names as ids into fixed tables (tables.py) where they are in them,
     levels in 2 bits, boxes and scores quantised to a byte each;
  2  varint size, zlib stream of a binary body (pays with long captions/reasons);
  3  varint size, zlib stream of a JSON text (metadata outside the schema).
The writer uses the binary body, in the smaller of 1 and 2, whenever the
metadata fits the schema, and JSON otherwise. `decode_metadata` returns the
same dict shape whichever encoding the chunk holds.

`summarize_metadata` reads the keys the reference encoder writes for
`sdc inspect`, tolerating missing or unknown keys.
"""
from __future__ import annotations

import json
import math
import numbers
import struct
import zlib

from ..errors import FormatError
from .tables import ANALYZER_ID, ANALYZER_TABLE, ANALYZER_TABLE_2_0_SIZE, LABEL_ID, LABELS, unknown_entry
from .wire import Reader, put_string, put_varint

MAX_META_JSON = 16 * 1024 * 1024  # also the limit of an inflated binary body
_LEN = struct.Struct(">I")
_CHUNK = "META"

ENCODING_BINARY = 1
ENCODING_BINARY_ZLIB = 2
ENCODING_JSON_ZLIB = 3

_STRING_KEYS = ("analyzer", "task", "caption_short", "caption_long")  # field bits 0..3
_OBJECTS_BIT = 1 << 4
_SCORES_BIT = 1 << 5   # every object has a score byte (else every score is 1.0)
_REASONS_BIT = 1 << 6  # every object has a reason field (which may say "none")
_IDS_BIT = 1 << 7      # every object has its id (else the ids are 0, 1, 2, ...)
_OBJECT_KEYS = frozenset({"id", "label", "box", "score", "level"})
_LEVELS = ("L1", "L2", "L3")
_SCORE_STEPS = 200     # a score is stored as round(score * 200): steps of 0.005
_MAX_BOX_SHIFT = 24    # coordinates up to 255 * 2**24, beyond any image size
_MIN_OBJECT_BYTES = 5  # label, box
LABEL_SPLIT = 128      # label tokens below are table ids, from it on literal lengths
ANALYZER_SPLIT = 64    # the same for analyzer name parts


def _plain(obj):
    # numpy scalars and arrays, without importing numpy
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serializable")


def metadata_json(meta: dict) -> bytes:
    """The canonical JSON text of `meta`: UTF-8, sorted keys, no whitespace, no NaN."""
    if not isinstance(meta, dict):
        raise ValueError("metadata must be a dict")
    try:
        text = json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False, default=_plain)
        return text.encode("utf-8")
    except (TypeError, ValueError) as e:  # UnicodeEncodeError (lone surrogates) is a ValueError
        raise ValueError(f"metadata is not JSON-serializable: {e}") from None


# ------------------------------------------------------------------ binary body
def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _fits_object(o) -> bool:
    """True if the binary body holds this object exactly (box and score to their precision)."""
    if not isinstance(o, dict) or not _OBJECT_KEYS <= set(o) <= _OBJECT_KEYS | {"reason"}:
        return False
    oid, box, score = o["id"], o["box"], o["score"]
    return (isinstance(oid, numbers.Integral) and not isinstance(oid, bool) and 0 <= oid < 1 << 32
            and isinstance(o["label"], str) and o["level"] in _LEVELS
            and isinstance(o.get("reason", ""), str)
            and _real(score) and 0 <= score <= 1
            and isinstance(box, (list, tuple)) and len(box) == 4 and all(_real(v) for v in box)
            and 0 <= box[0] <= box[2] and 0 <= box[1] <= box[3])


def _quantise(v: float, shift: int) -> int:
    return math.floor(v / (1 << shift) + 0.5)


def _score_byte(score) -> int:
    return _quantise(float(score) * _SCORE_STEPS, 0)


def _box_shift(objects) -> int | None:
    """The smallest power-of-two step that fits every coordinate in a byte."""
    top = max((float(v) for o in objects for v in o["box"]), default=0.0)
    for shift in range(_MAX_BOX_SHIFT + 1):
        if _quantise(top, shift) <= 255:
            return shift
    return None


def _put_token(out: bytearray, text: str, ids: dict[str, int], split: int) -> None:
    """A table entry as its index (< split), any other text as split + byte length, then the bytes."""
    if text in ids:
        put_varint(out, ids[text])
    else:
        raw = text.encode("utf-8")
        put_varint(out, split + len(raw))
        out += raw


def _read_token(r: Reader, table: tuple[str, ...], split: int, what: str) -> str:
    code = r.varint(what)
    if code < split:
        return table[code] if code < len(table) else unknown_entry(code)
    raw = r.take(code - split, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise r.error(f"{what} is not valid UTF-8") from None


def _name_parts(text: str) -> list[str]:
    """An analyzer name as "/"-separated parts (the whole name is one part if the table has it)."""
    return [text] if text in ANALYZER_ID else text.split("/")


def _put_name(out: bytearray, text: str) -> None:
    parts = _name_parts(text)
    put_varint(out, len(parts))
    for part in parts:
        _put_token(out, part, ANALYZER_ID, ANALYZER_SPLIT)


def _read_name(r: Reader) -> str:
    count = r.varint("analyzer part count")
    if not 1 <= count <= r.remaining:  # every part takes at least one byte
        raise r.error(f"analyzer part count {count} does not fit the chunk")
    return "/".join(_read_token(r, ANALYZER_TABLE, ANALYZER_SPLIT, "analyzer part") for _ in range(count))


def _put_objects(out: bytearray, objects, shift: int, flags: int) -> None:
    out.append(shift)
    put_varint(out, len(objects))
    levels = bytearray((len(objects) + 3) // 4)
    for k, o in enumerate(objects):
        levels[k // 4] |= _LEVELS.index(o["level"]) << 2 * (k % 4)
    out += levels
    for o in objects:
        if flags & _IDS_BIT:
            put_varint(out, int(o["id"]))
        _put_token(out, o["label"], LABEL_ID, LABEL_SPLIT)
        out += bytes(_quantise(float(v), shift) for v in o["box"])
        if flags & _SCORES_BIT:
            out.append(_score_byte(o["score"]))
        if flags & _REASONS_BIT:
            raw = o["reason"].encode("utf-8") if "reason" in o else None
            put_varint(out, 0 if raw is None else len(raw) + 1)
            out += raw or b""


def binary_body(meta: dict) -> bytes | None:
    """The binary body of `meta`, or None if `meta` does not fit the schema."""
    if not set(meta) <= {*_STRING_KEYS, "objects"}:
        return None
    if not all(isinstance(meta[k], str) for k in _STRING_KEYS if k in meta):
        return None
    objects = meta.get("objects", [])
    if not isinstance(objects, (list, tuple)) or not all(_fits_object(o) for o in objects):
        return None
    shift = _box_shift(objects)
    if shift is None:
        return None
    flags = sum(1 << bit for bit, key in enumerate(_STRING_KEYS) if key in meta)
    if "objects" in meta:
        flags |= _OBJECTS_BIT
        if any(_score_byte(o["score"]) != _SCORE_STEPS for o in objects):
            flags |= _SCORES_BIT
        if any("reason" in o for o in objects):
            flags |= _REASONS_BIT
        if [o["id"] for o in objects] != list(range(len(objects))):
            flags |= _IDS_BIT
    out = bytearray([flags])
    try:
        for key in _STRING_KEYS:
            if key in meta:
                (_put_name if key == "analyzer" else put_string)(out, meta[key])
        if "objects" in meta:
            _put_objects(out, objects, shift, flags)
    except UnicodeEncodeError:  # lone surrogates: only JSON's escapes can carry them
        return None
    return bytes(out)


def _read_object(r: Reader, flags: int, shift: int, oid: int, level: int) -> dict:
    if flags & _IDS_BIT:
        oid = r.varint("object id")
    label = _read_token(r, LABELS, LABEL_SPLIT, "label")
    box = [v << shift for v in r.take(4, "box")]
    if box[0] > box[2] or box[1] > box[3]:
        raise r.error(f"box {box} has x1 < x0 or y1 < y0")
    o = {"id": oid, "label": label, "box": box, "score": 1.0, "level": _LEVELS[level]}
    if flags & _SCORES_BIT:
        q = r.u8("score")
        if q > _SCORE_STEPS:
            raise r.error(f"score {q} over {_SCORE_STEPS}")
        o["score"] = q / _SCORE_STEPS
    if flags & _REASONS_BIT:
        size = r.varint("reason length")
        if size:
            raw = r.take(size - 1, "reason")
            try:
                o["reason"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise r.error("reason is not valid UTF-8") from None
    return o


def _read_objects(r: Reader, flags: int) -> list[dict]:
    shift = r.u8("box shift")
    if shift > _MAX_BOX_SHIFT:
        raise r.error(f"box shift {shift} over {_MAX_BOX_SHIFT}")
    count = r.varint("object count")
    if count * _MIN_OBJECT_BYTES + (count + 3) // 4 > r.remaining:  # checked before anything is allocated
        raise r.error(f"{count} objects do not fit in the {r.remaining} bytes left")
    levels = r.take((count + 3) // 4, "levels")
    codes = [levels[k // 4] >> 2 * (k % 4) & 3 for k in range(count)]
    if 3 in codes or (count % 4 and levels[-1] >> 2 * (count % 4)):
        raise r.error("bad object levels (3 is not a level; unused bits must be 0)")
    return [_read_object(r, flags, shift, k, codes[k]) for k in range(count)]


def decode_binary(body: bytes) -> dict:
    r = Reader(body, where="metadata", chunk=_CHUNK)
    flags = r.u8("field flags")
    if flags & (_SCORES_BIT | _REASONS_BIT | _IDS_BIT) and not flags & _OBJECTS_BIT:
        raise r.error(f"object flags set without objects ({flags:#04x})")
    meta: dict = {}
    for bit, key in enumerate(_STRING_KEYS):
        if flags >> bit & 1:
            meta[key] = _read_name(r) if key == "analyzer" else r.string(key)
    if flags & _OBJECTS_BIT:
        meta["objects"] = _read_objects(r, flags)
    r.finish()
    return meta


# ------------------------------------------------------------------ zlib and JSON
def _inflate(data: bytes, size: int) -> bytes:
    """Inflate one zlib stream that must give exactly `size` bytes; never more than size + 1 are made."""
    if size > MAX_META_JSON:
        raise FormatError(f"metadata claims {size} bytes, more than the {MAX_META_JSON}-byte limit",
                          chunk=_CHUNK)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data, size + 1)
    except zlib.error as e:
        raise FormatError(f"metadata is not a valid zlib stream ({e})", chunk=_CHUNK) from None
    if len(raw) > size:
        raise FormatError(f"metadata inflates to more than the {size} bytes declared", chunk=_CHUNK)
    if not d.eof:
        raise FormatError("metadata zlib stream is incomplete", chunk=_CHUNK)
    if d.unused_data:
        raise FormatError(f"{len(d.unused_data)} bytes after the metadata zlib stream", chunk=_CHUNK)
    if len(raw) != size:
        raise FormatError(f"metadata inflates to {len(raw)} bytes, {size} declared", chunk=_CHUNK)
    return raw


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _parse_json(raw: bytes) -> dict:
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"metadata is not valid UTF-8 JSON ({msg})", chunk=_CHUNK) from None
    if not isinstance(meta, dict):
        raise FormatError("metadata JSON is not an object", chunk=_CHUNK)
    return meta


def _checked_json(meta: dict) -> bytes:
    raw = metadata_json(meta)
    if len(raw) > MAX_META_JSON:
        raise ValueError(f"metadata JSON is {len(raw)} bytes, more than {MAX_META_JSON}")
    return raw


def _sized_zlib(encoding: int, raw: bytes) -> bytes:
    out = bytearray([encoding])
    put_varint(out, len(raw))
    return bytes(out) + zlib.compress(raw, 9)


# ------------------------------------------------------------------ payloads
def encode_metadata(meta: dict, *, version: int = 2) -> bytes:
    """The META payload of `meta` in format `version` (1 or 2)."""
    if version == 1:
        raw = _checked_json(meta)
        return _LEN.pack(len(raw)) + zlib.compress(raw, 9)
    if version != 2:
        raise ValueError(f"unknown format version {version}")
    if not isinstance(meta, dict):
        raise ValueError("metadata must be a dict")
    body = binary_body(meta)
    if body is None:
        return _sized_zlib(ENCODING_JSON_ZLIB, _checked_json(meta))
    if len(body) > MAX_META_JSON:
        raise ValueError(f"metadata is {len(body)} bytes, more than {MAX_META_JSON}")
    plain = bytes([ENCODING_BINARY]) + body
    packed = _sized_zlib(ENCODING_BINARY_ZLIB, body)
    return packed if len(packed) < len(plain) else plain


def minor_version(meta: dict | None) -> int:
    """The format 2 minor version a file with this metadata needs: 1 if its analyzer name
    uses an analyzer-table entry that format 2.1 appended, else 0 (a 2.0 reader would
    show such an entry as "#<index>")."""
    name = meta.get("analyzer") if isinstance(meta, dict) else None
    if not isinstance(name, str) or binary_body(meta) is None:
        return 0
    return int(any(ANALYZER_ID.get(part, -1) >= ANALYZER_TABLE_2_0_SIZE for part in _name_parts(name)))


def decode_metadata(payload: bytes | memoryview, *, version: int = 2) -> dict:
    """The metadata dict of a META payload of format `version` (1 or 2)."""
    buf = bytes(payload)
    if version == 1:
        if len(buf) < _LEN.size:
            raise FormatError("metadata chunk shorter than its length field", chunk=_CHUNK)
        (size,) = _LEN.unpack_from(buf)
        return _parse_json(_inflate(buf[_LEN.size:], size))
    r = Reader(buf, where="metadata", chunk=_CHUNK)
    encoding = r.u8("encoding")
    if encoding == ENCODING_BINARY:
        return decode_binary(buf[1:])
    if encoding in (ENCODING_BINARY_ZLIB, ENCODING_JSON_ZLIB):
        size = r.varint("size")
        raw = _inflate(buf[r.pos:], size)
        return decode_binary(raw) if encoding == ENCODING_BINARY_ZLIB else _parse_json(raw)
    raise FormatError(f"unsupported metadata encoding {encoding}", chunk=_CHUNK)


def _str(v, limit: int = 500) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit - 1] + "\u2026"


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summarize_metadata(meta: dict) -> dict:
    """A plain summary for `sdc inspect`: analyzer, task, captions, objects.

    Never raises on unexpected content: fields of the wrong type become None.
    """
    objects = []
    raw_objects = meta.get("objects")
    if isinstance(raw_objects, list):
        for o in raw_objects:
            if not isinstance(o, dict):
                continue
            box = o.get("box")
            if not (isinstance(box, list) and len(box) == 4 and all(_num(b) is not None for b in box)):
                box = None
            objects.append({
                "label": _str(o.get("label")),
                "level": _str(o.get("level")),
                "score": _num(o.get("score")),
                "box": [float(b) for b in box] if box else None,
                "reason": _str(o.get("reason")),
            })
    captions = {}
    for key in ("caption_short", "caption_long", "caption"):
        if isinstance(meta.get(key), str) and meta[key]:
            captions[key] = _str(meta[key])
    return {
        "analyzer": _str(meta.get("analyzer")),
        "task": _str(meta.get("task")),
        "captions": captions,
        "objects": objects,
    }
