"""Encode/decode seconds per 768x512 image: sdc vs compressai's MeanScaleHyperprior(128, 192).

    nice -n 10 python benchmarks/speed.py [--runs 3] [--limit 10]

Images: 768x512 (W x H) centre crops of the val images (resized first when
smaller). 2 threads (the machine's cores) for ONNX Runtime and torch, one warm-up call of each
function before timing, then `runs` timed calls per image; per image the
median, then the median over images. The calls are interleaved (sdc encode,
sdc decode, compressai compress, compressai decompress, ...) so that both
codecs see the same background load.

    sdc codec      SDCCodec.encode (analysis transform, hyperprior, entropy
                   coding of every group; group map all "other", the default quality)
                   and SDCCodec.decode (everything decoded), on the default runtime
                   (ONNX Runtime) and, for reference, SDCCodec(runtime="torch")
    sdc pipeline   sdc.pipeline.encode_image with the offline analyzer
                   (analysis + codec + container, a real .sdc file) and
                   decode_sdc (container + codec)
    compressai     MeanScaleHyperprior(128, 192), random weights, update(),
                   compress / decompress (same padded-to-64 input size)

Wall seconds (time.perf_counter) and the process's CPU seconds are both
recorded: on a loaded machine the wall time overstates the cost.

Targets (issue 39): sdc encode and decode each at most 0.3 s on this machine,
and at least 2x faster than compressai's mean-scale hyperprior.

Writes results/speed.json.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, arguments, crop_768x512, load_rgb, start, table, val_paths, weights_info,  # noqa: E402
                    write_json)
from sdc.levels import DEFAULT_QUALITY  # noqa: E402  (after common, which puts the sdc code on sys.path)

OUT = RESULTS / "speed.json"


def timed(fn, *a, **kw):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0, time.process_time() - c0


class Coders:
    """The codecs timed, their warm-up, and one image's timed runs."""

    def __init__(self, quality: int, pipeline: bool):
        import torch
        from compressai.models import MeanScaleHyperprior

        from sdc.models.codec import SDCCodec, default_codec

        self.torch = torch
        self.codec = default_codec()  # the runtime's: ONNX Runtime, no torch
        self.codec_torch = SDCCodec(runtime="torch")  # the same transforms in torch, for reference
        torch.manual_seed(0)
        self.cai = MeanScaleHyperprior(128, 192).eval()
        self.cai.update(force=True)
        self.quals = {lv: quality for lv in ("L1", "L2", "L3", "other")}
        self.pipeline = pipeline
        self.keys = ["sdc_encode", "sdc_decode", "torch_encode", "torch_decode", "compressai_compress",
                     "compressai_decompress"]
        if pipeline:
            self.keys += ["pipeline_encode", "pipeline_decode", "pipeline_analysis", "pipeline_codec",
                          "pipeline_container"]

    def sdc_enc(self, rgb, codec=None):
        from sdc.geometry import latent_shape

        return (codec or self.codec).encode(rgb, np.full(latent_shape(*rgb.shape[:2]), 3, np.uint8), self.quals)

    def cai_enc(self, x):
        with self.torch.inference_mode():
            return self.cai.compress(x)

    def cai_dec(self, c):
        with self.torch.inference_mode():
            return self.cai.decompress(c["strings"], c["shape"])

    def tensor(self, rgb):
        return self.torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255

    def warm_up(self, rgb) -> None:
        from sdc.pipeline import decode_sdc, encode_image

        self.codec.decode(self.sdc_enc(rgb))
        self.codec_torch.decode(self.sdc_enc(rgb, self.codec_torch))
        self.cai_dec(self.cai_enc(self.tensor(rgb)))
        if self.pipeline:
            decode_sdc(encode_image(rgb, qualities=self.quals, analyzer="offline").data)

    def time_image(self, rgb, runs: int, load: list[float]) -> dict:
        """`runs` interleaved runs of every coder on one image: medians, each run's wall seconds, sizes."""
        from sdc.pipeline import decode_sdc, encode_image

        x = self.tensor(rgb)
        wall = {k: [] for k in self.keys}
        cpu = {k: [] for k in self.keys}
        info = {}

        def record(key, fn, *a, **kw):
            out, w, c = timed(fn, *a, **kw)
            wall[key].append(w)
            cpu[key].append(c)
            return out

        for _ in range(runs):
            coded = record("sdc_encode", self.sdc_enc, rgb)
            record("sdc_decode", self.codec.decode, coded)
            record("torch_decode", self.codec_torch.decode, record("torch_encode", self.sdc_enc, rgb, self.codec_torch))
            comp = record("compressai_compress", self.cai_enc, x)
            record("compressai_decompress", self.cai_dec, comp)
            info["sdc_bpp"] = coded.payload_bytes * 8 / (768 * 512)
            info["compressai_bpp"] = sum(len(s[0]) for s in comp["strings"]) * 8 / (768 * 512)
            if self.pipeline:
                enc = record("pipeline_encode", encode_image, rgb, qualities=self.quals, analyzer="offline")
                for part in ("analysis", "codec", "container"):
                    wall[f"pipeline_{part}"].append(enc.timings[part])
                    cpu[f"pipeline_{part}"].append(float("nan"))
                record("pipeline_decode", decode_sdc, enc.data)
                info["pipeline_file_bpp"] = len(enc.data) * 8 / (768 * 512)
                info["pipeline_objects"] = len(enc.analysis.objects)
            load.append(os.getloadavg()[0])
        return {"wall_median": {k: statistics.median(v) for k, v in wall.items()},
                "cpu_median": {k: statistics.median(v) for k, v in cpu.items()},
                "wall_runs": wall, **info}


def summarize(per_image: dict, keys: list[str]) -> dict:
    summary = {}
    for k in keys:
        w = [per_image[n]["wall_median"][k] for n in per_image]
        c = [per_image[n]["cpu_median"][k] for n in per_image]
        summary[k] = {"wall_median_s": statistics.median(w), "wall_mean_s": statistics.fmean(w),
                      "wall_min_s": min(min(per_image[n]["wall_runs"][k]) for n in per_image),
                      "cpu_median_s": statistics.median(c)}
    return summary


def main(argv=None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    ap.add_argument("--no-pipeline", action="store_true", help="skip the encode_image/decode_sdc timing")
    args = ap.parse_args(argv)
    started = start(args)  # the code and load this run starts with
    coders = Coders(args.quality, pipeline=not args.no_pipeline)
    images = [(p.name, crop_768x512(load_rgb(p))) for p in val_paths(args.limit)]
    coders.warm_up(images[0][1])
    per_image = {}
    load = [os.getloadavg()[0]]
    t_start = time.perf_counter()
    for name, rgb in images:
        per_image[name] = r = coders.time_image(rgb, args.runs, load)
        print(f"  {name}: sdc enc {r['wall_median']['sdc_encode']:.3f} s, dec {r['wall_median']['sdc_decode']:.3f} s; "
              f"compressai {r['wall_median']['compressai_compress']:.3f} / "
              f"{r['wall_median']['compressai_decompress']:.3f} s ({time.perf_counter() - t_start:.0f} s)", flush=True)
    summary = summarize(per_image, coders.keys)
    speedup = {
        "encode": summary["compressai_compress"]["wall_median_s"] / summary["sdc_encode"]["wall_median_s"],
        "decode": summary["compressai_decompress"]["wall_median_s"] / summary["sdc_decode"]["wall_median_s"],
    }
    res = {
        "benchmark": "encode/decode seconds per 768x512 image",
        "command": "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": started["git"], "machine": started["machine"], "weights": weights_info(),
        "load_average_1min_during": {"min": min(load), "max": max(load), "mean": statistics.fmean(load)},
        "setup": {"images": f"{len(images)} val images, 768x512 centre crops", "runs_per_image": args.runs,
                  "quality": args.quality, "torch_threads": args.threads,
                  "compressai": "MeanScaleHyperprior(128, 192), random weights (torch.manual_seed(0)), update(force=True)",
                  "note": "seconds are wall-clock medians; other jobs (codec training) share the 2 cores"},
        "targets": {"sdc_seconds_max": 0.3, "speedup_min": 2.0},
        "summary": summary,
        "speedup_vs_compressai": speedup,
        "per_image": per_image,
    }
    write_json(args.out, res)
    print(report(res))
    print(f"\nwrote {args.out}")
    return 0


def report(res) -> str:
    s = res["summary"]
    rows = [["sdc codec (SDCCodec, ONNX Runtime)", f"{s['sdc_encode']['wall_median_s']:.3f}",
             f"{s['sdc_decode']['wall_median_s']:.3f}",
             f"{s['sdc_encode']['wall_min_s']:.3f} / {s['sdc_decode']['wall_min_s']:.3f}",
             f"{s['sdc_encode']['cpu_median_s']:.3f} / {s['sdc_decode']['cpu_median_s']:.3f}"],
            ["compressai MSH(128,192)", f"{s['compressai_compress']['wall_median_s']:.3f}",
             f"{s['compressai_decompress']['wall_median_s']:.3f}",
             f"{s['compressai_compress']['wall_min_s']:.3f} / {s['compressai_decompress']['wall_min_s']:.3f}",
             f"{s['compressai_compress']['cpu_median_s']:.3f} / {s['compressai_decompress']['cpu_median_s']:.3f}"]]
    if "torch_encode" in s:
        rows.insert(1, ["sdc codec, torch runtime", f"{s['torch_encode']['wall_median_s']:.3f}",
                        f"{s['torch_decode']['wall_median_s']:.3f}",
                        f"{s['torch_encode']['wall_min_s']:.3f} / {s['torch_decode']['wall_min_s']:.3f}",
                        f"{s['torch_encode']['cpu_median_s']:.3f} / {s['torch_decode']['cpu_median_s']:.3f}"])
    if "pipeline_encode" in s:
        rows.append(["sdc pipeline (offline analysis + .sdc)", f"{s['pipeline_encode']['wall_median_s']:.3f}",
                     f"{s['pipeline_decode']['wall_median_s']:.3f}",
                     f"{s['pipeline_encode']['wall_min_s']:.3f} / {s['pipeline_decode']['wall_min_s']:.3f}",
                     f"{s['pipeline_encode']['cpu_median_s']:.3f} / {s['pipeline_decode']['cpu_median_s']:.3f}"])
    out = table(rows, ["768x512, seconds", "encode (median)", "decode (median)", "fastest run enc / dec",
                       "CPU s enc / dec (median)"])
    sp = res["speedup_vs_compressai"]
    out += f"\nsdc speed-up vs compressai (median wall): encode {sp['encode']:.2f}x, decode {sp['decode']:.2f}x"
    if "pipeline_encode" in s:
        out += (f"\npipeline encode split (median s): analysis {s['pipeline_analysis']['wall_median_s']:.3f}, "
                f"codec {s['pipeline_codec']['wall_median_s']:.3f}, container {s['pipeline_container']['wall_median_s']:.4f}")
    la = res["load_average_1min_during"]
    out += f"\n1-min load average during the run: {la['min']:.1f}..{la['max']:.1f} on {res['machine']['cores']} cores"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
