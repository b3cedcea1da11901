"""One input to one output, the unit of work of a batch.

A :class:`Task` holds only strings and checked settings, so it pickles: the
same task runs in this process, in a worker of a process pool
(:mod:`sdc.batch.pool`) or on a Ray cluster. :func:`run_task` reads the input,
codes it through :mod:`sdc.api` and writes the output atomically
(:func:`sdc.cli.io.write_output`: a reader never sees a partial file). It
returns the summary row and the warnings instead of printing them, so that a
batch reports every input in input order whatever ran it.

An encode task can also run in two steps, in two processes: :func:`analyse`
(read the input and analyse it; on Ray, on a worker with a GPU), then
:func:`attempt` with that :class:`Analysed` (code the input and write the
output); the file is the one a single :func:`run_task` writes.
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


@dataclass(frozen=True)
class Analysed:
    """The analysis of an encode task run apart from its coding (:func:`analyse`), as the
    worker that codes it receives it: plain data (the Analysis, with its masks as arrays).

    analysis: the :class:`sdc.analysis.Analysis` to code with, None after an error.
    error: the input's SdcError (it was unreadable, or the analysis refused the request).
    seconds: reading the input and analysing it; analysis_seconds: the analysis alone.
    where: the worker that analysed it ({"pid", "gpus", "device"}), filled in by that worker.
    """

    analysis: Any
    error: SdcError | None
    seconds: float
    analysis_seconds: float = 0.0
    where: dict | None = None


def run_task(task: Task, *, retry: bool = False, analysed: Analysed | None = None) -> dict:
    """{"row": the summary-table row, "warnings": [...]}; an SdcError for a bad input.

    retry: this task may have run before in a worker that was lost after writing
    its output (Ray runs it again). An output that already holds exactly the
    bytes this run computed is then that attempt's, complete (outputs are written
    atomically): it is kept as it is, not written a second time, and the row is
    this run's. Any other existing output is refused as always.
    analysed: an encode task's analysis, already run (:func:`analyse`), to code with.
    """
    if analysed is not None:
        return _encode(task, task.options, retry, analysed)
    return _RUNNERS[task.command](task, task.options, retry)


def attempt(task: Task, *, retry: bool = False,
            analysed: Analysed | None = None) -> tuple[dict | None, SdcError | None]:
    """run_task, with a bad input's error returned (it is part of the batch's result).

    The seconds the item took where it ran (with `analysed`: there and where it
    was analysed) go with either outcome, for the batch's manifest:
    result["seconds"], or the error's `seconds` attribute. Any other error (a
    usage error, a bug) is raised: it stops the batch wherever it is found.
    With `analysed`, result["analysed_by"] is its `where`.
    """
    before = 0.0
    if analysed is not None:
        if analysed.error is not None:  # nothing left to do: the input's outcome is that error
            if analysed.error.exit_code != 2:
                raise analysed.error
            return None, analysed.error
        before = analysed.seconds
    t0 = time.perf_counter()
    try:
        result = run_task(task, retry=retry, analysed=analysed)
    except SdcError as e:
        if e.exit_code != 2:
            raise
        e.seconds = before + time.perf_counter() - t0
        return None, e
    result["seconds"] = before + time.perf_counter() - t0
    if analysed is not None:
        result["analysed_by"] = analysed.where
    return result, None


def analyse(task: Task) -> Analysed:
    """The analysis of an encode task, what its coding would compute first
    (:func:`sdc.pipeline.analyze_for_encode`), for a worker that runs analyses apart.

    Any SdcError is returned in it, a bad input's and a usage error alike: the
    worker that codes the task reports it (:func:`attempt`). Nothing is written.
    """
    from sdc import api, pipeline

    o, settings = task.options, task.options["settings"]
    t0 = time.perf_counter()
    try:
        image = api.read_image(read_input(task.src), task.label, o["max_pixels"])
        rgb = api.rgb_array(image, o["max_pixels"])
        t1 = time.perf_counter()
        preset = pipeline.coding_preset(settings.quality.get("qualities"), settings.task)
        analysis = pipeline.analyze_for_encode(rgb, settings.analyzer, settings.task, settings.analysis_config,
                                               preset)
    except SdcError as e:
        e.seconds = time.perf_counter() - t0
        return Analysed(None, e, e.seconds)
    t2 = time.perf_counter()
    return Analysed(analysis, None, t2 - t0, t2 - t1)


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


def _encode(task: Task, o: dict, retry: bool, analysed: Analysed | None = None) -> dict:
    from sdc import api
    from sdc.bitstream import describe_sdc

    image = api.read_image(read_input(task.src), task.label, o["max_pixels"])
    regions = o.get("regions") if analysed is None else analysed.analysis
    result = api.encode_result(image, o["settings"], regions=regions, max_pixels=o["max_pixels"],
                               file_name=None if task.src == STDIO else Path(task.src).name)
    _write(task.dst, result.data, o["force"], retry)
    info = describe_sdc(result.data, max_pixels=None)
    used = result.analysis
    row = {
        "file": task.label, "output": "<stdout>" if task.dst == STDIO else task.dst,
        "size": len(result.data), "bpp": info["bpp"],
        "levels": {lv: info["levels"][lv].get("bytes") for lv in LEVELS},
        # as when the encode analyses: its analysis counts, wherever it ran
        "seconds": float(getattr(result, "seconds", 0.0) or 0.0) + (analysed.analysis_seconds if analysed else 0.0),
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
