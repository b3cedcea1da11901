"""Export a training checkpoint as shipped weights, with a measured manifest.

``python -m sdc.training.export --run runs/main --out weights`` writes
``weights/sdc.safetensors`` (float state for resuming training, entropy tables,
integer hyper-synthesis) and ``weights/manifest.json`` (architecture,
training record, real-bitstream validation on ../shared/data/val, sha256).
``python -m sdc.training.export onnx [--weights weights]`` then adds the ONNX files of
the float transforms (:mod:`sdc.training.export_onnx`).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sdc.levels import LEVELS
from sdc.models.architecture import BLOCK_KEYS
from sdc.models.codec import SDCCodec
from sdc.models.integer_hyper import ACT_BITS
from sdc.models.weights import save_weights
from sdc.geometry import PAD_MULTIPLE, latent_shape
from sdc.training.network import SDCNet
from sdc.training.quantize import quantize_channel_context, quantize_hyper_synthesis
from sdc.training.data import IMAGE_SUFFIXES
from sdc.training.warm_start import ENTROPY_TABLE_KEYS, init_weights, lineage_steps, manifest_beside, trained_tensors


def inference_tensors(net: SDCNet) -> dict[str, torch.Tensor]:
    """Everything the weights file stores: float state, entropy tables, integer h_s."""
    from compressai.models.google import get_scale_table

    net.entropy_bottleneck.update(force=True)
    net.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
    tensors = {k: v.detach().clone() for k, v in net.state_dict().items()}
    tensors.update(quantize_hyper_synthesis(net.h_s))
    if net.context is not None:
        tensors.update(quantize_channel_context(net.context))
    # Scales are compared after multiplying by the fixed-point gain: units 2^-(2·ACT_BITS).
    tensors["int_scale_thresholds"] = torch.round(net.gaussian_conditional.scale_table.double() * 2.0 ** (2 * ACT_BITS)).to(torch.int64)
    medians = net.entropy_bottleneck.quantiles[:, 0, 1].detach().double()
    tensors["int_z_median"] = torch.round(medians * 2.0**ACT_BITS).to(torch.int64)
    tensors["int_gain"] = torch.round(net.log_gain.detach().double().exp() * 2.0**ACT_BITS).to(torch.int64)
    tensors["int_z_inv_gain"] = torch.round((-net.log_z_gain.detach().double()).exp() * 2.0**ACT_BITS).to(torch.int64)
    return tensors


def lineage(before: dict | None, steps: int, cpu_hours: float) -> dict:
    """Steps and CPU hours including the runs before; `before`: the training record of the
    weights the run started from."""
    if not before:
        return {}
    return {"lineage_steps": lineage_steps(before) + steps,
            "lineage_cpu_hours": round(before.get("lineage_cpu_hours", before.get("cpu_hours", 0)) + cpu_hours, 2)}


def val_images(folder: Path) -> list[np.ndarray]:
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert("RGB")))
    return out


def real_rd(codec: SDCCodec, images: list[np.ndarray]) -> dict:
    """Mean bpp of the real substreams (hyperprior + all groups) and PSNR-RGB per quality."""
    res = {}
    for q in range(1, codec.num_qualities + 1):
        bpps, psnrs = [], []
        for rgb in images:
            h, w = rgb.shape[:2]
            gmap = np.full(latent_shape(h, w), LEVELS.index("other"), np.uint8)
            coded = codec.encode(rgb, gmap, {lv: q for lv in LEVELS})
            nbytes = coded.payload_bytes
            rec = codec.decode(coded)
            mse = np.mean((rec.astype(np.float64) - rgb) ** 2)
            bpps.append(8 * nbytes / (h * w))
            psnrs.append(10 * math.log10(255**2 / max(mse, 1e-12)))
        res[f"q{q}"] = {"bpp": round(float(np.mean(bpps)), 4), "psnr": round(float(np.mean(psnrs)), 3)}
    return res


# A training start keeps tensors this large in float16: half the bytes in the repo, and
# resuming from it is within 5e-4 of the float32 weights, far below one step's change.
HALF_MIN_NUMEL = 4096


def write_training_start(weights: Path, out: Path) -> None:
    """weights/candidates-style copy of exported weights, to resume training from (not to decode):
    the tensors training starts from (:func:`sdc.training.warm_start.trained_tensors`), large ones in float16,
    and the manifest with a ``candidate`` note saying so."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v.half() if v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL else v
               for k, v in trained_tensors(load_file(str(weights / "sdc.safetensors"))).items()}
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["candidate"] = (
        f"Training start only, not decodable weights: the float tensors of {weights} (sha256 above, not this "
        f"file's) with those of {HALF_MIN_NUMEL}+ elements stored as float16 and the tables export derives left "
        f"out. Resume with python -m sdc.training.train --init {out / 'sdc.safetensors'}.")
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "sdc.safetensors"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"wrote training start {out}/sdc.safetensors")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of an export of weights (from a run, or --init as is) or of a training start."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="training run directory (uses its ckpt.pt)")
    p.add_argument("--init", help="or: a safetensors state dict to export as is")
    p.add_argument("--out", default="weights")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--notes", default="")
    p.add_argument("--val-limit", type=int, default=None, help="validate on the first N images only (quick exports)")
    p.add_argument("--training-start", metavar="WEIGHTS_DIR",
                   help="or: write exported weights as a float16 training start to --out (weights/candidates/NAME)")
    p.add_argument("--no-onnx", action="store_true",
                   help="skip writing the ONNX transforms the default runtime needs (sdc then decodes with runtime='torch' only)")
    p.add_argument("--init-manifest", help="manifest of the weights the run started from, for its lineage (for "
                                           "checkpoints older than init_training whose --init file was replaced since)")
    return p.parse_args(argv)


def load_run(run: Path, init_manifest: str | None) -> tuple[SDCNet, list[float], dict]:
    """A run's network from its checkpoint, its λs and its training record: the run's own steps,
    CPU hours and settings, with the lineage of the weights it started from."""
    ck = torch.load(run / "ckpt.pt", weights_only=True)
    cfg = ck.get("config", {})
    net = SDCNet.from_config(cfg)
    net.load_state_dict({k: v for k, v in ck["model"].items() if not k.endswith(ENTROPY_TABLE_KEYS)}, strict=False)
    lambdas = cfg.get("lambdas") or net.lambdas
    training = {
        "steps": ck["step"], "cpu_hours": round(ck.get("cpu_seconds", 0) / 3600, 2),
        "crop": cfg.get("crop"), "batch": cfg.get("batch"), "initialised_from": cfg.get("init"),
        "crop_seed": cfg.get("seed", 0),
    }
    if cfg.get("quality_balance"):  # the loss each quality's samples were weighted by (sdc.training.train --quality-balance)
        training["quality_balance"] = cfg["quality_balance"]
        training["quality_weights"] = [round(w, 4) for w in cfg["quality_weights"]]
    if init_manifest:
        before = json.loads(Path(init_manifest).read_text()).get("training")
    elif cfg.get("init_training") is not None:
        before = cfg["init_training"]
    else:  # checkpoints before init_training: the manifest beside --init now (right unless it was replaced)
        before = manifest_beside(cfg["init"]).get("training") if cfg.get("init") else None
    training.update(lineage(before, training["steps"], training["cpu_hours"]))
    log = run / "log.jsonl"
    if log.exists():
        training["log_tail"] = [json.loads(l) for l in log.read_text().splitlines()[-3:]]
    return net, lambdas, training


def load_init(init: str) -> tuple[SDCNet, list[float], dict]:
    """A weights file's network (the architecture its manifest declares), its λs and a training
    record of no steps."""
    net = SDCNet.from_config(manifest_beside(init).get("architecture", {}))
    init_weights(net, init)
    return net, net.lambdas, {"steps": 0, "initialised_from": init}


def weights_manifest(net: SDCNet, lambdas, training: dict, notes: str) -> dict:
    """The manifest of exported weights, before validation and hashing: the architecture the
    decoder builds, and the training record with the data and loss it was trained on."""
    return {
        "format": "sdc-weights", "format_version": 1,
        "architecture": {"name": "SDCNet", "N": net.N, "M": net.M, "num_qualities": net.num_qualities,
                         "lambdas": [round(l, 8) for l in lambdas], "latent_stride": 16, "pad_multiple": PAD_MULTIPLE,
                         "context_slices": net.context_slices if net.context is not None else 0,
                         "context_hidden": net.context_hidden if net.context is not None else 0,
                         "bypass": net.bypass, "g_s_width": net.g_s_width,
                         **{key: list(getattr(net, key)) for key in BLOCK_KEYS},
                         "entropy_coder": "constriction queue range coder, compressai 16-bit tables",
                         "hyper_synthesis": "integer fixed point (ACT_BITS=12)"},
        "training": dict(training, data="../shared/data/train (719 photos: BSDS500, Sun-Hays 80, Urban100 x0.5, Wikimedia)",
                         loss="lambda*255^2*MSE + bpp, per-pixel lambda from a per-position quality map",
                         warm_start_note="g_a/g_s/h_a/h_s/entropy bottleneck initialised from shared/pretrained/msh_64_96_l0.013_9k (compressai MeanScaleHyperprior(64,96), 9.25k steps)"),
        "notes": notes,
        "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv=None) -> None:
    """Export a run's checkpoint (or --init weights) as weights with a manifest validated on
    real bitstreams, plus the runtime's ONNX transforms; or write a training start."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["onnx"]:  # python -m sdc.training.export onnx: the ONNX transforms of exported weights
        from sdc.training.export_onnx import main as export_onnx

        return export_onnx(argv[1:])
    args = parse_args(argv)
    torch.set_num_threads(2)
    if args.training_start:
        write_training_start(Path(args.training_start), Path(args.out))
        return

    net, lambdas, training = load_run(Path(args.run), args.init_manifest) if args.run else load_init(args.init)
    net.eval()
    tensors = inference_tensors(net)
    manifest = weights_manifest(net, lambdas, training, args.notes)
    codec = SDCCodec(tensors=tensors, manifest=manifest)
    t = time.time()
    manifest["validation"] = {"data": args.val, "metric": "real bitstream bpp (hyperprior+groups) / PSNR-RGB, full images",
                              "images": args.val_limit or "all",
                              "results": real_rd(codec, val_images(Path(args.val))[: args.val_limit])}
    print(json.dumps(manifest["validation"]["results"]), f"({time.time() - t:.0f}s)")
    manifest = save_weights(Path(args.out), tensors, manifest)
    print(f"wrote {args.out}/sdc.safetensors sha256 {manifest['sha256'][:16]}")
    if not args.no_onnx:  # the runtime's transforms, so the new weights decode without torch
        from sdc.training.export_onnx import export_runtime

        runtime = export_runtime(Path(args.out))
        print(f"wrote {', '.join(e['file'] for e in runtime['files'].values())} for the runtime")


if __name__ == "__main__":
    main()
