"""`sdc analyze`: run the analyzer only; its JSON is what `sdc encode --regions` reads."""
from __future__ import annotations

import time

import click

from sdc.errors import UsageError

from .io import STDIO, image_bytes, label_of, plan_outputs, read_input, write_output
from .options import analysis_config, analyzer_option, force_option, lmm_options, max_pixels_option
from .report import warn


@click.command("analyze")
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="FILE",
              help="Write the analysis JSON here (default: stdout); 'sdc encode --regions' reads it.")
@analyzer_option
@click.option("--task", metavar="TEXT", help="What the image is for; steers which objects matter.")
@lmm_options
@click.option("--draw", metavar="IMAGE", help="Also write the image with the regions drawn on it.")
@force_option
@max_pixels_option
def command(input, output, analyzer, task, lmm_url, lmm_model, draw, force, max_pixels):
    """Analyse an image only: objects, masks, levels and captions as JSON.

    \b
    Examples:
      sdc analyze photo.png --draw regions.png > photo.json
      sdc analyze photo.png --task "count the cars" -o cars.json
      sdc encode photo.png --regions cars.json --task "count the cars"
    """
    import json

    from sdc import api

    api.check_analyzer(analyzer)
    (dst,) = plan_outputs((input,), output if output is not None else STDIO, ".json", force, binary=False)
    if draw is not None:
        (draw_dst,) = plan_outputs((input,), draw, ".png", force)
        if draw_dst == STDIO:
            raise UsageError("--draw needs a file name")
    label = label_of(input)
    image = api.read_image(read_input(input), label, max_pixels)
    from sdc.analysis import analyze as run_analysis

    t0 = time.perf_counter()
    result = run_analysis(image, analyzer=analyzer, task=task, config=analysis_config(lmm_url, lmm_model))
    seconds = time.perf_counter() - t0
    for w in result.warnings:
        warn(f"{label}: {w}")
    text = json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
    if dst == STDIO:
        click.echo(text, nl=False)
    else:
        write_output(dst, text.encode("utf-8"), force)
    if draw is not None:
        import numpy as np

        write_output(draw_dst, image_bytes(np.asarray(result.draw(image)), draw_dst), force)
    levels: dict[str, int] = {}
    for o in result.objects:
        levels[o.level] = levels.get(o.level, 0) + 1
    summary = ", ".join(f"{n} {lv}" for lv, n in sorted(levels.items())) or "no objects"
    click.echo(f"{label}: analyzer {result.analyzer}: {summary} ({seconds:.2f} s)", err=True)
    return 0
