"""Where the top of the quality range is capped: the analysis or the synthesis transform?

    nice -n 10 python benchmarks/transform_bound.py [--crops 4] [--steps 1500]

On 256x256 centre crops of the val images, with the shipped float network
(no quantization, no rate):

    autoencoder   PSNR of g_s(y·g·g') with y = g_a(x) at the top quality's gains:
                  what the transforms reconstruct with unlimited bits
    synthesis     PSNR of g_s(ŷ) with ŷ optimised for this image by Adam on
                  ||g_s(ŷ) − x||² from the autoencoder's latent (lr 0.05 decaying
                  linearly to 0.002): what g_s can show at all from M channels
    gap           synthesis − autoencoder: the part of the cap an encoder
                  (g_a, or encoder-side refinement) leaves; the rest is g_s's

The optimisation is run for `steps` steps and its PSNR logged at a quarter,
half and all of them, so one can see whether it has converged.

Writes results/transform_bound.json.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, arguments, load_rgb, start, table, val_paths, weights_info, write_json  # noqa: E402

OUT = RESULTS / "transform_bound.json"
CROP = 256


def float_network():
    """The shipped weights' trainable SDCNet (float g_a, g_s and gains), frozen."""
    import json

    from safetensors.torch import load_file

    from sdc.training.network import SDCNet
    from sdc.models.weights import default_weights_dir
    from sdc.training.warm_start import trained_tensors

    folder = default_weights_dir()
    manifest = json.loads((folder / "manifest.json").read_text())
    net = SDCNet.from_config(manifest["architecture"])
    state = load_file(str(folder / manifest["file"]))
    net.load_state_dict(trained_tensors(state), strict=False)
    return net.eval().requires_grad_(False)


def psnr(x_hat, x) -> float:
    return 10 * math.log10(1.0 / max((x_hat.clamp(0, 1) - x).pow(2).mean().item(), 1e-12))


def bound(net, x, steps: int) -> dict:
    import torch

    top = net.num_qualities - 1
    gain = (net.log_gain[top].exp() * net.log_inv_gain[top].exp())[None, :, None, None]
    y0 = net.g_a(x) * gain
    out = {"autoencoder_db": psnr(net.g_s(y0), x), "synthesis_db_at": {}}
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=0.05)
    marks = {steps // 4, steps // 2, steps}
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = 0.05 * (1 - (step - 1) / steps) + 0.002
        loss = (net.g_s(y) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in marks:
            with torch.no_grad():
                out["synthesis_db_at"][str(step)] = psnr(net.g_s(y), x)
    out["synthesis_db"] = out["synthesis_db_at"][str(steps)]
    out["gap_db"] = out["synthesis_db"] - out["autoencoder_db"]
    return out


def main(argv=None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--crops", type=int, default=4, help="first N val images, one centre crop each")
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args(argv)
    started = start(args)
    import torch

    net = float_network()
    rows, per_image = [], {}
    for path in val_paths(args.crops):
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        t, l = (h - CROP) // 2, (w - CROP) // 2
        x = torch.from_numpy(rgb[t:t + CROP, l:l + CROP].copy()).permute(2, 0, 1)[None].float() / 255
        r = bound(net, x, args.steps)
        per_image[path.name] = r
        rows.append([path.name, f"{r['autoencoder_db']:.2f}", f"{r['synthesis_db']:.2f}", f"{r['gap_db']:+.2f}",
                     " / ".join(f"{v:.2f}" for v in r["synthesis_db_at"].values())])
        print(rows[-1], flush=True)
    mean = {k: float(np.mean([r[k] for r in per_image.values()])) for k in ("autoencoder_db", "synthesis_db", "gap_db")}
    rows.append(["mean", f"{mean['autoencoder_db']:.2f}", f"{mean['synthesis_db']:.2f}", f"{mean['gap_db']:+.2f}", ""])
    print(table(rows, ["image (256x256 centre crop)", "g_s(g_a(x)) dB", "g_s(best ŷ) dB", "gap",
                       f"best ŷ after {args.steps // 4}/{args.steps // 2}/{args.steps} steps"]))
    write_json(args.out, {
        "benchmark": "transform bound: unquantised autoencoder PSNR vs g_s with per-image optimised latents",
        "command": "python benchmarks/transform_bound.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": started["git"], "machine": started["machine"], "weights": weights_info(),
        "setup": {"crop": CROP, "crops": args.crops, "steps": args.steps, "quality_gains": "top quality",
                  "optimiser": "Adam, lr 0.05 linear to 0.002, on ŷ (M channels), loss pixel MSE"},
        "mean": mean, "per_image": per_image,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
