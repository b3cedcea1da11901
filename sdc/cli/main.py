"""The `sdc` click group, and the mapping of every failure to one line and an exit code.

Exit codes: 0 success, 1 usage error, 2 bad input, 130 interrupted. Every
error is one line on stderr ("sdc: error: ..."); `sdc --debug ...` (or
SDC_DEBUG=1) adds the traceback. The commands live in one module each and are
added to the group below.
"""
from __future__ import annotations

import os
import sys

import click

from sdc.errors import SdcError

from . import analyze, decode, encode, inspect, truncate
from .report import error


def _traceback(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()


def _exit_code(e: BaseException, debug: bool) -> int:
    """Report `e` on one line (the traceback too with --debug); the exit code it means."""
    if isinstance(e, click.exceptions.Exit):
        return e.exit_code
    if isinstance(e, (click.exceptions.Abort, KeyboardInterrupt)):
        click.echo("sdc: interrupted", err=True)
        return 130
    if isinstance(e, click.ClickException):
        msg = e.format_message()
        if isinstance(e, click.UsageError) and e.ctx is not None:
            msg = f"{msg} (see '{e.ctx.command_path} --help')"
        error(msg)
        return 1
    if isinstance(e, SdcError):
        _traceback(debug)
        error(str(e))
        return e.exit_code
    if isinstance(e, BrokenPipeError):
        # the reader of our stdout went away (e.g. `| head`): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    if isinstance(e, OSError):
        _traceback(debug)
        where = f": {e.filename}" if e.filename else ""
        error(f"{e.strerror or e}{where}")
        return 2
    # a bug: still one line, the traceback with --debug
    _traceback(debug)
    error(f"internal error: {type(e).__name__}: {e}"
          + ("" if debug else " (run 'sdc --debug ...' for the traceback)"))
    return 1


class SdcGroup(click.Group):
    """Runs a command and turns every failure into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get("SDC_DEBUG", "") not in ("", "0")
        try:
            rv = super().main(args, prog_name or "sdc", complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except (Exception, KeyboardInterrupt) as e:  # click's Exit and Abort are Exceptions too
            code = _exit_code(e, debug)
        if standalone_mode:
            sys.exit(code)
        return code


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from sdc.bitstream import VERSION_MAJOR, VERSION_MINOR

    try:
        from importlib.metadata import version
        v = version("sdc")
    except Exception:
        v = "unknown"
    click.echo(f"sdc {v} (.sdc format {VERSION_MAJOR}.{VERSION_MINOR})")
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


for _module in (encode, decode, inspect, truncate, analyze):
    cli.add_command(_module.command)


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); raises SystemExit with the exit code."""
    return cli.main(args=argv, prog_name="sdc")


def run() -> None:
    """The `sdc` command (and `python -m sdc`): :func:`main`, then the process ends at once.

    By the time a command returns, its outputs are complete, synced and in place,
    so the interpreter's teardown (freeing the models, joining ONNX Runtime's
    threads: 6% of a 768x512 decode, docs/experiments.md) buys nothing; the
    standard streams are flushed and the process exits with os._exit. Not when
    something may still need its exit handlers: a Ray instance this process
    started or joined, or threads other than the main one.
    """
    import threading

    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    ray = sys.modules.get("ray")
    if (ray is not None and ray.is_initialized()) or threading.active_count() > 1:
        sys.exit(code)
    os._exit(code)
