"""One input to one output, the unit of work of a batch.

A :class:`Task` holds only strings and checked settings, so it pickles: the
same task runs in this process, in a worker of a process pool
(:mod:`sdc.batch.pool`) or on a Ray cluster. :func:`run_task` reads the input,
codes it through :mod:`sdc.api` and writes the output atomically
(:func:`sdc.cli.io.write_output`: a reader never sees a partial file). It
returns the summary row and the warnings instead of printing them, so that a
batch reports every input in input order whatever ran it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdc.cli.io import STDIO, image_bytes, label_of, read_input, write_output
from sdc.errors import SdcError
from sdc.levels import LEVELS

COMMANDS = ("encode", "decode", "analyze")


@dataclass(frozen=True)
class Task:
    """Code `src` into `dst` ("-": stdin/stdout) with a command's checked options.

    options: encode: settings (:class:`sdc.api.EncodeSettings`), regions (parsed
    JSON or None); decode: settings (:func:`sdc.api.decode_settings`); analyze:
    analyzer, task, config, draw (an output path or None); all: force, max_pixels.
    """

    command: str
    src: str
    dst: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return label_of(self.src)


def run_task(task: Task, *, retry: bool = False) -> dict:
    """{"row": the summary-table row, "warnings": [...]}; an SdcError for a bad input.

    retry: this task may have run before in a worker that was lost after writing
    its output (Ray runs it again). An output that already holds exactly the
    bytes this run computed is then that attempt's, complete (outputs are written
    atomically): it is kept as it is, not written a second time, and the row is
    this run's. Any other existing output is refused as always.
    """
    return _RUNNERS[task.command](task, task.options, retry)


def attempt(task: Task, *, retry: bool = False) -> tuple[dict | None, SdcError | None]:
    """run_task, with a bad input's error returned (it is part of the batch's result).

    The seconds the item took where it ran go with either outcome, for the
    batch's manifest: result["seconds"], or the error's `seconds` attribute.
    Any other error (a usage error, a bug) is raised: it stops the batch
    wherever it is found.
    """
    t0 = time.perf_counter()
    try:
        result = run_task(task, retry=retry)
    except SdcError as e:
        if e.exit_code != 2:
            raise
        e.seconds = time.perf_counter() - t0
        return None, e
    result["seconds"] = time.perf_counter() - t0
    return result, None


def _write(dst: str, data: bytes, force: bool, retry: bool) -> None:
    """write_output, except in a retry whose output a lost attempt already wrote (see run_task)."""
    if retry and dst != STDIO and _holds(dst, data):
        return
    write_output(dst, data, force)


def _holds(path: str, data: bytes) -> bool:
    try:
        if Path(path).stat().st_size != len(data):
            return False
        return Path(path).read_bytes() == data
    except OSError:
        return False


def _encode(task: Task, o: dict, retry: bool) -> dict:
    from sdc import api
    from sdc.bitstream import describe_sdc

    image = api.read_image(read_input(task.src), task.label, o["max_pixels"])
    result = api.encode_result(image, o["settings"], regions=o.get("regions"), max_pixels=o["max_pixels"],
                               file_name=None if task.src == STDIO else Path(task.src).name)
    _write(task.dst, result.data, o["force"], retry)
    info = describe_sdc(result.data, max_pixels=None)
    used = result.analysis
    row = {
        "file": task.label, "output": "<stdout>" if task.dst == STDIO else task.dst,
        "size": len(result.data), "bpp": info["bpp"],
        "levels": {lv: info["levels"][lv].get("bytes") for lv in LEVELS},
        "seconds": float(getattr(result, "seconds", 0.0) or 0.0),
        "analyzer": getattr(used, "analyzer", None) or ("regions file" if o.get("regions") is not None else "-"),
        "objects": len(getattr(used, "objects", None) or ()),
    }
    return {"row": row, "warnings": [f"{task.label}: {w}" for w in getattr(used, "warnings", None) or ()]}


def _decode(task: Task, o: dict, retry: bool) -> dict:
    from sdc import api

    data = read_input(task.src)
    result = api.decode_result(data, o["settings"], max_pixels=o["max_pixels"])
    _write(task.dst, image_bytes(result.rgb, task.dst), o["force"], retry)
    missing = tuple(result.missing_levels)
    warnings = [f"{task.label}: levels {', '.join(missing)} missing from the file (truncated or dropped); "
                f"decoded {', '.join(result.decoded_levels) or 'none'}"] if missing else []
    height, width = result.rgb.shape[:2]  # the display size when the file has one
    row = {
        "file": task.label, "output": "<stdout>" if task.dst == STDIO else task.dst,
        "size": len(data), "bpp": 8 * len(data) / (width * height),
        "size_px": f"{width}x{height}",
        "decoded": ",".join(result.decoded_levels) or "none",
        "missing": ",".join(missing) or "-",
        "seconds": float(getattr(result, "seconds", 0.0) or 0.0),
    }
    return {"row": row, "warnings": warnings}


def _analyze(task: Task, o: dict, retry: bool) -> dict:
    import json

    from sdc import api
    from sdc.analysis import analyze

    image = api.read_image(read_input(task.src), task.label, o["max_pixels"])
    t0 = time.perf_counter()
    result = analyze(image, analyzer=o["analyzer"], task=o.get("task"), config=o.get("config"))
    seconds = time.perf_counter() - t0
    text = json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
    _write(task.dst, text.encode("utf-8"), o["force"], retry)
    if o.get("draw"):
        import numpy as np

        _write(o["draw"], image_bytes(np.asarray(result.draw(image)), o["draw"]), o["force"], retry)
    levels: dict[str, int] = {}
    for obj in result.objects:
        levels[obj.level] = levels.get(obj.level, 0) + 1
    row = {"file": task.label, "output": "<stdout>" if task.dst == STDIO else task.dst,
           "analyzer": result.analyzer, "levels": levels, "objects": len(result.objects), "seconds": seconds}
    return {"row": row, "warnings": [f"{task.label}: {w}" for w in result.warnings]}


_RUNNERS = {"encode": _encode, "decode": _decode, "analyze": _analyze}
