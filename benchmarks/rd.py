"""Rate-distortion of sdc vs JPEG, WebP, AVIF, JPEG XL and HEVC intra on ../shared/data/val.

    nice -n 10 python benchmarks/rd.py                      # sdc recomputed, baselines from cache
    nice -n 10 python benchmarks/rd.py --recompute-baselines
    nice -n 10 python benchmarks/rd.py --effort 2           # refined encodes -> results/rd_effort2.json

sdc is encoded at `--effort` (sdc encode --effort; 1, the default, codes g_a's
latent as it is, 2 and 3 refine it, sdc.training.refine). Runs at effort > 1
also report BD-rate against the effort-1 curve in results/rd.json, when that
was made with the same weights.

sdc: every quality of the weights (1..num_qualities) on the whole image, region map all "other" (an
analysis without objects); bpp counts the whole .sdc file (header, index,
region map, the analysis metadata chunk, hyperprior and level chunks), and is
also reported without the metadata chunk and as payload only (hyperprior +
level substreams). Images are used whole, uncropped, by every codec.

Baselines (benchmarks/baselines.py) are cached per image and parameter in
results/rd_baselines.json, keyed by each image's pixel hash and the codec's
settings; only missing entries are computed.

BD-rate: Bjøntegaard (benchmarks/bdrate.py) on the mean curves (mean bpp and
mean PSNR over the images at each setting), cubic fit of log-rate vs quality
over the overlapping quality range; each anchor's sweep is first cut to the
points that bracket sdc's range (the points inside it plus one either side)
so that the cubic is fitted where it is integrated. The piecewise-cubic
(pchip) variant and the mean of per-image BD-rates are reported alongside.

Writes results/rd.json and results/rd.png; prints the tables.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines as B  # noqa: E402
from bdrate import bd_psnr, bd_rate  # noqa: E402
from common import (RESULTS, arguments, load_rgb, ms_ssim, msssim_db, pixel_hash, psnr, read_json, start,  # noqa: E402
                    table, val_paths, weights_info, write_json)

CACHE = RESULTS / "rd_baselines.json"
OUT = RESULTS / "rd.json"


def parse_qualities(text: str) -> list[int]:
    """'all' (every quality of the weights in use), '1-8' or '2,4,6'."""
    if text == "all":
        from sdc.models.codec import default_codec

        return list(range(1, default_codec().num_qualities + 1))
    if "-" in text:
        a, b = map(int, text.split("-"))
        return list(range(a, b + 1))
    return [int(v) for v in text.split(",")]
FIRST_LADDER = list(range(1, 9))  # the qualities every shipped weights file has had
EFFORT1 = "effort 1"  # the anchor name of rd.json's sdc curve in runs at higher effort


# ----------------------------------------------------------------------------- baselines
def run_baselines(images: dict, codecs: list[str], recompute: bool) -> dict:
    cache = (None if recompute else read_json(CACHE)) or {"codecs": {}, "images": {}}
    for name, info in images.items():
        old = cache["images"].get(name)
        if old and old["hash"] != info["hash"]:
            print(f"  {name} changed since the cache was made: its baseline entries are recomputed")
            for c in cache["codecs"].values():
                c["points"].pop(name, None)
        cache["images"][name] = {k: info[k] for k in ("hash", "width", "height")}
    for codec in codecs:
        entry = cache["codecs"].get(codec)
        if entry is None or entry.get("config") != B.CONFIG[codec]:
            entry = cache["codecs"][codec] = {"config": B.CONFIG[codec], "version": None, "points": {}}
        todo = [(n, p) for n in images for p in B.PARAMS[codec] if str(p) not in entry["points"].get(n, {})]
        if not todo:
            print(f"  {codec}: cached ({entry['version']})")
            continue
        why = B.available(codec)
        if why:
            print(f"  {codec}: SKIPPED, {len(todo)} points not cached and {why}")
            continue
        version = B.tool_version(codec)
        if entry["version"] and entry["version"] != version:
            print(f"  {codec}: cache made with {entry['version']}, now {version}: mixing; use --recompute-baselines to redo")
        entry["version"] = version
        t0 = time.perf_counter()
        for i, (name, p) in enumerate(todo):
            rgb = images[name]["rgb"]
            nbytes, out = B.CODECS[codec](rgb, p)
            entry["points"].setdefault(name, {})[str(p)] = {
                "bytes": nbytes, "psnr": psnr(rgb, out), "msssim": ms_ssim(rgb, out)}
            if (i + 1) % 20 == 0 or i + 1 == len(todo):
                print(f"  {codec}: {i + 1}/{len(todo)} points, {time.perf_counter() - t0:.0f} s", flush=True)
                write_json(CACHE, cache)
    write_json(CACHE, cache)
    return cache


# ----------------------------------------------------------------------------- sdc
def load_val_images(limit: int | None = None) -> dict:
    """name -> {rgb, hash, width, height} of the val images (the sweep's input)."""
    images = {}
    for p in val_paths(limit):
        rgb = load_rgb(p)
        images[p.name] = {"rgb": rgb, "hash": pixel_hash(rgb), "width": rgb.shape[1], "height": rgb.shape[0]}
    return images


def run_sdc(images: dict, qualities: list[int], effort: int = 1) -> dict:
    from sdc import api
    from sdc.analysis import Analysis
    from sdc.bitstream import read_sdc, write_sdc

    points: dict = {}
    t0 = time.perf_counter()
    decoding = api.decode_settings()
    for name, info in images.items():
        rgb = info["rgb"]
        H, W = rgb.shape[:2]
        analysis = Analysis(width=W, height=H, objects=[])  # no objects: the whole image is "other"
        for q in qualities:
            settings = api.encode_settings(quality={lv: q for lv in ("L1", "L2", "L3", "other")}, effort=effort)
            enc = api.encode_result(rgb, settings, regions=analysis)
            dec = api.decode_result(enc.data, decoding)
            parsed = read_sdc(enc.data)
            assert set(np.unique(parsed.region_map)) == {3}, "region map must be all 'other'"
            no_meta = len(write_sdc(dataclasses.replace(parsed, metadata=None)))
            payload = len(parsed.hyperprior) + sum(len(v) for v in parsed.levels.values())
            points.setdefault(name, {})[str(q)] = {
                "bytes": len(enc.data), "bytes_no_meta": no_meta, "bytes_payload": payload,
                "bytes_hyperprior": len(parsed.hyperprior),
                "psnr": psnr(rgb, dec.rgb), "msssim": ms_ssim(rgb, dec.rgb),
                "encode_s": enc.seconds, "decode_s": dec.seconds}
        print(f"  sdc: {name} done, {time.perf_counter() - t0:.0f} s", flush=True)
    return points


# ----------------------------------------------------------------------------- summary
def mean_curve(points: dict, images: dict, params: list, byte_key: str = "bytes") -> list[dict]:
    curve = []
    for p in params:
        rows = [(points[n][str(p)], images[n]) for n in images if str(p) in points.get(n, {})]
        if len(rows) != len(images):
            continue  # incomplete setting
        bpp = [r[byte_key] * 8 / (im["width"] * im["height"]) for r, im in rows]
        curve.append({"param": p, "bpp": float(np.mean(bpp)), "psnr": float(np.mean([r["psnr"] for r, _ in rows])),
                      "msssim": float(np.mean([r["msssim"] for r, _ in rows])),
                      "msssim_db": float(np.mean([msssim_db(r["msssim"]) for r, _ in rows]))})
        if "encode_s" in rows[0][0]:  # sdc: seconds per image (whole pipeline, analysis given)
            curve[-1]["encode_s"] = float(np.mean([r["encode_s"] for r, _ in rows]))
    return curve


def bracket(rate, qual, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The points with `qual` in [lo, hi] plus the nearest one below and above (at least 4)."""
    order = np.argsort(qual)
    r, q = np.asarray(rate)[order], np.asarray(qual)[order]
    inside = np.nonzero((q >= lo) & (q <= hi))[0]
    if len(inside) == 0:
        below = np.nonzero(q < lo)[0]
        i0 = i1 = below[-1] if len(below) else 0
    else:
        i0, i1 = inside[0], inside[-1]
    i0, i1 = max(0, i0 - 1), min(len(q) - 1, i1 + 1)
    while i1 - i0 + 1 < 4 and (i0 > 0 or i1 < len(q) - 1):
        i0, i1 = max(0, i0 - 1), min(len(q) - 1, i1 + 1)
    return r[i0:i1 + 1], q[i0:i1 + 1]


def bd_pair(anchor_rate, anchor_q, test_rate, test_q, method="cubic") -> tuple[float | None, float | None]:
    """(BD-rate %, BD-quality) of test vs anchor; each with the anchor cut to the points bracketing
    test's range (quality range for BD-rate, log-rate range for BD-quality); None where no overlap."""
    ar, aq = bracket(anchor_rate, anchor_q, min(test_q), max(test_q))
    tr, tq = bracket(test_rate, test_q, min(aq), max(aq))
    try:
        rate = bd_rate(ar, aq, tr, tq, method)
    except ValueError:
        rate = None
    qa, la = bracket(anchor_q, np.log10(anchor_rate), *np.log10([min(test_rate), max(test_rate)]))
    qt, lt = bracket(test_q, np.log10(test_rate), min(la), max(la))
    try:
        dq = bd_psnr(10 ** la, qa, 10 ** lt, qt, method)
    except ValueError:
        dq = None
    return rate, dq


def bd_table(curves: dict, per_image: dict, images: dict) -> dict:
    out = {}
    sdc_file, sdc_pay = curves["sdc"], curves["sdc_payload"]
    for anchor, ac in curves.items():
        if anchor.startswith("sdc") or len(ac) < 4:
            continue
        row = {}
        ar = [c["bpp"] for c in ac]
        for metric in ("psnr", "msssim_db"):
            aq = [c[metric] for c in ac]
            for label, sc in (("file", sdc_file), ("payload", sdc_pay)):
                rate, dq = bd_pair(ar, aq, [c["bpp"] for c in sc], [c[metric] for c in sc])
                row[f"bd_rate_{metric}_{label}"] = rate
                row[f"bd_{metric}_{label}"] = dq
            row[f"bd_rate_{metric}_file_pchip"] = bd_pair(ar, aq, [c["bpp"] for c in sdc_file],
                                                          [c[metric] for c in sdc_file], "pchip")[0]
            # per image, then averaged (images whose curves overlap)
            vals = []
            for n, im in images.items():
                pts_a = per_image[anchor].get(n, {})
                pts_s = per_image["sdc"].get(n, {})
                npx = im["width"] * im["height"]
                def get(pts):
                    keys = sorted(pts, key=float)
                    return ([pts[k]["bytes"] * 8 / npx for k in keys],
                            [pts[k]["psnr"] if metric == "psnr" else msssim_db(pts[k]["msssim"]) for k in keys])
                if len(pts_a) >= 4 and len(pts_s) >= 4:
                    v, _ = bd_pair(*get(pts_a), *get(pts_s))
                    if v is not None:
                        vals.append(v)
            row[f"bd_rate_{metric}_file_per_image_mean"] = float(np.mean(vals)) if vals else None
            row[f"bd_rate_{metric}_file_per_image_n"] = len(vals)
        out[anchor] = row
    return out


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"sdc": ("tab:red", "o", 2.5), "jpeg": ("tab:gray", "s", 1.5), "webp": ("tab:green", "^", 1.5),
             "avif": ("tab:purple", "D", 1.5), "jxl": ("tab:orange", "v", 1.5), "hevc": ("tab:blue", "P", 1.5)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), dpi=110)
    xmax = min(2.5, max(c["bpp"] for c in curves["sdc"]) * 1.6)
    for ax, key, ylabel in ((axes[0], "psnr", "PSNR-RGB (dB)"), (axes[1], "msssim_db", "MS-SSIM (dB, -10 log10(1-MS-SSIM))")):
        ys = []
        for name, curve in curves.items():
            if name.startswith("sdc_") or not curve:
                continue
            color, marker, lw = style.get(name, ("black", "x", 1.5))
            pts = [c for c in curve if c["bpp"] <= xmax * 1.05]
            x, y = [c["bpp"] for c in pts], [c[key] for c in pts]
            ys += y
            label = "sdc (whole .sdc file)" if name == "sdc" else B.LABELS.get(name, name)
            ax.plot(x, y, marker=marker, color=color, lw=lw, ms=5, label=label, zorder=3 if name == "sdc" else 2)
        ax.set_xlim(0, xmax)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.35)
        ax.legend(loc="lower right", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt(v, spec=".1f", suffix=""):
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def report(res: dict) -> str:
    lines = []
    sdc_rows = []
    for c, cn, cp in zip(res["curves"]["sdc"], res["curves"]["sdc_no_meta"], res["curves"]["sdc_payload"]):
        sdc_rows.append([c["param"], f"{c['bpp']:.4f}", f"{cn['bpp']:.4f}", f"{cp['bpp']:.4f}", f"{c['psnr']:.2f}",
                         f"{c['msssim']:.4f}", f"{c['msssim_db']:.2f}", fmt(c.get("encode_s"), ".2f")])
    lines.append(f"sdc at effort {res.get('sdc_effort', 1)} on {res['images']['count']} val images "
                 f"(weights {res['weights']['sha256'][:12]}, exported {res['weights']['exported']}):")
    lines.append(table(sdc_rows, ["q", "bpp file", "bpp no-meta", "bpp payload", "PSNR", "MS-SSIM", "MS-SSIM dB",
                                  "encode s"]))
    lines.append("")
    bd_rows = []
    for anchor, row in res["bd"].items():
        bd_rows.append([B.LABELS.get(anchor, anchor), fmt(row["bd_rate_psnr_file"], "+.1f", "%"),
                        fmt(row["bd_psnr_file"], "+.2f", " dB"), fmt(row["bd_rate_psnr_file_pchip"], "+.1f", "%"),
                        fmt(row["bd_rate_psnr_file_per_image_mean"], "+.1f", "%") + f" ({row['bd_rate_psnr_file_per_image_n']})",
                        fmt(row["bd_rate_psnr_payload"], "+.1f", "%"),
                        fmt(row["bd_rate_msssim_db_file"], "+.1f", "%")])
    lines.append("BD of sdc (whole file) against each codec; negative BD-rate = sdc needs fewer bits:")
    lines.append(table(bd_rows, ["anchor", "BD-rate PSNR", "BD-PSNR", "BD-rate PSNR (pchip)",
                                 "per-image mean (n)", "BD-rate payload", "BD-rate MS-SSIM"]))
    if res.get("bd_q1_8"):
        lines.append("BD-rate (PSNR, whole file) over qualities 1..8 only: " + ", ".join(
            f"{B.LABELS.get(a, a)} {fmt(r['bd_rate_psnr_file'], '+.1f', '%')}" for a, r in res["bd_q1_8"].items()))
    lines.append("")
    rng = []
    for name, curve in res["curves"].items():
        if name.startswith("sdc_") or not curve:
            continue
        at = {}
        for target in (0.25, 0.5, 1.0):
            srt = sorted(curve, key=lambda c: c["bpp"])
            x = [c["bpp"] for c in srt]
            if x[0] <= target <= x[-1]:
                at[target] = float(np.interp(np.log(target), np.log(x), [c["psnr"] for c in srt]))
        rng.append([B.LABELS.get(name, name) if name != "sdc" else "sdc", fmt(at.get(0.25), ".2f"),
                    fmt(at.get(0.5), ".2f"), fmt(at.get(1.0), ".2f"),
                    f"{min(c['bpp'] for c in curve):.3f}..{max(c['bpp'] for c in curve):.3f}"])
    lines.append("Mean PSNR (dB) interpolated at fixed rates (log-bpp, linear):")
    lines.append(table(rng, ["codec", "@0.25 bpp", "@0.5 bpp", "@1.0 bpp", "bpp range"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = arguments(__doc__, OUT, effort=True)
    ap.add_argument("--limit", type=int, help="only the first N val images (smoke test; results not comparable)")
    ap.add_argument("--qualities", default="all", help="sdc qualities: all (of the shipped weights), 1-8 or 2,4,6")
    ap.add_argument("--codecs", default=",".join(B.CODECS), help="baselines to include")
    ap.add_argument("--recompute-baselines", action="store_true")
    ap.add_argument("--baselines-only", action="store_true", help="fill the baseline cache and stop")
    args = ap.parse_args(argv)
    started = start(args, OUT)
    qualities = parse_qualities(args.qualities)
    codecs = [c for c in args.codecs.split(",") if c]

    images = load_val_images(args.limit)
    print(f"{len(images)} images from val; baselines:")
    cache = run_baselines(images, codecs, args.recompute_baselines)
    if args.baselines_only:
        return 0
    print("sdc:")
    sdc_points = run_sdc(images, qualities, args.effort)

    per_image = {"sdc": sdc_points}
    curves = {"sdc": mean_curve(sdc_points, images, qualities),
              "sdc_no_meta": mean_curve(sdc_points, images, qualities, "bytes_no_meta"),
              "sdc_payload": mean_curve(sdc_points, images, qualities, "bytes_payload")}
    tools = {}
    for c in codecs:
        entry = cache["codecs"].get(c)
        if entry:
            per_image[c] = {n: entry["points"].get(n, {}) for n in images}
            curves[c] = mean_curve(entry["points"], images, B.PARAMS[c])
            tools[c] = {"version": entry["version"], "settings": entry["config"], "params": B.PARAMS[c]}
    if args.effort > 1:
        base = read_json(OUT)
        if base and base["weights"]["sha256"] == weights_info()["sha256"] and set(base["images"]["names"]) == set(images):
            per_image[EFFORT1] = base["sdc_per_image"]
            curves[EFFORT1] = base["curves"]["sdc"]
        else:
            print(f"  {OUT.name} is missing or from other weights or images: no BD-rate against effort 1")
    res = {
        "benchmark": "rate-distortion on shared/data/val, full images",
        "sdc_effort": args.effort,
        "command": "python benchmarks/rd.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": started["git"],
        "machine": started["machine"],
        "weights": weights_info(),
        "images": {"dir": "shared/data/val", "count": len(images),
                   "names": {n: {k: v for k, v in im.items() if k != "rgb"} for n, im in images.items()}},
        "metrics": {"bpp": "bytes*8/(W*H) per image, then mean over images at each setting",
                    "psnr": "per image over all RGB samples (peak 255), then mean",
                    "msssim": "pytorch-msssim on RGB, data_range 255, per image then mean; msssim_db = mean of -10log10(1-ms)",
                    "sdc_bytes": "bytes = whole .sdc file incl. its (empty-analysis) metadata chunk; "
                                 "bytes_no_meta = same file written without META; bytes_payload = hyperprior + level substreams"},
        "tools": tools,
        "curves": curves,
        "bd": None,
        "sdc_per_image": sdc_points,
    }
    res["bd"] = bd_table(curves, per_image, images)
    if len(qualities) > len(FIRST_LADDER) and qualities[:len(FIRST_LADDER)] == FIRST_LADDER:
        # The same BD-rates over qualities 1..8 only: comparable with weights that had no more.
        sub_points = {n: {q: v for q, v in pts.items() if int(q) in FIRST_LADDER} for n, pts in sdc_points.items()}
        sub = dict(curves, **{k: [c for c in curves[k] if c["param"] in FIRST_LADDER]
                              for k in ("sdc", "sdc_no_meta", "sdc_payload")})
        res["bd_q1_8"] = bd_table(sub, dict(per_image, sdc=sub_points), images)
    write_json(args.out, res)
    title = (f"sdc (effort {args.effort}) vs conventional codecs, {len(images)} val images, full size "
             f"(weights {res['weights']['sha256'][:12]}, {res['weights']['exported']})")
    plot(curves, args.out.with_suffix(".png"), title)
    print()
    print(report(res))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
