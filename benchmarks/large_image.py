"""Peak memory and time of `sdc encode` / `sdc decode` on a 4000x3000 photo.

    nice -n 10 python benchmarks/large_image.py [--size 4000x3000] [--analyzer offline]

The test image is made on the fly (never committed): 8 x 8 urban photos from
../shared/data/train, each resized (Lanczos) to 500x375 and tiled, so the
content is photographic everywhere. It is written as PNG to a temporary
directory; then, each in its own process under `/usr/bin/time -v`:

    sdc encode big.png -o big.sdc --analyzer A -q Q
    sdc decode big.sdc -o big.png

Recorded per command: wall seconds, user+system CPU seconds, peak RSS (the
"Maximum resident set size" of the process), and for the whole: file size,
bpp and PSNR of the decoded image.

With --crafted, also the worst case the default --max-pixels allows: a file
of a few KB claiming 8192x8192 (a hyperprior of each channel's most probable z symbol, no
level substreams, an all-"other" region map), decoded with `sdc decode`. torch uses its default threads (the
machine's 2 cores). Wall time on the shared dev machine depends on the
background load (a training job): the CPU seconds are the steadier figure.

Writes results/large_image.json.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sdc.levels import DEFAULT_QUALITY  # noqa: E402
from common import CODE, RESULTS, SHARED, git_commit, machine_info, psnr, weights_info, write_json  # noqa: E402

OUT = RESULTS / "large_image.json"


def make_image(width: int, height: int, path: Path) -> np.ndarray:
    from PIL import Image

    photos = sorted((SHARED / "data" / "train").glob("urban_*.png"))
    if not photos:
        raise SystemExit(f"no urban_*.png in {SHARED / 'data' / 'train'} (set SDC_SHARED)")
    cols, rows = 8, 8
    tw, th = -(-width // cols), -(-height // rows)
    canvas = Image.new("RGB", (tw * cols, th * rows))
    for k in range(cols * rows):
        with Image.open(photos[k % len(photos)]) as im:
            canvas.paste(im.convert("RGB").resize((tw, th), Image.LANCZOS), ((k % cols) * tw, (k // cols) * th))
    canvas = canvas.crop((0, 0, width, height))
    canvas.save(path, compress_level=1)
    return np.asarray(canvas)


def timed_run(args: list[str]) -> dict:
    """Run `python -m sdc ARGS` under /usr/bin/time -v; wall, CPU and peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(CODE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "sdc", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    stats = {}
    for line in p.stderr.splitlines():
        key, _, value = line.strip().rpartition(": ")
        stats[key] = value
    wall = stats["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    return {
        "command": "sdc " + " ".join(re.sub(r".*/", "", a) if "/" in a else a for a in args),
        "wall_s": round(seconds, 2),
        "cpu_s": round(float(stats["User time (seconds)"]) + float(stats["System time (seconds)"]), 2),
        "peak_rss_mb": round(int(stats["Maximum resident set size (kbytes)"]) / 1024, 1),
    }


def crafted_file(width: int, height: int) -> bytes:
    """A tiny valid .sdc claiming width x height: constant z, no level substreams."""
    sys.path.insert(0, str(CODE))
    from sdc.bitstream import SdcFile, SdcHeader, write_sdc
    from sdc.levels import LEVELS
    from sdc.models.codec import default_codec
    from sdc.geometry import latent_shape

    codec = default_codec()
    shape = codec.z_shape(height, width)
    from sdc.models.weights import load_weights

    t, _ = load_weights()  # each channel's most probable z symbol: the cheapest file
    cdf, length = t["entropy_bottleneck._quantized_cdf"], t["entropy_bottleneck._cdf_length"]
    offset = t["entropy_bottleneck._offset"]
    mode = [int(np.argmax(np.diff(cdf[c, :length[c] - 1]))) + int(offset[c]) for c in range(shape[0])]
    z = np.broadcast_to(np.array(mode, np.int64)[:, None, None], shape).copy()
    hyper = codec.latent.z_coder.encode(z, codec.latent.z_indexes(shape))
    f = SdcFile(header=SdcHeader(width=width, height=height, codec_id=codec.codec_id,
                                 qualities={lv: 1 for lv in LEVELS}),
                region_map=np.full(latent_shape(height, width), 3, np.uint8), hyperprior=hyper, levels={})
    return write_sdc(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="4000x3000", help="WxH")
    ap.add_argument("--analyzer", default="offline")
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    ap.add_argument("--crafted", default="8192x8192", help="WxH of the crafted tiny file ('' to skip)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    width, height = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="sdc-large-") as tmp:
        src, sdc_path, dec = Path(tmp) / "big.png", Path(tmp) / "big.sdc", Path(tmp) / "big_dec.png"
        rgb = make_image(width, height, src)
        enc = timed_run(["encode", str(src), "-o", str(sdc_path), "--analyzer", args.analyzer,
                         "-q", str(args.quality), "--quiet"])
        print(f"encode: {enc}", flush=True)
        dec_stats = timed_run(["decode", str(sdc_path), "-o", str(dec), "--quiet"])
        print(f"decode: {dec_stats}", flush=True)
        from PIL import Image

        with Image.open(dec) as im:
            out = np.asarray(im.convert("RGB"))
        size = sdc_path.stat().st_size
        result = {
            "benchmark": "large_image",
            "command": "python benchmarks/large_image.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "git": git_commit(),
            "weights": weights_info(),
            "machine": machine_info(),
            "image": {"width": width, "height": height, "pixels": width * height,
                      "source": "8x8 tiles of shared/data/train/urban_*.png, Lanczos-resized"},
            "quality": args.quality,
            "analyzer": args.analyzer,
            "encode": enc,
            "decode": dec_stats,
            "file_bytes": size,
            "bpp": round(8 * size / (width * height), 4),
            "psnr_db": round(psnr(out, rgb), 2),
        }
        if args.crafted:
            cw, ch = map(int, args.crafted.lower().split("x"))
            crafted = Path(tmp) / "crafted.sdc"
            crafted.write_bytes(crafted_file(cw, ch))
            stats = timed_run(["decode", str(crafted), "-o", str(Path(tmp) / "crafted.png"), "--quiet"])
            print(f"crafted decode: {stats}", flush=True)
            result["crafted_max_pixels"] = {"width": cw, "height": ch, "file_bytes": crafted.stat().st_size,
                                            "what": "hyperprior of the most probable z symbols, no level substreams", "decode": stats}
    write_json(args.out, result)
    print(f"wrote {args.out}: encode {enc['wall_s']} s / {enc['peak_rss_mb']} MB, "
          f"decode {dec_stats['wall_s']} s / {dec_stats['peak_rss_mb']} MB, {result['bpp']} bpp, "
          f"{result['psnr_db']} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
