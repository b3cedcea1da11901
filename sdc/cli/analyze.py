"""`sdc analyze`: run the analyzer only; its JSON is what `sdc encode --regions` reads."""
from __future__ import annotations

import click

from sdc.errors import UsageError

from .io import STDIO, gather_inputs, plan_outputs
from .options import (analysis_config, analyzer_option, batch_options, check_batch_runner, force_option, lmm_options,
                      max_pixels_option)
from .report import run_command_batch


@click.command("analyze")
@click.argument("inputs", nargs=-1, metavar="IN...")
@click.option("-o", "--output", metavar="OUT",
              help="Write the analysis JSON here: a file, or a directory (ending in '/') for many inputs. "
                   "Default: stdout for one input, IN with the suffix .json for several. "
                   "'sdc encode --regions' reads it.")
@analyzer_option
@click.option("--task", metavar="TEXT", help="What the image is for; steers which objects matter.")
@lmm_options
@click.option("--draw", metavar="IMAGE", help="Also write the image with the regions drawn on it (one input).")
@force_option
@batch_options
@max_pixels_option
def command(inputs, output, analyzer, task, lmm_url, lmm_model, draw, force, jobs, ray, manifest, skip_existing,
            from_list, max_pixels):
    """Analyse images only: objects, masks, levels and captions as JSON.

    \b
    Examples:
      sdc analyze photo.png --draw regions.png > photo.json
      sdc analyze photo.png --task "count the cars" -o cars.json
      sdc encode photo.png --regions cars.json --task "count the cars"
      sdc analyze photos/*.jpg -o analyses/ -j 2
    """
    from sdc import api

    api.check_analyzer(analyzer)
    check_batch_runner(jobs, ray)
    inputs = gather_inputs(inputs, from_list, jobs, ray)
    if output is None and len(inputs) == 1:
        output = STDIO
    outs = plan_outputs(inputs, output, ".json", force, binary=False, skip_existing=skip_existing)
    draw_dst = None
    if draw is not None:
        if len(inputs) > 1:
            raise UsageError("--draw takes a single input")
        (draw_dst,) = plan_outputs(inputs, draw, ".png", force)
        if draw_dst == STDIO:
            raise UsageError("--draw needs a file name")
    options = {"analyzer": analyzer, "task": task, "config": analysis_config(lmm_url, lmm_model),
               "draw": draw_dst, "force": force, "max_pixels": max_pixels}
    rows, worst = run_command_batch("analyze", "analysing", inputs, outs, {}, options, output=output, jobs=jobs,
                                    ray=ray, manifest=manifest)
    for row in rows:
        summary = ", ".join(f"{n} {lv}" for lv, n in sorted(row["levels"].items())) or "no objects"
        click.echo(f"{row['file']}: analyzer {row['analyzer']}: {summary} ({row['seconds']:.2f} s)", err=True)
    return worst
