"""Region fidelity: is the L1 region as good when only L1 is decoded as in the full decode?

    nice -n 10 python benchmarks/region_fidelity.py [--qualities 1,4,8,top]
    nice -n 10 python benchmarks/region_fidelity.py --effort 2   # refined encodes -> region_fidelity_effort2.json

For every val image (whole image): the group map is a centred box of latent
cells (the central 40% x 40% of the cells that cover the image) = L1, the
rest = "other"; every level gets the same quality. The image is encoded once,
then decoded twice: with only the L1 substream (other cells are filled with
the hyperprior mean) and with everything. PSNR-RGB is measured on the box's
pixel area in both. The same is repeated with the box grown by a one-cell
ring coded as L1 ("dilated"), PSNR still measured on the original box only.
Also reported: PSNR of the L1-only decode outside the box (what the fill
looks like) and the share of the substream bytes that L1 carries.

Target (issue): PSNR inside L1 with only L1 decoded within 1 dB of the full decode.

Writes results/region_fidelity.json and results/region_fidelity.png (one
image at one quality: original, full decode, L1-only, L1-only dilated).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, arguments, load_rgb, psnr, start, table, val_paths, weights_info,  # noqa: E402
                    write_json)

OUT = RESULTS / "region_fidelity.json"
BOX_FRACTION = 0.4
L1, OTHER = 0, 3


def box_cells(H: int, W: int, stride: int) -> tuple[int, int, int, int]:
    """(i0, i1, j0, j1): the central BOX_FRACTION x BOX_FRACTION of the cells covering the image."""
    ch, cw = -(-H // stride), -(-W // stride)
    m = (1 - BOX_FRACTION) / 2
    i0, i1 = round(m * ch), round((1 - m) * ch)
    j0, j1 = round(m * cw), round((1 - m) * cw)
    return i0, i1, j0, j1


def maps(H: int, W: int):
    from sdc.geometry import LATENT_STRIDE, latent_shape

    lh, lw = latent_shape(H, W)
    i0, i1, j0, j1 = box_cells(H, W, LATENT_STRIDE)
    box = np.full((lh, lw), OTHER, np.uint8)
    box[i0:i1, j0:j1] = L1
    dil = np.full((lh, lw), OTHER, np.uint8)
    dil[max(0, i0 - 1):i1 + 1, max(0, j0 - 1):j1 + 1] = L1
    mask = np.zeros((H, W), bool)
    s = LATENT_STRIDE
    mask[i0 * s:min(i1 * s, H), j0 * s:min(j1 * s, W)] = True
    return box, dil, mask, (i0, i1, j0, j1)


def run(paths, qualities, fig_spec, effort: int = 1):
    from sdc.models.codec import CodedImage, default_codec
    from sdc.pipeline import refine_steps

    codec = default_codec()
    rows, fig = [], None
    t0 = time.perf_counter()
    for p in paths:
        rgb = load_rgb(p)
        H, W = rgb.shape[:2]
        box, dil, mask, cells = maps(H, W)
        for q in qualities:
            qual = {lv: q for lv in ("L1", "L2", "L3", "other")}
            r = {"image": p.name, "quality": q, "box_cells": list(cells), "box_pixels": int(mask.sum()),
                 "pixels": H * W}
            for variant, gmap in (("box", box), ("dilated", dil)):
                coded = codec.encode(rgb, gmap, qual, **refine_steps(effort))
                only = codec.decode(CodedImage(H, W, coded.qualities, coded.group_map, coded.hyperprior,
                                               {"L1": coded.groups["L1"]}))
                full = codec.decode(coded)
                nbytes = coded.payload_bytes
                r[variant] = {
                    "psnr_box_full": psnr(rgb, full, mask),
                    "psnr_box_l1_only": psnr(rgb, only, mask),
                    "psnr_outside_l1_only": psnr(rgb, only, ~mask),
                    "psnr_outside_full": psnr(rgb, full, ~mask),
                    "bytes_l1": len(coded.groups["L1"]), "bytes_hyperprior": len(coded.hyperprior),
                    "bytes_payload": nbytes,
                }
                r[variant]["delta_db"] = r[variant]["psnr_box_full"] - r[variant]["psnr_box_l1_only"]
                if fig_spec == (p.name, q):
                    fig = fig or {"rgb": rgb, "mask": mask, "cells": cells, "name": p.name, "q": q}
                    fig[variant] = (full, only, gmap)
            rows.append(r)
        print(f"  {p.name} done, {time.perf_counter() - t0:.0f} s", flush=True)
    return rows, fig


def summarize(rows, qualities):
    out = []
    for q in qualities:
        rq = [r for r in rows if r["quality"] == q]
        s = {"quality": q, "images": len(rq)}
        for v in ("box", "dilated"):
            for k in ("psnr_box_full", "psnr_box_l1_only", "delta_db", "psnr_outside_l1_only"):
                s[f"{v}_{k}"] = float(np.mean([r[v][k] for r in rq]))
            s[f"{v}_delta_db_max"] = float(np.max([r[v]["delta_db"] for r in rq]))
            s[f"{v}_l1_bpp"] = float(np.mean([r[v]["bytes_l1"] * 8 / r["pixels"] for r in rq]))
            s[f"{v}_l1_share"] = float(np.mean([r[v]["bytes_l1"] / r[v]["bytes_payload"] for r in rq]))
        s["box_area_share"] = float(np.mean([r["box_pixels"] / r["pixels"] for r in rq]))
        out.append(s)
    return out


def report(summary) -> str:
    rows = []
    for s in summary:
        rows.append([s["quality"], f"{s['box_psnr_box_full']:.2f}", f"{s['box_psnr_box_l1_only']:.2f}",
                     f"{s['box_delta_db']:.2f} (max {s['box_delta_db_max']:.2f})",
                     f"{s['dilated_psnr_box_l1_only']:.2f}",
                     f"{s['dilated_delta_db']:.2f} (max {s['dilated_delta_db_max']:.2f})",
                     f"{s['box_psnr_outside_l1_only']:.2f}",
                     f"{100 * s['box_l1_share']:.0f}% / {100 * s['dilated_l1_share']:.0f}%"])
    return table(rows, ["q", "box PSNR full", "box PSNR L1-only", "loss dB", "L1-only, +1-cell ring",
                        "loss dB (ring)", "outside box, L1-only", "L1 share of bytes (box / ring)"])


def save_figure(fig, path: Path) -> None:
    from PIL import Image, ImageDraw

    from sdc.geometry import LATENT_STRIDE as S

    i0, i1, j0, j1 = fig["cells"]
    rgb, mask = fig["rgb"], fig["mask"]
    panels = [("original", rgb), ("full decode", fig["box"][0]),
              ("L1 only", fig["box"][1]), ("L1 only, box + 1-cell ring", fig["dilated"][1])]
    H, W = rgb.shape[:2]
    scale = 0.5
    w, h = int(W * scale), int(H * scale)
    canvas = Image.new("RGB", (2 * w + 30, 2 * h + 84), "white")
    d = ImageDraw.Draw(canvas)
    for k, (title, img) in enumerate(panels):
        x, y = 10 + (k % 2) * (w + 10), 44 + (k // 2) * (h + 30)
        canvas.paste(Image.fromarray(img).resize((w, h), Image.LANCZOS), (x, y))
        d.rectangle([x + j0 * S * scale, y + i0 * S * scale, x + min(j1 * S, W) * scale - 1,
                     y + min(i1 * S, H) * scale - 1], outline=(255, 40, 40), width=2)
        if k:
            title += f"  (box PSNR {psnr(rgb, img, mask):.2f} dB)"
        d.text((x, y - 16), title, fill="black")
    d.text((10, 6), f"{fig['name']}, quality {fig['q']}: red box = L1 cells", fill="black")
    canvas.save(path)


def parse_qualities(text: str) -> list[int]:
    """'1,4,8,top' -> sorted distinct qualities; top is the shipped weights' highest."""
    from sdc.models.codec import default_codec

    top = default_codec().num_qualities
    return sorted({top if v.strip() == "top" else int(v) for v in text.split(",")})


def main(argv=None) -> int:
    ap = arguments(__doc__, OUT, effort=True)
    ap.add_argument("--qualities", default="1,4,8,top", help="comma-separated; top: the weights' highest quality")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    started = start(args, OUT)
    qualities = parse_qualities(args.qualities)
    paths = val_paths(args.limit)
    fig_q = 4 if 4 in qualities else qualities[len(qualities) // 2]
    rows, fig = run(paths, qualities, (paths[0].name, fig_q), args.effort)
    summary = summarize(rows, qualities)
    res = {
        "benchmark": "region fidelity: PSNR inside L1 with only L1 decoded vs the full decode",
        "command": "python benchmarks/region_fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": started["git"], "machine": started["machine"], "weights": weights_info(),
        "setup": {"box": f"central {BOX_FRACTION:.0%} x {BOX_FRACTION:.0%} of the latent cells covering the image = L1, "
                         "rest = other, same quality for all levels; 'dilated' = box + 1-cell ring coded as L1, "
                         "PSNR still on the box's pixels",
                  "images": f"{len(paths)} whole val images"},
        "target_db": 1.0,
        "sdc_effort": args.effort,
        "summary": summary,
        "per_image": rows,
    }
    write_json(args.out, res)
    if fig:
        save_figure(fig, args.out.with_suffix(".png"))
    print(report(summary))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
