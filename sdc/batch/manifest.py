"""The manifest of a batch: one JSON line per finished input, appended as each one is reported.

::

    {"src": "a.jpg", "dst": "out/a.sdc", "status": "done", "error": null, "seconds": 0.41}
    {"src": "b.jpg", "dst": "out/b.sdc", "status": "failed", "error": "b.jpg: ...", "seconds": 0.02}

src and dst as the command line named them; seconds: how long the item took
where it ran (reading, coding and writing), null when it never ran (an input
rejected by its first bytes, which has no dst either).

Only the process that reports the batch writes it, never the workers: one
writer, so lines never interleave, they come in input order, and a line means
the item's outcome was seen. The file is opened for appending and flushed
after every line: a resumed batch (--skip-existing) adds the lines of the
inputs it redoes, and a batch that is killed keeps the lines of everything it
reported. The CLI writes one with --manifest FILE, and by default for a batch
on Ray with an -o directory (:func:`sdc.cli.io.plan_manifest`).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sdc.errors import SdcError, UsageError

DEFAULT_NAME = "sdc-batch-manifest.jsonl"  # in the -o directory of a batch on Ray (sdc.cli.io.plan_manifest)


class Manifest:
    """An open manifest file (or, for None, nothing): record() one outcome at a time."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        self._file = None  # opened with the first line: a batch that never starts leaves no file

    def record(self, src: str, dst: str | None, error: SdcError | None, seconds: float | None) -> None:
        if self.path is None:
            return
        if self._file is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            except OSError as e:
                raise UsageError(f"--manifest {self.path}: cannot write ({e.strerror})") from None
        line = {"src": src, "dst": dst, "status": "failed" if error is not None else "done",
                "error": None if error is None else " ".join(str(error).split()),
                "seconds": None if seconds is None else round(seconds, 3)}
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()

    def record_outcome(self, task, result: dict | None, error: SdcError | None) -> None:
        """A task's outcome as run_tasks yields it; the seconds from :func:`sdc.batch.tasks.attempt`."""
        seconds = getattr(error, "seconds", None) if error is not None else result.get("seconds")
        self.record(task.src, task.dst, error, seconds)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def recorded(outcomes: Iterator, path: str | Path) -> Iterator:
    """`outcomes` (task, result, error) passed through, each one recorded in the manifest at `path`."""
    with Manifest(path) as manifest:
        for outcome in outcomes:
            manifest.record_outcome(*outcome)
            yield outcome
