"""`sdc inspect`: an .sdc file's chunks, levels, objects and captions, without a model.

It must start in well under 0.3 s: the tables are plain text (sdc.texttable),
not rich, and only the container is imported.
"""
from __future__ import annotations

import click

from sdc.errors import BadInputError, SdcError
from sdc.levels import LEVELS

from .io import label_of, read_input
from .options import max_pixels_option
from .report import error, fmt_bytes


@click.command("inspect")
@click.argument("input", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@max_pixels_option
def command(input, as_json, max_pixels):
    """Show an .sdc file's chunks, sizes, bpp per level, objects and captions.

    Loads no model. Exits with 2 if a chunk is damaged (after showing the rest).

    \b
    Examples:
      sdc inspect photo.sdc
      sdc inspect photo.sdc --json | jq .levels
      head -c 3000 photo.sdc | sdc inspect -
    """
    from sdc.bitstream import describe_sdc

    data = read_input(input)
    try:
        info = describe_sdc(data, max_pixels=max_pixels)
    except SdcError as e:
        raise BadInputError(f"{label_of(input)}: {e}") from None
    info = {"file": label_of(input), **info}
    if as_json:
        import json

        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        _tables(info)
    for p in info["problems"]:
        error(f"{label_of(input)}: {p}")
    return 2 if info["problems"] else 0


def _tables(info: dict) -> None:
    """The header line, the chunk and level tables, then the metadata."""
    from sdc.texttable import Out, clean

    out = Out()
    q = info["qualities"]
    size = f"{info['width']}x{info['height']}"
    if info.get("display_size"):  # a smaller picture coded; decoders upsample it to the display size
        size = "{}x{} (coded at {})".format(*info["display_size"], size)
    out.line(f"{clean(info['file'])}: .sdc {info['format_version']}, {size}, "
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
        rows.append([lv, str(d["quality"]), d["status"], fmt_bytes(d.get("bytes")),
                     fmt_bytes(d.get("cumulative_bytes")),
                     f"{d['bpp']:.4f}" if d["status"] == "present" else "-", area])
    out.table("levels (bpp: the whole file up to and including the level)",
              [("level", "left"), ("quality", "right"), ("status", "left"), ("bytes", "right"),
               ("file bytes", "right"), ("bpp", "right"), ("area", "right")], rows)
    _metadata(out, info)


def _metadata(out, info: dict) -> None:
    from sdc.texttable import clean, shorten

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
