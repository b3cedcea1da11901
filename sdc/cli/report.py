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


def run_batch(verb: str, planned: Sequence[tuple[str, object]], jobs: int = 1) -> tuple[list[dict], int]:
    """Run a batch planned as (label, Task or the SdcError that rejected the input) under a
    progress bar, with `jobs` processes (:func:`sdc.batch.run_tasks`).

    Warnings and bad inputs are reported on one line each, in input order,
    and the batch goes on; a usage error stops it. Returns the rows of the
    inputs that worked, in input order, and the worst exit code.
    """
    from sdc.batch import Task, run_tasks

    outcomes = run_tasks((item for _, item in planned if isinstance(item, Task)), jobs)
    rows, worst = [], 0
    with progress(len(planned)) as bar:
        task_id = bar.add_task(verb, total=len(planned))
        for label, item in planned:
            bar.update(task_id, description=f"{verb} {label}")
            if isinstance(item, SdcError):
                worst = max(worst, report_failure(label, item))
            else:
                _, result, failure = next(outcomes)
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
