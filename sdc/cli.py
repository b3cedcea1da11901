"""The `sdc` command line: encode, decode, inspect, truncate, analyze.

Import cost matters: `sdc --help`, `sdc inspect` and `sdc truncate` must start in
well under 0.3 s, so this module imports only click and sdc's light modules at
import time. torch (through sdc.pipeline), numpy, PIL and rich are imported
inside the commands that need them.

Exit codes: 0 success, 1 usage error, 2 bad input. Every error is one line on
stderr ("sdc: error: ..."); `sdc --debug ...` (or SDC_DEBUG=1) adds the traceback.
Outputs are written atomically (a temporary file in the same directory, then a
rename) and never replace an existing file without --force.
"""
from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import click

from .errors import BadInputError, SdcError, UsageError
from .levels import DEFAULT_QUALITY, LEVELS, parse_levels

# Same value as sdc.bitstream.DEFAULT_MAX_PIXELS (checked by a test); repeated
# here so that building the command line does not import the container.
DEFAULT_MAX_PIXELS = 1 << 26
STDIO = "-"


# ---------------------------------------------------------------- error handling
def _one_line(msg: str) -> str:
    from .texttable import clean

    return clean(" ".join(str(msg).split())) or "unknown error"


def _error(msg: str) -> None:
    click.echo(f"sdc: error: {_one_line(msg)}", err=True)


def _warn(msg: str) -> None:
    click.echo(f"sdc: warning: {_one_line(msg)}", err=True)


class SdcGroup(click.Group):
    """Runs a command and turns every failure into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get("SDC_DEBUG", "") not in ("", "0")
        code = 0
        try:
            rv = super().main(args, prog_name or "sdc", complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.Exit as e:
            code = e.exit_code
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("sdc: interrupted", err=True)
            code = 130
        except click.ClickException as e:
            msg = e.format_message()
            if isinstance(e, click.UsageError) and e.ctx is not None:
                msg = f"{msg} (see '{e.ctx.command_path} --help')"
            _error(msg)
            code = 1
        except SdcError as e:
            if debug:
                import traceback
                traceback.print_exc()
            _error(str(e))
            code = e.exit_code
        except BrokenPipeError:
            # the reader of our stdout went away (e.g. `| head`): stop quietly
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            code = 1
        except OSError as e:
            if debug:
                import traceback
                traceback.print_exc()
            where = f": {e.filename}" if e.filename else ""
            _error(f"{e.strerror or e}{where}")
            code = 2
        except Exception as e:  # a bug: still one line, the traceback with --debug
            if debug:
                import traceback
                traceback.print_exc()
            _error(f"internal error: {type(e).__name__}: {e}"
                   + ("" if debug else " (run 'sdc --debug ...' for the traceback)"))
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    try:
        from importlib.metadata import version
        v = version("sdc")
    except Exception:
        v = "unknown"
    click.echo(f"sdc {v} (.sdc format 1.0)")
    ctx.exit(0)


@click.group(cls=SdcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def cli(debug: bool) -> None:
    """sdc: semantically structured image coding for machines.

    Encodes images into .sdc files whose bitstream is split by object
    importance (L1, L2, L3, other); any subset of the levels decodes, and a
    file cut short decodes the levels it holds. `-` means stdin/stdout.

    \b
    Examples:
      sdc encode photo.png                    # -> photo.sdc
      sdc encode photos/*.png -o out/ -q 6
      sdc encode in.png --task "read the signs" --quality L1=8,other=2
      sdc decode photo.sdc --levels L1,L2     # -> photo.png
      sdc inspect photo.sdc
      sdc truncate photo.sdc --levels L1 -o small.sdc
      head -c 3000 photo.sdc | sdc decode - -o partial.png
    """


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="sdc")


# ---------------------------------------------------------------- input / output
def _read_input(path: str, what: str = "input") -> bytes:
    if path == STDIO:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"{what} '-' is the terminal: pipe data in or name a file")
        return sys.stdin.buffer.read()
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory") from None
    except PermissionError:
        raise BadInputError(f"{path}: permission denied") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None


def _label(path: str) -> str:
    return "<stdin>" if path == STDIO else path


def _is_dir_target(out: str) -> bool:
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def _plan_outputs(inputs: tuple[str, ...], output: str | None, ext: str, force: bool,
                  binary: bool = True) -> list[str]:
    """Output path (or '-') for every input; checks everything before any work starts."""
    if inputs.count(STDIO) > 1:
        raise UsageError("'-' (stdin) can be given only once")
    if output == STDIO and len(inputs) > 1:
        raise UsageError("-o - (stdout) takes a single input")
    if output is not None and output != STDIO and len(inputs) > 1 and not _is_dir_target(output):
        raise UsageError(f"with {len(inputs)} inputs, -o must be a directory (end it with '/')")
    outs = []
    for src in inputs:
        if output == STDIO or (output is None and src == STDIO):
            outs.append(STDIO)
            continue
        name = "stdin" + ext if src == STDIO else Path(src).stem + ext
        if output is None:
            outs.append(str(Path(src).with_name(name)))
        elif _is_dir_target(output):
            outs.append(str(Path(output) / name))
        else:
            outs.append(output)
    seen: dict[str, str] = {}
    for src, dst in zip(inputs, outs):
        if dst == STDIO:
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
            raise UsageError(f"{dst} exists (use --force to overwrite)")
    if binary and STDIO in outs and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError("refusing to write binary data to the terminal: use -o FILE or redirect stdout")
    return outs


def _write_output(dst: str, data: bytes, force: bool) -> None:
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
    tmp = parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns() % 10**9}.tmp"
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


def _console(stderr: bool):
    """A rich console; when not a terminal, wide enough that tables do not fold."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=200)
    return c


def _progress(console, total: int):
    """A progress bar on stderr when it is a terminal and there is more than one input."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                    disable=total < 2 or not console.is_terminal)


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n:,}"


def _parse_level_option(text: str, option: str) -> tuple[str, ...]:
    try:
        return parse_levels(text)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _parse_qualities(q: int | None, spec: str | None) -> dict[str, int]:
    if q is not None and q < 1:
        raise UsageError(f"-q {q}: quality must be at least 1")
    base = DEFAULT_QUALITY if q is None else q
    qualities = {lv: base for lv in LEVELS}
    if spec:
        for part in spec.split(","):
            name, sep, value = part.partition("=")
            if not sep:
                raise UsageError(f"--quality {spec!r}: expected LEVEL=N[,LEVEL=N...], e.g. L1=7,other=2")
            try:
                (level,) = parse_levels(name)
            except ValueError:
                raise UsageError(f"--quality: unknown level {name.strip()!r}: expected one of "
                                 f"{', '.join(LEVELS)}") from None
            try:
                qualities[level] = int(value)
            except ValueError:
                raise UsageError(f"--quality: {value.strip()!r} for {level} is not an integer") from None
            if qualities[level] < 1:
                raise UsageError(f"--quality: quality for {level} must be at least 1")
    return qualities


def _max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                        show_default=True, help="Refuse images larger than this many pixels.")(f)


def _lmm_options(f):
    """--lmm-url / --lmm-model: the captioning/ranking LMM for this run (over config and environment).
    The API key stays in SDC_LMM_API_KEY or the config file: a command line is visible to every user."""
    f = click.option("--lmm-model", metavar="NAME", help="Model name to ask for at --lmm-url.")(f)
    return click.option("--lmm-url", metavar="URL", help="OpenAI-compatible endpoint that writes the captions "
                        "and ranks the objects, e.g. http://127.0.0.1:8000/v1.")(f)


def _analysis_config(lmm_url: str | None, lmm_model: str | None) -> dict | None:
    """Config overrides from the LMM options. An endpoint named on the command line is used
    (ranker "openai") even with --analyzer offline, which otherwise keeps everything local."""
    cfg = {"lmm_base_url": lmm_url, "lmm_model": lmm_model, "ranker": "openai" if lmm_url else None}
    return {k: v for k, v in cfg.items() if v} or None


def _load_image(data: bytes, label: str, max_pixels: int):
    """Decode an image file into an RGB PIL image (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    from .bitstream import is_sdc

    if is_sdc(data[:8]):
        raise BadInputError(f"{label}: is already an .sdc file (use 'sdc decode')")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise BadInputError(f"{label}: image is {w}x{h} = {w * h} pixels, over the limit of "
                                    f"{max_pixels} (--max-pixels)")
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except BadInputError:
        raise
    except Image.DecompressionBombError as e:
        raise BadInputError(f"{label}: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's ways of saying "not an image"
        from PIL import UnidentifiedImageError

        if isinstance(e, UnidentifiedImageError):
            raise BadInputError(f"{label}: not an image file sdc can read (PNG, JPEG, WebP, ...)") from None
        raise BadInputError(f"{label}: cannot read the image ({_one_line(str(e))})") from None


def _report_failure(label: str, e: SdcError) -> int:
    msg = str(e)
    _error(msg if msg.startswith(f"{label}:") else f"{label}: {msg}")
    return e.exit_code


def _run_batch(console, verb: str, inputs, outs, one) -> tuple[list[dict], int]:
    """Run `one(src, dst, label) -> summary row` over the inputs under a progress bar.

    A bad input is reported on one line and the batch goes on; usage errors
    stop it. Returns the rows of the files that worked and the worst exit code.
    """
    rows, worst = [], 0
    with _progress(console, len(inputs)) as progress:
        task_id = progress.add_task(verb, total=len(inputs))
        for src, dst in zip(inputs, outs):
            label = _label(src)
            progress.update(task_id, description=f"{verb} {label}")
            try:
                rows.append(one(src, dst, label))
            except UsageError:
                raise
            except BadInputError as e:
                worst = max(worst, _report_failure(label, e))
            progress.advance(task_id)
    return rows, worst


# ---------------------------------------------------------------- encode
@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN...")
@click.option("-o", "--output", metavar="OUT",
              help="Output file, directory (ending in '/') for many inputs, or '-' for stdout. "
                   "Default: IN with the suffix .sdc (stdout for stdin).")
@click.option("-q", "q", type=int, metavar="N", default=None,
              help=f"Quality 1..N (default {DEFAULT_QUALITY}): of every level, or with --task, as the task's "
                   "preset spreads it over the levels and the background.")
@click.option("--quality", "quality_spec", metavar="L1=7,other=2",
              help="Quality per level by hand, over -q; turns the task's preset off.")
@click.option("--levels", "levels_spec", default="all", show_default=True, metavar="L1,L2|all",
              help="Keep only these levels' substreams.")
@click.option("--regions", "regions", metavar="FILE",
              help="Use these regions instead of running the analyzer: sdc analysis JSON "
                   "(from 'sdc analyze') or COCO-style annotations (boxes, polygons, RLE).")
@click.option("--analyzer", default="auto", show_default=True, help="Analyzer to run (see sdc analyze).")
@click.option("--task", metavar="TEXT",
              help="What the decoded image is for: 'object detection', 'classification', 'segmentation', "
                   "or any text such as 'count the cars' (coded as for detection). Picks the labels to find "
                   "and how to code them (README, 'Coding for a task').")
@_lmm_options
@click.option("--no-meta", is_flag=True, help="Leave the semantic metadata out of the file.")
@click.option("-e", "--effort", type=int, default=1, show_default=True, metavar="1..4",
              help="Encoder effort: 1 codes the analysis transform's latent as it is; 2 to 4 "
                   "refine it by gradient descent first (2: 20 steps on y; 3: that, and 20 steps on z and y then "
                   "20 on y; 4: as 3, and 80 finer steps on y from each start) and keep the cheapest file; "
                   "effort 2 saves about 6% BD-rate on photos at about 50x the encode time, effort 4 takes 3x effort 3's "
                   "(benchmarks/README.md). Decoders cannot tell.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--quiet", is_flag=True, help="No summary table.")
@_max_pixels_option
def encode(inputs, output, q, quality_spec, levels_spec, regions, analyzer, task, lmm_url, lmm_model, no_meta,
           effort, force, quiet, max_pixels):
    """Encode images (PNG, JPEG, ...) into .sdc files."""
    qualities = _parse_qualities(q, quality_spec)
    by_hand = quality_spec is not None or not task
    keep = _parse_level_option(levels_spec, "--levels")
    outs = _plan_outputs(inputs, output, ".sdc", force)
    regions_json = None
    if regions is not None:
        import json

        try:
            regions_json = json.loads(Path(regions).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInputError(f"--regions {regions}: no such file") from None
        except OSError as e:
            raise BadInputError(f"--regions {regions}: cannot read ({e.strerror})") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInputError(f"--regions {regions}: not JSON ({_one_line(str(e))[:100]})") from None

    import numpy as np

    from . import pipeline
    from .bitstream import describe_sdc

    from .models.weights import manifest_num_qualities

    n_q = manifest_num_qualities()  # before any model loads: a bad -q fails at once
    if n_q is not None:
        for lv, v in qualities.items():
            if v > n_q:
                raise UsageError(f"quality {v} for {lv} is out of range: this codec has qualities 1..{n_q}")

    analysis_config = _analysis_config(lmm_url, lmm_model)

    def one(src: str, dst: str, label: str) -> dict:
        image = _load_image(_read_input(src), label, max_pixels)
        analysis = None
        if regions_json is not None:
            from .analysis import load_regions

            name = None if src == STDIO else Path(src).name
            analysis = load_regions(regions_json, image.width, image.height, file_name=name)
        quality = {"qualities": qualities} if by_hand else {"q": qualities["L1"]}
        result = pipeline.encode_image(np.asarray(image), **quality, keep_levels=keep,
                                       analysis=analysis, analyzer=analyzer, task=task,
                                       analysis_config=analysis_config,
                                       include_meta=not no_meta, effort=effort)
        _write_output(dst, result.data, force)
        info = describe_sdc(result.data, max_pixels=None)
        used = result.analysis
        for w in getattr(used, "warnings", None) or ():
            _warn(f"{label}: {w}")
        return {
            "file": label, "output": "<stdout>" if dst == STDIO else dst,
            "size": len(result.data), "bpp": info["bpp"],
            "levels": {lv: info["levels"][lv].get("bytes") for lv in LEVELS},
            "seconds": float(getattr(result, "seconds", 0.0) or 0.0),
            "analyzer": getattr(used, "analyzer", None) or ("regions file" if regions else "-"),
            "objects": len(getattr(used, "objects", None) or ()),
        }

    console = _console(stderr=True)
    rows, worst = _run_batch(console, "encoding", inputs, outs, one)
    if rows and not quiet:
        _encode_table(console, rows)
    return worst


def _encode_table(console, rows: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = [dict(r, file=escape(r["file"]), output=escape(r["output"]), analyzer=escape(r["analyzer"]))
            for r in rows]
    analyzers = sorted({r["analyzer"] for r in rows})
    per_row = len(analyzers) > 1
    t = Table(title="sdc encode", title_justify="left",
              caption=None if per_row else f"analyzer: {analyzers[0]}", caption_justify="left")
    t.add_column("file", overflow="fold")
    t.add_column("output", overflow="fold")
    t.add_column("bytes", justify="right", no_wrap=True)
    t.add_column("bpp", justify="right", no_wrap=True)
    for lv in LEVELS:
        t.add_column(lv, justify="right", no_wrap=True)
    t.add_column("objects", justify="right", no_wrap=True)
    t.add_column("s", justify="right", no_wrap=True)
    if per_row:
        t.add_column("analyzer", overflow="fold")
    for r in rows:
        t.add_row(r["file"], r["output"], _fmt_bytes(r["size"]), f"{r['bpp']:.4f}",
                  *(_fmt_bytes(r["levels"][lv]) for lv in LEVELS), str(r["objects"]),
                  f"{r['seconds']:.2f}", *([r["analyzer"]] if per_row else []))
    if len(rows) > 1:
        total = sum(r["size"] for r in rows)
        t.add_section()
        t.add_row(f"{len(rows)} files", "", _fmt_bytes(total), "", *("" for _ in LEVELS),
                  str(sum(r["objects"] for r in rows)), f"{sum(r['seconds'] for r in rows):.2f}",
                  *([""] if per_row else []))
    console.print(t)


# ---------------------------------------------------------------- decode
@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN...")
@click.option("-o", "--output", metavar="OUT",
              help="Output image, directory (ending in '/') for many inputs, or '-' for PNG on "
                   "stdout. Default: IN with the suffix .png (stdout for stdin).")
@click.option("--levels", "levels_spec", default="all", show_default=True, metavar="L1|L1,L2|all",
              help="Decode only these levels (the others are composed from what is present).")
@click.option("--composer", metavar="NAME", default=None, help="How to fill the regions of missing levels.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--quiet", is_flag=True, help="No summary table.")
@_max_pixels_option
def decode(inputs, output, levels_spec, composer, force, quiet, max_pixels):
    """Decode .sdc files (or prefixes of them) into images."""
    levels = _parse_level_option(levels_spec, "--levels")
    outs = _plan_outputs(inputs, output, ".png", force)
    from .bitstream import read_header

    def one(src: str, dst: str, label: str) -> dict:
        data = _read_input(src)
        header = read_header(data, max_pixels=max_pixels)  # refuse non-sdc input before importing torch
        from . import pipeline

        result = pipeline.decode_sdc(data, levels=None if levels == LEVELS else levels,
                                     composer=composer, max_pixels=max_pixels)
        _write_output(dst, _encode_image(result.rgb, dst), force)
        missing = tuple(result.missing_levels)
        if missing:
            _warn(f"{label}: levels {', '.join(missing)} missing from the file "
                  f"(truncated or dropped); decoded {', '.join(result.decoded_levels) or 'none'}")
        return {
            "file": label, "output": "<stdout>" if dst == STDIO else dst,
            "size": len(data), "bpp": 8 * len(data) / (header.width * header.height),
            "size_px": f"{header.width}x{header.height}",
            "decoded": ",".join(result.decoded_levels) or "none",
            "missing": ",".join(missing) or "-",
            "seconds": float(getattr(result, "seconds", 0.0) or 0.0),
        }

    console = _console(stderr=True)
    rows, worst = _run_batch(console, "decoding", inputs, outs, one)
    if rows and not quiet:
        from rich.markup import escape
        from rich.table import Table

        rows = [dict(r, file=escape(r["file"]), output=escape(r["output"])) for r in rows]
        t = Table(title="sdc decode", title_justify="left")
        for col, just in (("file", "left"), ("output", "left"), ("size", "right"), ("bytes", "right"),
                          ("bpp", "right"), ("decoded", "left"), ("missing", "left"), ("s", "right")):
            t.add_column(col, justify=just, overflow="fold")
        for r in rows:
            t.add_row(r["file"], r["output"], r["size_px"], _fmt_bytes(r["size"]), f"{r['bpp']:.4f}",
                      r["decoded"], r["missing"], f"{r['seconds']:.2f}" if r["seconds"] else "-")
        console.print(t)
    return worst


def _encode_image(rgb, dst: str) -> bytes:
    """PNG (or the format the output's extension names) bytes of an RGB array."""
    from PIL import Image

    fmt = "PNG"
    if dst != STDIO:
        ext = Path(dst).suffix.lower()
        Image.init()
        named = Image.registered_extensions().get(ext)
        if named in Image.SAVE and named != "SDC":
            fmt = named
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


# ---------------------------------------------------------------- inspect
@cli.command()
@click.argument("input", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@_max_pixels_option
def inspect(input, as_json, max_pixels):
    """Show an .sdc file's chunks, sizes, bpp per level, objects and captions.

    Loads no model. Exits with 2 if a chunk is damaged (after showing the rest).
    """
    from .bitstream import describe_sdc

    data = _read_input(input)
    try:
        info = describe_sdc(data, max_pixels=max_pixels)
    except SdcError as e:
        raise BadInputError(f"{_label(input)}: {e}") from None
    info = {"file": _label(input), **info}
    if as_json:
        import json

        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        _inspect_tables(info)
    for p in info["problems"]:
        _error(f"{_label(input)}: {p}")
    return 2 if info["problems"] else 0


def _inspect_tables(info: dict) -> None:
    # Plain tables (sdc.texttable), not rich: inspect must stay well under 0.3 s.
    from .texttable import Out, clean, shorten

    out = Out()
    q = info["qualities"]
    out.line(f"{clean(info['file'])}: .sdc {info['format_version']}, {info['width']}x{info['height']}, "
             f"{info['file_bytes']:,} bytes, {info['bpp']:.4f} bpp (whole file), codec {info['codec_id']}",
             "bold")
    out.line("qualities: " + ", ".join(f"{lv}={q[lv]}" for lv in LEVELS)
             + f"; region map {info['region_map']['h']}x{info['region_map']['w']}")
    if info["missing_levels"]:
        out.line(f"missing levels: {', '.join(info['missing_levels'])}", "yellow")

    out.table("chunks", [("chunk", "left"), ("type", "left"), ("offset", "right"), ("bytes", "right"),
                         ("crc32c", "left"), ("status", "left")],
              [[clean(c["name"]), clean(c["type"]), f"{c['offset']:,}", f"{c['length']:,}", c["crc"],
                c["status"]] for c in info["chunks"]],
              [None if c["status"] == "ok" else "red" for c in info["chunks"]])

    cells = sum(info["levels"][lv].get("region_cells", 0) for lv in LEVELS) or 1
    rows = []
    for lv in LEVELS:
        d = info["levels"][lv]
        area = f"{100 * d['region_cells'] / cells:.1f}%" if "region_cells" in d else "-"
        rows.append([lv, str(d["quality"]), d["status"], _fmt_bytes(d.get("bytes")),
                     _fmt_bytes(d.get("cumulative_bytes")),
                     f"{d['bpp']:.4f}" if d["status"] == "present" else "-", area])
    out.table("levels (bpp: the whole file up to and including the level)",
              [("level", "left"), ("quality", "right"), ("status", "left"), ("bytes", "right"),
               ("file bytes", "right"), ("bpp", "right"), ("area", "right")], rows)

    meta = info["metadata"]
    if meta is None:
        out.line("no semantic metadata" + ("" if any(c["name"] == "META" for c in info["chunks"])
                                           else " (encoded with --no-meta)"))
        return
    out.line(f"analyzer: {clean(meta['analyzer'] or '-')}; task: {clean(meta['task'] or '-')}")
    for key, text in meta["captions"].items():
        out.line(f"{key.replace('_', ' ')}: {clean(text)}")
    if meta["objects"]:
        order = {lv: i for i, lv in enumerate(LEVELS)}
        rows = []
        for o in sorted(meta["objects"], key=lambda o: order.get(o["level"], 9)):
            box = ",".join(f"{v:g}" for v in o["box"]) if o["box"] else "-"
            rows.append([clean(o["level"] or "-"), shorten(clean(o["label"] or "-"), 40),
                         "-" if o["score"] is None else f"{o['score']:.2f}", box,
                         shorten(clean(o["reason"] or ""), 60)])
        out.table(f"objects ({len(meta['objects'])})",
                  [("level", "left"), ("label", "left"), ("score", "right"), ("box x0,y0,x1,y1", "left"),
                   ("reason", "left")], rows)


# ---------------------------------------------------------------- truncate
@cli.command()
@click.argument("input", metavar="IN")
@click.option("--levels", "levels_spec", required=True, metavar="L1,L2",
              help="Levels to keep; the other level substreams are dropped.")
@click.option("-o", "--output", metavar="OUT", help="Output file, or '-' for stdout (the default for stdin).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
def truncate(input, levels_spec, output, force):
    """Drop levels from an .sdc file at the byte level (no model is loaded).

    The output is a complete file whose readers report the dropped levels
    missing. A cut-short input also loses its incomplete chunk.
    """
    from .bitstream import describe_sdc, truncate_sdc

    keep = _parse_level_option(levels_spec, "--levels")
    if output is None and input != STDIO:
        raise UsageError("give the output file with -o OUT (or -o - for stdout)")
    (dst,) = _plan_outputs((input,), output, ".sdc", force)
    data = _read_input(input)
    try:
        out = truncate_sdc(data, keep)
        info = describe_sdc(out, max_pixels=None)
    except SdcError as e:
        raise BadInputError(f"{_label(input)}: {e}") from None
    # A level that was never written and owns no cell has nothing to keep: no warning.
    absent = [lv for lv in keep if lv not in info["present_levels"]
              and not (info["levels"][lv]["status"] == "not written" and info["levels"][lv].get("region_cells") == 0)]
    if absent:
        _warn(f"{_label(input)} has no complete {', '.join(absent)}: not kept")
    _write_output(dst, out, force)
    kept = ", ".join(info["present_levels"]) or "no level"
    click.echo(f"{_label(input)} -> {'<stdout>' if dst == STDIO else dst}: kept {kept}; "
               f"{len(data):,} -> {len(out):,} bytes, {info['bpp']:.4f} bpp", err=True)
    return 0


# ---------------------------------------------------------------- analyze
@cli.command()
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="FILE",
              help="Write the analysis JSON here (default: stdout); 'sdc encode --regions' reads it.")
@click.option("--analyzer", default="auto", show_default=True, help="Analyzer to run.")
@click.option("--task", metavar="TEXT", help="What the image is for; steers which objects matter.")
@_lmm_options
@click.option("--draw", metavar="IMAGE", help="Also write the image with the regions drawn on it.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@_max_pixels_option
def analyze(input, output, analyzer, task, lmm_url, lmm_model, draw, force, max_pixels):
    """Analyse an image only: objects, masks, levels and captions as JSON."""
    import json

    (dst,) = _plan_outputs((input,), output if output is not None else STDIO, ".json", force,
                           binary=False)
    if draw is not None:
        (draw_dst,) = _plan_outputs((input,), draw, ".png", force)
        if draw_dst == STDIO:
            raise UsageError("--draw needs a file name")
    label = _label(input)
    image = _load_image(_read_input(input), label, max_pixels)
    from .analysis import analyze as run_analysis

    t0 = time.perf_counter()
    result = run_analysis(image, analyzer=analyzer, task=task, config=_analysis_config(lmm_url, lmm_model))
    seconds = time.perf_counter() - t0
    for w in result.warnings:
        _warn(f"{label}: {w}")
    text = json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
    if dst == STDIO:
        click.echo(text, nl=False)
    else:
        _write_output(dst, text.encode("utf-8"), force)
    if draw is not None:
        _write_output(draw_dst, _encode_image(__import__("numpy").asarray(result.draw(image)), draw_dst),
                      force)
    levels = {}
    for o in result.objects:
        levels[o.level] = levels.get(o.level, 0) + 1
    summary = ", ".join(f"{n} {lv}" for lv, n in sorted(levels.items())) or "no objects"
    click.echo(f"{label}: analyzer {result.analyzer}: {summary} ({seconds:.2f} s)", err=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
