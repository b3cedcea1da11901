"""The ONNX runtime against the torch one: the same files both ways, and the same rate-distortion.

    nice -n 10 python benchmarks/runtime_parity.py [--limit N]

On every val image (whole, region map all "other"), at every quality, the
image is encoded once on each runtime (SDCCodec(runtime="onnx") and
SDCCodec(runtime="torch")), and each file is decoded on both:

    symbols     the entropy-decoded symbols of a file are identical on both
                runtimes (they are integer-exact: only the float transforms differ)
    pixels      the largest difference, in code values, between the two decodes of a file
    files       how many of the two runtimes' files are byte-identical (g_a's float
                outputs can round differently at a few positions)
    BD-rate     of the ONNX runtime's curve (payload bpp, PSNR of its own decode)
                against the torch runtime's, on the mean curves (benchmarks/bdrate.py)

In-process seconds per call of each runtime are recorded too (2 threads each,
interleaved). Target (issue 39): |BD-rate| <= 0.1%, identical symbols, pixels
within one code value.

Writes results/runtime_parity.json.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bdrate import bd_rate  # noqa: E402
from common import (RESULTS, arguments, load_rgb, psnr, read_json, start, table, val_paths, weights_info,  # noqa: E402
                    write_json)

OUT = RESULTS / "runtime_parity.json"
RUNTIMES = ("onnx", "torch")


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def compare_image(codecs: dict, rgb: np.ndarray, qualities: list[int]) -> list[dict]:
    from sdc.geometry import latent_shape
    from sdc.levels import LEVELS

    gmap = np.full(latent_shape(*rgb.shape[:2]), LEVELS.index("other"), np.uint8)
    pixels = rgb.shape[0] * rgb.shape[1]
    rows = []
    for q in qualities:
        row: dict = {"quality": q}
        files = {}
        for name, codec in codecs.items():
            files[name], row[f"{name}_encode_s"] = timed(codec.encode, rgb, gmap, {lv: q for lv in LEVELS})
        for made_by, coded in files.items():
            decoded, symbols = {}, {}
            for name, codec in codecs.items():
                decoded[name], row[f"{name}_decode_s_{made_by}_file"] = timed(codec.decode, coded)
                symbols[name] = codec.decode_symbols(coded)
            row[f"{made_by}_file_symbols_identical"] = all(
                np.array_equal(symbols["onnx"][k], symbols["torch"][k]) for k in symbols["onnx"])
            row[f"{made_by}_file_max_pixel_diff"] = int(np.abs(decoded["onnx"].astype(int)
                                                               - decoded["torch"].astype(int)).max())
            row[f"{made_by}_bpp"] = 8 * coded.payload_bytes / pixels
            row[f"{made_by}_psnr"] = psnr(decoded[made_by], rgb)  # each runtime's own file, own decode
        row["files_identical"] = (files["onnx"].hyperprior == files["torch"].hyperprior
                                  and files["onnx"].groups == files["torch"].groups)
        rows.append(row)
    return rows


def report(result: dict) -> str:
    """The table and summary printed, and written into benchmarks/README.md by run_all.py."""
    curves, s = result["curves"], result["summary"]
    rows = [[q, f"{curves['onnx']['bpp'][i]:.4f}", f"{curves['torch']['bpp'][i]:.4f}",
             f"{curves['onnx']['psnr'][i]:.3f}", f"{curves['torch']['psnr'][i]:.3f}"]
            for i, q in enumerate(result["qualities"])]
    times = ", ".join(f"{k} {v:.3f}" for k, v in s["median_s"].items())
    return "\n".join([
        table(rows, ["quality", "bpp onnx", "bpp torch", "PSNR onnx", "PSNR torch"]),
        f"BD-rate of the onnx runtime vs torch: {s['bd_rate_onnx_vs_torch_percent']:+.3f}% "
        f"({s['cases']} image-quality cases, each encoded on both runtimes and each file decoded on both)",
        f"symbols identical across runtimes: {s['symbols_identical']}; largest pixel difference: "
        f"{s['max_pixel_diff']} code value(s); byte-identical files: {100 * s['files_identical_share']:.1f}%",
        f"in-process seconds per call (median): {times}"])


def main() -> None:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--limit", type=int, default=None, help="first N val images")
    args = ap.parse_args()
    run = start(args)
    from sdc.models.codec import SDCCodec

    codecs = {name: SDCCodec(runtime=name, threads=args.threads) if name == "onnx" else SDCCodec(runtime=name)
              for name in RUNTIMES}
    qualities = list(range(1, codecs["onnx"].num_qualities + 1))
    per_image = {}
    for path in val_paths(args.limit):
        per_image[path.name] = compare_image(codecs, load_rgb(path), qualities)
        print(f"{path.name}: done", flush=True)
    rows = [r for image_rows in per_image.values() for r in image_rows]
    curves = {name: ([statistics.mean(r[f"{name}_bpp"] for r in rows if r["quality"] == q) for q in qualities],
                     [statistics.mean(r[f"{name}_psnr"] for r in rows if r["quality"] == q) for q in qualities])
              for name in RUNTIMES}
    summary = {
        "bd_rate_onnx_vs_torch_percent": round(bd_rate(*curves["torch"], *curves["onnx"]), 4),
        "symbols_identical": all(r[f"{m}_file_symbols_identical"] for r in rows for m in RUNTIMES),
        "max_pixel_diff": max(r[f"{m}_file_max_pixel_diff"] for r in rows for m in RUNTIMES),
        "files_identical_share": round(sum(r["files_identical"] for r in rows) / len(rows), 3),
        "cases": len(rows),
        "median_s": {f"{name}_{op}": round(statistics.median(
            r[f"{name}_encode_s"] if op == "encode" else r[f"{name}_decode_s_{name}_file"] for r in rows), 3)
            for name in RUNTIMES for op in ("encode", "decode")},
    }
    write_json(args.out, {**run, "weights": weights_info(), "qualities": qualities,
                          "curves": {n: {"bpp": c[0], "psnr": c[1]} for n, c in curves.items()},
                          "summary": summary, "per_image": per_image})
    print(report(read_json(args.out)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
