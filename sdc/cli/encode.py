"""`sdc encode`: images -> .sdc files, through sdc.api (the same checks and mapping as `sdc.encode`).

Order of work: every option is checked (qualities against the codec,
levels, analyzer, effort, the --regions file), then the inputs' first bytes,
then every output is planned; only then is any image read or file written.
"""
from __future__ import annotations

import click

from sdc.levels import DEFAULT_QUALITY, LEVELS

from .io import gather_inputs, plan_outputs, sniff
from .options import (analysis_config, analyzer_option, batch_options, check_batch_runner, force_option, lmm_options,
                      max_pixels_option, parse_level_option, parse_quality_options, quiet_option)
from .report import console, escape_names, fmt_bytes, run_command_batch

EFFORT_HELP = ("Encoder effort: 1 codes the analysis transform's latent as it is; 2 to 4 refine it by gradient "
               "descent first (2: 20 steps on y; 3: that, and 20 steps on z and y then 20 on y; 4: as 3, and 80 "
               "finer steps on y from each start) and keep the cheapest file: smaller files for the same quality, "
               "many times the encode time (measured in benchmarks/README.md, 'Encoder effort'). Needs torch "
               "(the train extra). Decoders cannot tell.")


@click.command("encode")
@click.argument("inputs", nargs=-1, metavar="IN...")
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
@analyzer_option
@click.option("--task", metavar="TEXT",
              help="What the decoded image is for: 'object detection', 'classification', 'segmentation', "
                   "or any text such as 'count the cars' (coded as for detection). Picks the labels to find "
                   "and how to code them (README, 'Coding for a task').")
@lmm_options
@click.option("--no-meta", is_flag=True, help="Leave the semantic metadata out of the file.")
@click.option("-e", "--effort", type=int, default=1, show_default=True, metavar="1..4", help=EFFORT_HELP)
@force_option
@batch_options
@quiet_option
@max_pixels_option
def command(inputs, output, q, quality_spec, levels_spec, regions, analyzer, task, lmm_url, lmm_model, no_meta,
            effort, force, jobs, ray, manifest, skip_existing, from_list, quiet, max_pixels):
    """Encode images (PNG, JPEG, ...) into .sdc files.

    \b
    Examples:
      sdc encode photo.png                              # -> photo.sdc, every level at quality 5
      sdc encode a.png b.png -o out/ -q 3 --task "object detection"
      sdc encode photo.png --quality L1=7,other=2 -o photo.sdc
      sdc analyze photo.png -o r.json && sdc encode photo.png --regions r.json
      find photos -name '*.jpg' | sdc encode --from-list - -o out/ -j 2 --skip-existing
      sdc encode --from-list photos.txt -o /shared/out/ --ray head:6379 --skip-existing
    """
    from sdc import api

    quality = parse_quality_options(q, quality_spec)
    keep = parse_level_option(levels_spec, "--levels")
    settings = api.encode_settings(quality=quality, task=task, levels=keep, analyzer=analyzer, effort=effort,
                                   metadata=not no_meta, analysis_config=analysis_config(lmm_url, lmm_model))
    regions_json = None if regions is None else api.read_regions(regions, what="--regions")
    check_batch_runner(jobs, ray)
    inputs = gather_inputs(inputs, from_list, jobs, ray)
    rejected = sniff(inputs, api.refuse_sdc)
    outs = plan_outputs(inputs, output, ".sdc", force, skip=rejected, skip_existing=skip_existing)
    options = {"settings": settings, "regions": regions_json, "force": force, "max_pixels": max_pixels}
    rows, worst = run_command_batch("encode", "encoding", inputs, outs, rejected, options, output=output, jobs=jobs,
                                    ray=ray, manifest=manifest)
    if rows and not quiet:
        _table(console(stderr=True), rows)
    return worst


def _table(con, rows: list[dict]) -> None:
    from rich.table import Table

    rows = escape_names(rows, "file", "output", "analyzer")
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
        t.add_row(r["file"], r["output"], fmt_bytes(r["size"]), f"{r['bpp']:.4f}",
                  *(fmt_bytes(r["levels"][lv]) for lv in LEVELS), str(r["objects"]),
                  f"{r['seconds']:.2f}", *([r["analyzer"]] if per_row else []))
    if len(rows) > 1:
        total = sum(r["size"] for r in rows)
        t.add_section()
        t.add_row(f"{len(rows)} files", "", fmt_bytes(total), "", *("" for _ in LEVELS),
                  str(sum(r["objects"] for r in rows)), f"{sum(r['seconds'] for r in rows):.2f}",
                  *([""] if per_row else []))
    con.print(t)
