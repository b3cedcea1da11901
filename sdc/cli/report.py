"""What the commands tell the user on stderr: one-line errors and warnings, tables, progress.

rich is imported only inside the functions that draw with it, so that
`sdc --help`, `sdc inspect` and `sdc truncate` never pay for it.
"""
from __future__ import annotations

from typing import Sequence

import click

from sdc.errors import SdcError



def one_line(msg: object) -> str:
    """`msg` on one line, control characters escaped (file names and metadata can hold any)."""
    from sdc.texttable import clean

    return clean(" ".join(str(msg).split())) or "unknown error"


def error(msg: object) -> None:
    click.echo(f"sdc: error: {one_line(msg)}", err=True)


def warn(msg: object) -> None:
    click.echo(f"sdc: warning: {one_line(msg)}", err=True)


def report_failure(label: str, e: SdcError) -> int:
    """Print a bad input's error, naming the input once; its exit code."""
    msg = str(e)
    error(msg if msg.startswith(f"{label}:") else f"{label}: {msg}")
    return e.exit_code


def fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def console(stderr: bool):
    """A rich console; when not a terminal, wide enough that tables do not fold."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=200)
    return c


class _NoProgress:
    """What run_batch needs of a progress bar, doing nothing (one input: no bar, no rich import)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


def progress(total: int):
    """A progress bar on stderr when it is a terminal and there is more than one input."""
    if total < 2:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    con = console(stderr=True)
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=con, transient=True,
                    disable=not con.is_terminal)


def run_command_batch(command: str, verb: str, inputs: Sequence[str], outs: Sequence[str | None],
                      rejected: dict, options: dict, *, output: str | None, jobs: int, ray: str | None,
                      manifest: str | None) -> tuple[list[dict], int]:
    """The batch of a command whose outputs are planned (:func:`sdc.cli.io.plan_outputs`):
    its tasks and its manifest planned, then run (:func:`run_batch`). `manifest` is the
    --manifest option."""
    from .io import plan_manifest, plan_tasks

    planned, skipped = plan_tasks(command, inputs, outs, rejected, options, jobs, ray)
    if skipped:
        warn(f"skipped {skipped} input(s) whose output exists (--skip-existing)")
    manifest = plan_manifest(manifest, output, ray, inputs, outs)
    return run_batch(verb, planned, jobs, ray=ray, manifest=manifest)


def run_batch(verb: str, planned: Sequence[tuple[str, object]], jobs: int = 1, *, ray: str | None = None,
              manifest: str | None = None) -> tuple[list[dict], int]:
    """Run a batch planned as (label, Task or the SdcError that rejected the input) under a
    progress bar, with `jobs` processes (:func:`sdc.batch.run_tasks`) or on the Ray cluster
    at `ray` (:func:`sdc.batch.ray_runner.run_tasks_on_ray`).

    Warnings and bad inputs are reported on one line each, in input order,
    and the batch goes on; a usage error stops it. Every outcome, rejected
    inputs included, goes to the `manifest` file when one is given. Returns
    the rows of the inputs that worked, in input order, and the worst exit code.
    """
    from contextlib import closing

    from sdc.batch import Task, run_tasks
    from sdc.batch.manifest import Manifest

    tasks = (item for _, item in planned if isinstance(item, Task))
    if ray is None:
        outcomes = run_tasks(tasks, jobs)
    else:
        from sdc.batch.ray_runner import run_tasks_on_ray

        outcomes = run_tasks_on_ray(tasks, ray)
    rows, worst = [], 0
    with Manifest(manifest) as record, closing(outcomes), progress(len(planned)) as bar:
        task_id = bar.add_task(verb, total=len(planned))
        for label, item in planned:
            bar.update(task_id, description=f"{verb} {label}")
            if isinstance(item, SdcError):
                record.record(label, None, item, None)
                worst = max(worst, report_failure(label, item))
            else:
                outcome = next(outcomes)
                record.record_outcome(*outcome)
                _, result, failure = outcome
                if failure is not None:
                    worst = max(worst, report_failure(label, failure))
                else:
                    for w in result["warnings"]:
                        warn(w)
                    rows.append(result["row"])
            bar.advance(task_id)
    return rows, worst


def escape_names(rows: list[dict], *keys: str) -> list[dict]:
    """Rows with the file names in `keys` escaped: a name is never rich markup."""
    from rich.markup import escape

    return [dict(r, **{k: escape(r[k]) for k in keys}) for r in rows]
