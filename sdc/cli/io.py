"""Inputs and outputs of the commands: reading (stdin or files), planning every
output before any work starts, and writing atomically.

An output is written to a temporary file in its directory, synced, then
linked (or, with --force, renamed) into place: a reader never sees a partial
file, and an existing file is never replaced without --force, even one that
appears while sdc works.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Collection, Sequence

from sdc.errors import SdcError, UsageError

STDIO = "-"


def label_of(path: str) -> str:
    """How messages and tables name an input."""
    return "<stdin>" if path == STDIO else path


def read_input(path: str, what: str = "input") -> bytes:
    """The bytes of an input file, or of stdin for '-'."""
    if path == STDIO:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"{what} '-' is the terminal: pipe data in or name a file")
        return sys.stdin.buffer.read()
    from sdc.api import read_file

    return read_file(path)


def read_head(path: str, n: int = 8) -> bytes | None:
    """The first `n` bytes of an input file; None for stdin or a file that cannot be read
    (reading it in full reports why)."""
    if path == STDIO:
        return None
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None


def sniff(inputs: Sequence[str], check: Callable[[bytes, str], None]) -> dict[str, SdcError]:
    """Inputs whose first bytes already show they are the wrong kind of file, with the error
    `check(head, label)` raised for them. Their outputs are then not planned: a wrong input
    is reported as such, not as an output that would overwrite it."""
    rejected: dict[str, SdcError] = {}
    for src in inputs:
        head = read_head(src)
        if head is None:
            continue
        try:
            check(head, label_of(src))
        except SdcError as e:
            rejected[src] = e
    return rejected


def refuse_non_sdc(head: bytes, label: str) -> None:
    """The container's own error (e.g. "not an sdc file (it looks like a PNG)") for a file
    whose first bytes are not the sdc magic; those bytes are all that decides it."""
    from sdc.bitstream import is_sdc, read_header

    if not is_sdc(head):
        read_header(head, max_pixels=None)


def is_dir_target(out: str) -> bool:
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def _output_names(inputs: Sequence[str], output: str | None, ext: str) -> list[str]:
    """Where each input goes: -o as given, a file in the -o directory, or the input with `ext`."""
    outs = []
    for src in inputs:
        if output == STDIO or (output is None and src == STDIO):
            outs.append(STDIO)
            continue
        name = "stdin" + ext if src == STDIO else Path(src).stem + ext
        if output is None:
            outs.append(str(Path(src).with_name(name)))
        elif is_dir_target(output):
            outs.append(str(Path(output) / name))
        else:
            outs.append(output)
    return outs


def plan_outputs(inputs: Sequence[str], output: str | None, ext: str, force: bool, binary: bool = True,
                 skip: Collection[str] = (), skip_existing: bool = False) -> list[str | None]:
    """Output path (or '-') for every input, None for those in `skip` and, with
    `skip_existing`, for those whose output already exists (a batch resumed); checks
    every output (collisions, own input, existing files) before any work starts."""
    if list(inputs).count(STDIO) > 1:
        raise UsageError("'-' (stdin) can be given only once")
    if output == STDIO and len(inputs) > 1:
        raise UsageError("-o - (stdout) takes a single input")
    if output is not None and output != STDIO and len(inputs) > 1 and not is_dir_target(output):
        raise UsageError(f"with {len(inputs)} inputs, -o must be a directory (end it with '/')")
    outs: list[str | None] = [None if src in skip else dst
                              for src, dst in zip(inputs, _output_names(inputs, output, ext))]
    seen: dict[str, str] = {}
    for i, (src, dst) in enumerate(zip(inputs, outs)):
        if dst is None or dst == STDIO:
            continue
        key = os.path.abspath(dst)
        if key in seen:
            raise UsageError(f"{seen[key]} and {src} would both be written to {dst}")
        seen[key] = src
        if src != STDIO and os.path.exists(src) and os.path.exists(dst) and os.path.samefile(src, dst):
            raise UsageError(f"{dst} would overwrite its own input")
        if os.path.isdir(dst):
            raise UsageError(f"{dst} is a directory")
        if os.path.exists(dst) and not force:
            if skip_existing:
                outs[i] = None
                continue
            raise UsageError(f"{dst} exists (use --force to overwrite, or --skip-existing)")
    if binary and STDIO in outs and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError("refusing to write binary data to the terminal: use -o FILE or redirect stdout")
    return outs


def write_output(dst: str, data: bytes, force: bool) -> None:
    """Write `data` to `dst` ('-' = stdout) atomically; never a partial file."""
    if dst == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(dst)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the directory {parent}: {e.strerror}") from None
    tmp = parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns() % 10**9}.tmp"  # see remove_temporaries
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise UsageError(f"cannot write in {parent}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite
            except FileExistsError:
                raise UsageError(f"{dst} exists (use --force to overwrite)") from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise UsageError(f"{dst} exists (use --force to overwrite)") from None
                os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def remove_temporaries(dst: str) -> None:
    """Remove the temporary files that write_output left beside `dst` when its process was
    killed while writing (SIGKILL, a lost machine): the one process that runs `dst`'s task
    again calls this first, so that a lost attempt leaves nothing behind."""
    import glob

    if dst == STDIO:
        return
    path = Path(dst)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def image_bytes(rgb, dst: str) -> bytes:
    """An RGB array as PNG bytes, or in the format the output's extension names (not .sdc)."""
    import io

    from PIL import Image

    fmt = "PNG"
    if dst != STDIO:
        ext = Path(dst).suffix.lower()
        Image.preinit()  # the common formats; every plugin is imported only for another extension
        named = Image.EXTENSION.get(ext)  # not registered_extensions(), which imports every plugin
        if named is None:
            named = Image.registered_extensions().get(ext)
        if named in Image.SAVE and named != "SDC":
            fmt = named
    buf = io.BytesIO()
    # zlib level 3, not Pillow's 6: on decoded photos it writes PNGs as small, in under half the time.
    options = {"compress_level": 3} if fmt == "PNG" else {}
    Image.fromarray(rgb).save(buf, format=fmt, **options)
    return buf.getvalue()


def read_input_list(path: str) -> list[str]:
    """The input paths listed in a file (or on stdin for '-'), one per line; blank lines and
    lines starting with '#' are skipped. A glob of a million names does not fit a command line."""
    if path == STDIO:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("--from-list '-' is the terminal: pipe the list in or name a file")
        text = sys.stdin.read()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--from-list {path}: cannot read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(f"--from-list {path}: not a UTF-8 text file") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _elsewhere(jobs: int, ray: str | None) -> str | None:
    """The option that runs the inputs in other processes (which cannot read our stdin), if any."""
    return "--ray" if ray is not None else "--jobs" if jobs > 1 else None


def gather_inputs(inputs: Sequence[str], from_list: str | None, jobs: int, ray: str | None = None) -> list[str]:
    """The positional inputs and those of --from-list, checked for what --jobs or --ray allows."""
    listed = read_input_list(from_list) if from_list is not None else []
    if from_list == STDIO and STDIO in inputs:
        raise UsageError("stdin cannot hold both the input list (--from-list -) and an input (-)")
    everything = [*inputs, *listed]
    if not everything:
        raise UsageError("no inputs: name files, or list them with --from-list FILE")
    if _elsewhere(jobs, ray) and STDIO in everything:
        raise UsageError(f"{_elsewhere(jobs, ray)} runs inputs in other processes: name files instead of '-'")
    return everything


def plan_tasks(command: str, inputs: Sequence[str], outs: Sequence[str | None], rejected: dict, options: dict,
               jobs: int = 1, ray: str | None = None) -> tuple[list[tuple[str, object]], int]:
    """(label, Task or the error that rejected the input) per input to run, in input order,
    and how many inputs were skipped because their output exists."""
    from sdc.batch import Task

    if _elsewhere(jobs, ray) and STDIO in outs:
        raise UsageError(f"{_elsewhere(jobs, ray)} runs outputs in other processes: write to files, not '-'")
    planned: list[tuple[str, object]] = []
    skipped = 0
    for src, dst in zip(inputs, outs):
        if src in rejected:
            planned.append((label_of(src), rejected[src]))
        elif dst is None:
            skipped += 1
        else:
            planned.append((label_of(src), Task(command, src, dst, options)))
    return planned, skipped


def plan_manifest(option: str | None, output: str | None, ray: str | None, inputs: Sequence[str],
                  outs: Sequence[str | None]) -> str | None:
    """Where the batch's manifest goes (:mod:`sdc.batch.manifest`): --manifest FILE, else, on
    Ray, DEFAULT_NAME in the -o directory (a batch big enough for a cluster wants a record
    of every item); else none. Checked before any work, like the outputs."""
    from sdc.batch.manifest import DEFAULT_NAME

    if option is None:
        if ray is None or output is None or output == STDIO or not is_dir_target(output):
            return None
        option = str(Path(output) / DEFAULT_NAME)
    if option == STDIO:
        raise UsageError("--manifest needs a file name, not '-'")
    if os.path.isdir(option):
        raise UsageError(f"--manifest {option} is a directory")
    key = os.path.abspath(option)
    for path in [*inputs, *(dst for dst in outs if dst is not None)]:
        if path != STDIO and os.path.abspath(path) == key:
            raise UsageError(f"--manifest {option} is also an input or an output")
    return option
