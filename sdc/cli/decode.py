"""`sdc decode`: .sdc files (or prefixes of them) -> images, through sdc.api.

Order of work: the options are checked, then each input's magic bytes (an
input that is not an .sdc file is reported as such and gets no output), then
every output is planned; only then is anything decoded or written.
"""
from __future__ import annotations

import click

from .io import gather_inputs, plan_outputs, refuse_non_sdc, sniff
from .options import (batch_options, check_batch_runner, force_option, max_pixels_option, parse_level_option,
                      quiet_option)
from .report import console, escape_names, fmt_bytes, run_command_batch


@click.command("decode")
@click.argument("inputs", nargs=-1, metavar="IN...")
@click.option("-o", "--output", metavar="OUT",
              help="Output image, directory (ending in '/') for many inputs, or '-' for PNG on "
                   "stdout. Default: IN with the suffix .png (stdout for stdin).")
@click.option("--levels", "levels_spec", default="all", show_default=True, metavar="L1|L1,L2|all",
              help="Decode only these levels (the others are composed from what is present).")
@click.option("--composer", metavar="NAME", default=None,
              help="How to fill the regions of missing levels: none, smooth, learned, diffusion or auto.")
@force_option
@batch_options
@quiet_option
@max_pixels_option
def command(inputs, output, levels_spec, composer, force, jobs, ray, manifest, skip_existing, from_list, quiet,
            max_pixels):
    """Decode .sdc files (or prefixes of them) into images.

    \b
    Examples:
      sdc decode photo.sdc                          # -> photo.png
      sdc decode photo.sdc --levels L1 --composer learned -o photo_L1.jpg
      sdc decode in/*.sdc -o out/
      head -c 3000 photo.sdc | sdc decode - -o partial.png
      sdc decode --from-list files.txt -o png/ -j 2 --skip-existing
    """
    from sdc import api

    levels = parse_level_option(levels_spec, "--levels")
    settings = api.decode_settings(levels=levels, composer=composer)
    check_batch_runner(jobs, ray)
    inputs = gather_inputs(inputs, from_list, jobs, ray)
    rejected = sniff(inputs, refuse_non_sdc)
    outs = plan_outputs(inputs, output, ".png", force, skip=rejected, skip_existing=skip_existing)
    options = {"settings": settings, "force": force, "max_pixels": max_pixels}
    rows, worst = run_command_batch("decode", "decoding", inputs, outs, rejected, options, output=output, jobs=jobs,
                                    ray=ray, manifest=manifest)
    if rows and not quiet:
        _table(console(stderr=True), rows)
    return worst


def _table(con, rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="sdc decode", title_justify="left")
    for col, just in (("file", "left"), ("output", "left"), ("size", "right"), ("bytes", "right"),
                      ("bpp", "right"), ("decoded", "left"), ("missing", "left"), ("s", "right")):
        t.add_column(col, justify=just, overflow="fold")
    for r in escape_names(rows, "file", "output"):
        t.add_row(r["file"], r["output"], r["size_px"], fmt_bytes(r["size"]), f"{r['bpp']:.4f}",
                  r["decoded"], r["missing"], f"{r['seconds']:.2f}" if r["seconds"] else "-")
    con.print(t)
