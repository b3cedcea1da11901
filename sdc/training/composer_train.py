"""Train the learned composer on partial decodes (:mod:`sdc.training.composer_data`).

The codec (encoder, hyperprior and g_s) stays frozen: the samples are its own
partial decodes. The composer learns to complete the missing pixels from the
decoded ones and the hyperprior fill. Its loss
(:mod:`sdc.training.composer_losses`), over the missing pixels, is an L1
distance to the original, plus ``--texture W`` times a loss on the amount of
fine detail and ``--adv W`` times a hinge GAN loss from a patch discriminator
(:class:`~sdc.training.composer_net.PatchDiscriminator`): the L1 term alone
learns the conditional mean, which is blur again. ``--init RUN`` starts from
another run's networks. The shipped network's settings are in its manifest;
docs/experiments.md compares the losses on ``benchmarks/compose_tasks.py``.

    python -m sdc.training.composer_train --data DIR --val DIR --run RUN [--adv 0.003] [--texture 0.5] [--init RUN]
        [--minutes 50] [--steps N]
    python -m sdc.training.composer_train --export RUN --out weights/

Every few minutes the run directory gets ``composer.safetensors`` (the
network), ``train.json`` (settings, steps, losses, validation L1) and, with
``--adv``, ``discriminator.safetensors``. ``--export`` writes the ONNX file the
runtime runs and its manifest (:data:`sdc.compose.learned.MANIFEST`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

CROP = 192
CROP_MULTIPLE = 32  # the texture loss's coarsest band pools 32x32 pixels


def load_samples(folder: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(original (H, W, 3), partial (H, W, 3), missing pixels (H, W))] of every .npz in `folder`."""
    from sdc.geometry import cells_to_pixels

    samples = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            original, partials, cells = npz["original"], npz["partial"], npz["missing_cells"]
        h, w = original.shape[:2]
        for partial, missing in zip(partials, cells):
            samples.append((original, partial, cells_to_pixels(missing, h, w)))
    if not samples:
        raise SystemExit(f"no .npz samples in {folder}")
    return samples


def batch(samples, rng: np.random.Generator, size: int, crop: int = CROP):
    """(inputs (N, 5, crop, crop), originals (N, 3, crop, crop), masks (N, 1, crop, crop)) float32 tensors.

    Inputs are [partial decode, missing mask, fresh standard normal noise]."""
    import torch

    inputs, targets, masks = [], [], []
    while len(inputs) < size:
        original, partial, missing = samples[int(rng.integers(len(samples)))]
        h, w = missing.shape
        if h < crop or w < crop:
            continue
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        window = (slice(y, y + crop), slice(x, x + crop))
        m = missing[window]
        if not m.any():
            continue
        flip = slice(None, None, -1 if rng.random() < 0.5 else 1)
        m = m[:, flip].astype(np.float32)[None]
        p = partial[window][:, flip].transpose(2, 0, 1).astype(np.float32) / 255
        inputs.append(np.concatenate([p, m, rng.standard_normal(m.shape, dtype=np.float32)]))
        targets.append(original[window][:, flip].transpose(2, 0, 1).astype(np.float32) / 255)
        masks.append(m)
    return tuple(torch.from_numpy(np.stack(a)) for a in (inputs, targets, masks))


def validate(net, samples) -> float:
    """Mean absolute error (0..255) over the missing pixels of the validation samples, whole pictures."""
    import torch

    from sdc.compose.learned import padded

    errors = []
    with torch.no_grad():
        for original, partial, missing in samples:
            x, (h, w) = padded(partial, missing)
            out = net(torch.from_numpy(x))[0, :, :h, :w].clamp(0, 1).numpy().transpose(1, 2, 0)
            errors.append(np.abs(out * 255 - original)[missing].mean())
    return float(np.mean(errors))


def describe(folder: Path, samples: int) -> str:
    """Where a sample folder came from (its composer_data source.json), for the manifest."""
    from sdc.training.composer_data import SOURCE

    try:
        source = json.loads((Path(folder) / SOURCE).read_text())
        return f"partial decodes of {source['images']} ({source['photos']} photos, {samples} samples)"
    except (OSError, ValueError, KeyError):
        return f"partial decodes in {folder} ({samples} samples)"


def _fill_only(x):
    """A "network" that leaves the partial decode as it is: validate() of the hyperprior fill."""
    return x[:, :3]


def train(args) -> None:
    import torch
    from safetensors.torch import save_file

    from sdc.training import composer_losses as losses
    from sdc.training.composer_net import ComposerNet, PatchDiscriminator

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    samples, val = load_samples(args.data), load_samples(args.val)
    net = ComposerNet()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.5, 0.999))
    disc = PatchDiscriminator() if args.adv > 0 else None
    if args.init:
        _load(net, args.init / "composer.safetensors")
        if disc and (args.init / "discriminator.safetensors").exists():
            _load(disc, args.init / "discriminator.safetensors")
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.999)) if disc else None
    args.run.mkdir(parents=True, exist_ok=True)
    log = {"settings": {k: str(v) for k, v in vars(args).items()}, "samples": len(samples),
           "val_samples": len(val), "fill_val_l1": validate(_fill_only, val), "history": []}
    before = json.loads((args.init / "train.json").read_text()) if args.init else {}
    log["init"] = {"steps": before.get("total_steps", 0), "minutes": before.get("total_minutes", 0.0)}
    start, last_save, step, decayed = time.monotonic(), -float("inf"), 0, False
    sums = np.zeros(4)
    while True:
        done = time.monotonic() - start >= 60 * args.minutes or (args.steps is not None and step >= args.steps)
        if done or time.monotonic() - last_save >= 300:
            entry = {"step": step, "minutes": (time.monotonic() - start) / 60,
                     **{k: sums[i] / max(sums[3], 1) for i, k in enumerate(("l1", "texture", "adv"))},
                     "val_l1": validate(net.eval(), val)}
            net.train()
            log["history"].append(entry)
            log["steps"] = step
            log["total_steps"] = step + log["init"]["steps"]
            log["total_minutes"] = entry["minutes"] + log["init"]["minutes"]
            print(json.dumps(entry), flush=True)
            save_file(net.state_dict(), str(args.run / "composer.safetensors"))
            if disc:
                save_file(disc.state_dict(), str(args.run / "discriminator.safetensors"))
            (args.run / "train.json").write_text(json.dumps(log, indent=1))
            last_save, sums = time.monotonic(), np.zeros(4)
            if done:
                return
        if not decayed and time.monotonic() - start >= 0.8 * 60 * args.minutes:
            decayed = True  # the last fifth at a fifth of the rate
            for group in [*opt.param_groups, *(opt_d.param_groups if opt_d else [])]:
                group["lr"] = args.lr / 5
        x, target, mask = batch(samples, rng, args.batch, args.crop)
        composed = torch.where(mask > 0, net(x), x[:, :3])
        l1 = losses.hole_l1(composed, target, mask)
        texture = losses.texture_loss(composed, target, mask) if args.texture else torch.zeros(())
        adv = losses.generator_hinge(disc(composed, mask), mask) if disc else torch.zeros(())
        loss = l1 + args.texture * texture + args.adv * adv
        opt.zero_grad()
        loss.backward()
        opt.step()
        if disc:
            loss_d = losses.discriminator_hinge(disc(target, mask), disc(composed.detach(), mask))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        sums += (l1.item(), texture.item(), adv.item(), 1)
        step += 1


def _load(module, path: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))


def export(run: Path, out: Path) -> None:
    """composer.onnx and its manifest from a run directory."""
    import torch
    from safetensors.torch import load_file

    from sdc.compose.learned import MANIFEST, ONNX_FILE
    from sdc.training.composer_net import ComposerNet

    log = json.loads((run / "train.json").read_text())
    net = ComposerNet()
    net.load_state_dict(load_file(str(run / "composer.safetensors")))
    net.eval()
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 5, 64, 96)
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter, as for the codec's transforms (sdc.training.export_onnx)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(out / ONNX_FILE), input_names=["input"], output_names=["picture"],
                          dynamic_axes={"input": {2: "height", 3: "width"}, "picture": {2: "height", 3: "width"}},
                          opset_version=17, dynamo=False)
    digest = hashlib.sha256((out / ONNX_FILE).read_bytes()).hexdigest()
    settings = log["settings"]
    manifest = {
        "format": "sdc-composer", "format_version": 1, "file": ONNX_FILE, "sha256": digest,
        "network": {"name": "ComposerNet", "widths": list(net.widths), "dilations": list(net.dilations)},
        "layout": "NCHW float32, batch 1, [partial decode 0..1, missing mask, noise], sides multiples of 16",
        "loss": f"L1 over missing pixels + {settings.get('texture', 0)} x texture (band contrast) + "
                f"{settings['adv']} x hinge GAN (patch discriminator)",
        "steps": log["total_steps"], "batch": int(settings["batch"]), "crop": int(settings["crop"]),
        "samples": log["samples"],
        "data": describe(settings["data"], log["samples"]) + " by the shipped codec (python -m sdc.training.composer_data)",
        "validation": f"{describe(settings['val'], log['val_samples'])}: mean absolute error in the holes "
                      f"{log['history'][-1]['val_l1']:.2f} (0..255); the hyperprior fill's {log['fill_val_l1']:.2f}",
        "trained": f"{log['total_minutes']:.0f} min on {settings['threads']} CPU thread(s)",
        "exported": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--val", type=Path)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--adv", type=float, default=0.0, help="weight of the GAN loss (0: L1 alone)")
    parser.add_argument("--texture", type=float, default=0.0,
                        help="weight of the texture loss (sdc.training.composer_losses.texture_loss)")
    parser.add_argument("--init", type=Path, metavar="RUN", help="start from RUN's networks (and its discriminator)")
    parser.add_argument("--minutes", type=float, default=50)
    parser.add_argument("--steps", type=int, help="stop after this many steps (or --minutes, whichever first)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=CROP, help=f"training crop side, a multiple of {CROP_MULTIPLE}")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", type=Path, metavar="RUN", help="export RUN's network instead of training")
    parser.add_argument("--out", type=Path, default=Path("weights"))
    args = parser.parse_args(argv)
    if args.export:
        export(args.export, args.out)
    elif not (args.data and args.val and args.run):
        parser.error("training needs --data, --val and --run")
    elif args.crop % CROP_MULTIPLE:
        parser.error(f"--crop must be a multiple of {CROP_MULTIPLE}")
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
