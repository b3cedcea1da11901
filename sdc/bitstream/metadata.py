"""The META chunk: semantic metadata as zlib-compressed JSON.

Layout (spec/FORMAT.md, "META"): u32 BE length of the JSON text in bytes
(at most MAX_META_JSON), then a zlib stream (RFC 1950) that inflates to exactly
that many bytes of UTF-8 JSON whose top level is an object.

The container does not interpret the object; `summarize_metadata` reads the
keys the reference encoder writes (spec/FORMAT.md, "Metadata schema") for `sdc inspect`, tolerating
missing or unknown keys.
"""
from __future__ import annotations

import json
import struct
import zlib

from ..errors import FormatError

MAX_META_JSON = 16 * 1024 * 1024
_LEN = struct.Struct(">I")
_CHUNK = "META"


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
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata is not JSON-serializable: {e}") from None
    return text.encode("utf-8")


def encode_metadata(meta: dict) -> bytes:
    raw = metadata_json(meta)
    if len(raw) > MAX_META_JSON:
        raise ValueError(f"metadata JSON is {len(raw)} bytes, more than {MAX_META_JSON}")
    return _LEN.pack(len(raw)) + zlib.compress(raw, 9)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def decode_metadata(payload: bytes | memoryview) -> dict:
    if len(payload) < _LEN.size:
        raise FormatError("metadata chunk shorter than its length field", chunk=_CHUNK)
    (size,) = _LEN.unpack_from(payload)
    if size > MAX_META_JSON:
        raise FormatError(f"metadata claims {size} bytes of JSON, more than the "
                          f"{MAX_META_JSON}-byte limit", chunk=_CHUNK)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(bytes(payload[_LEN.size:]), size + 1)
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
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"metadata is not valid UTF-8 JSON ({msg})", chunk=_CHUNK) from None
    if not isinstance(meta, dict):
        raise FormatError("metadata JSON is not an object", chunk=_CHUNK)
    return meta


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
