"""`sdc truncate`: drop levels from an .sdc file at the byte level; no model, no numpy."""
from __future__ import annotations

import click

from sdc.errors import BadInputError, SdcError, UsageError

from .io import STDIO, label_of, plan_outputs, read_input, refuse_non_sdc, sniff, write_output
from .options import force_option, parse_level_option
from .report import warn


@click.command("truncate")
@click.argument("input", metavar="IN")
@click.option("--levels", "levels_spec", required=True, metavar="L1,L2",
              help="Levels to keep; the other level substreams are dropped.")
@click.option("-o", "--output", metavar="OUT", help="Output file, or '-' for stdout (the default for stdin).")
@force_option
def command(input, levels_spec, output, force):
    """Drop levels from an .sdc file at the byte level (no model is loaded).

    The output is a complete file whose readers report the dropped levels
    missing. A cut-short input also loses its incomplete chunk.

    \b
    Examples:
      sdc truncate photo.sdc --levels L1 -o small.sdc
      sdc truncate photo.sdc --levels L1,L2 -o - | ssh host 'cat > photo_L12.sdc'
    """
    from sdc.bitstream import describe_sdc, truncate_sdc

    keep = parse_level_option(levels_spec, "--levels")
    if output is None and input != STDIO:
        raise UsageError("give the output file with -o OUT (or -o - for stdout)")
    rejected = sniff((input,), refuse_non_sdc)
    if input in rejected:
        raise BadInputError(f"{label_of(input)}: {rejected[input]}")
    (dst,) = plan_outputs((input,), output, ".sdc", force)
    data = read_input(input)
    try:
        out = truncate_sdc(data, keep)
        info = describe_sdc(out, max_pixels=None)
    except SdcError as e:
        raise BadInputError(f"{label_of(input)}: {e}") from None
    # A level that was never written and owns no cell has nothing to keep: no warning.
    absent = [lv for lv in keep if lv not in info["present_levels"]
              and not (info["levels"][lv]["status"] == "not written" and info["levels"][lv].get("region_cells") == 0)]
    if absent:
        warn(f"{label_of(input)} has no complete {', '.join(absent)}: not kept")
    write_output(dst, out, force)
    kept = ", ".join(info["present_levels"]) or "no level"
    click.echo(f"{label_of(input)} -> {'<stdout>' if dst == STDIO else dst}: kept {kept}; "
               f"{len(data):,} -> {len(out):,} bytes, {info['bpp']:.4f} bpp", err=True)
    return 0
