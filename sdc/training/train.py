"""Train the sdc codec on CPU: ``python -m sdc.training.train --run runs/main``.

Resumable: the run directory keeps ``ckpt.pt`` (model + optimizer + step,
written every few minutes and on Ctrl-C) and ``log.jsonl`` (one JSON line per
logging interval and per validation). Start from scratch, from the shared
compressai warm start, or from shipped weights (``--init weights/sdc.safetensors``).

Each training sample gets its own quality map: mostly one quality for the
whole crop, sometimes a rectangle at a second quality, so the model learns
the mixed-gain latents that per-group quality produces. The distortion is
weighted per pixel by the λ of the quality coding it, and (by default) each
quality's loss by the inverse of its size, so that every quality's relative
rate counts alike (``--quality-balance``, :func:`balanced_quality_weights`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sdc.training.layers import (BLOCK_KEYS, G_A_BLOCK_KEY, G_S_BLOCK_KEY, G_S_POINTWISE_KEY, g_s_width_in, has_bypass,
                               undeclared_blocks)
from sdc.training.network import (DEFAULT_NUM_QUALITIES, LATENT_STRIDE, PAD_MULTIPLE, SDCNet, extend_log_gains,
                                quality_lambdas, remap_log_gains)
from sdc.models.weights import declared_num_qualities

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp"}
ENTROPY_TABLE_KEYS = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")


def load_images(folder: Path, min_side: int) -> list[torch.Tensor]:
    """Decode every image once into uint8 (3, H, W) tensors kept in memory."""
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    if not images:
        raise SystemExit(f"no usable images in {folder}")
    return images


def random_batch(images, batch: int, crop: int, rng: random.Random) -> torch.Tensor:
    out = torch.empty(batch, 3, crop, crop, dtype=torch.uint8)
    for i in range(batch):
        img = images[rng.randrange(len(images))]
        _, h, w = img.shape
        top, left = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
        patch = img[:, top : top + crop, left : left + crop]
        out[i] = patch.flip(-1) if rng.random() < 0.5 else patch
    return out.float().div_(255.0)


def random_quality_maps(batch: int, size: int, num_q: int, rng: random.Random, mixed_share: float,
                        lowest: int = 0) -> torch.Tensor:
    """(B, size, size) 0-based quality indexes in lowest..num_q-1: uniform, or with a rectangle
    at a second quality."""
    qmap = torch.empty(batch, size, size, dtype=torch.long)
    for i in range(batch):
        qmap[i] = rng.randrange(lowest, num_q)
        if rng.random() < mixed_share:
            h, w = rng.randint(1, size), rng.randint(1, size)
            t, l = rng.randrange(size - h + 1), rng.randrange(size - w + 1)
            qmap[i, t : t + h, l : l + w] = rng.randrange(lowest, num_q)
    return qmap


GAIN_NAMES = ("log_gain", "log_inv_gain", "log_z_gain")


def train_only_gains_from(net: SDCNet, first: int) -> None:
    """Freeze everything but the gains of 0-based qualities >= first.

    For qualities added on top of trained weights: the transforms, hyperprior,
    context and entropy tables stay exactly as they are, so the lower qualities
    code the same bytes, and only the new gain vectors learn (on samples of
    their own qualities).
    """
    for name, param in net.named_parameters():
        param.requires_grad_(name in GAIN_NAMES)
    rows = torch.arange(net.num_qualities)[:, None] >= first
    for name in GAIN_NAMES:
        getattr(net, name).register_hook(lambda grad: grad * rows.to(grad.dtype))


def rd_loss(out: dict, x: torch.Tensor, qmap: torch.Tensor,
            quality_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """λ·255²·MSE + bpp, with λ taken per pixel from the quality map.

    With `quality_weights` (one per quality), each pixel's distortion and each
    latent position's bits count w[q] times (z's bits: w of the image's top
    quality, whose gain z takes); see :func:`balanced_quality_weights`."""
    b, _, h, w = x.shape
    lam = quality_lambdas(qmap).to(x.dtype)  # (B, h/16, w/16)
    y_bits = -torch.log2(out["likelihoods"]["y"])
    z_bits = -torch.log2(out["likelihoods"]["z"])
    bpp = (y_bits.sum() + z_bits.sum()) / (b * h * w)
    weighted_bpp = bpp
    if quality_weights is not None:
        table = quality_weights.to(x.dtype)
        weight, z_weight = table[qmap], table[qmap.flatten(1).amax(1)]  # (B, h/16, w/16), (B,)
        lam = lam * weight
        weighted_bpp = ((y_bits.sum(1) * weight).sum() + (z_bits.flatten(1).sum(1) * z_weight).sum()) / (b * h * w)
    lam = lam.repeat_interleave(LATENT_STRIDE, 1).repeat_interleave(LATENT_STRIDE, 2)[:, None]
    se = (out["x_hat"] - x).pow(2)
    distortion = (lam * 255.0**2 * se).mean()
    mse = se.mean()
    return distortion + weighted_bpp, {"bpp": bpp.item(), "mse": mse.item()}


def balanced_quality_weights(val: dict, lambdas, alpha: float) -> list[float]:
    """Per-quality loss weights w_q ∝ L_q^-alpha (mean 1), L_q = bpp + λ·255²·MSE at quality q
    from a validation table ({"q1": {"bpp", "psnr"}, ...}).

    Why: with one loss summed over qualities, a quality's pull on the shared
    transforms grows with its loss, and L_q rises ~29x from q1 to q8, so the
    transforms serve the top qualities first. BD-rate weighs every quality's
    *relative* rate alike; dividing by L_q (alpha 1) makes the training do so.
    """
    losses = [val[f"q{q + 1}"]["bpp"] + lam * 255.0**2 * 10 ** (-val[f"q{q + 1}"]["psnr"] / 10)
              for q, lam in enumerate(lambdas)]
    raw = [loss ** -alpha for loss in losses]
    return [r * len(raw) / sum(raw) for r in raw]


@torch.no_grad()
def validate(net: SDCNet, images, qualities=None) -> dict:
    """Estimated bpp (rounded latents, exact likelihoods) and PSNR on whole images
    (default: qualities 1, 4, 8 and the top one, 0-based indexes)."""
    if qualities is None:
        qualities = sorted({q for q in (0, 3, 7) if q < net.num_qualities} | {net.num_qualities - 1})
    net.eval()
    results = {}
    for q in qualities:
        bpps, psnrs = [], []
        for img in images:
            _, h, w = img.shape
            h, w = h - h % PAD_MULTIPLE, w - w % PAD_MULTIPLE
            x = img[None, :, :h, :w].float() / 255.0
            qmap = torch.full((1, h // LATENT_STRIDE, w // LATENT_STRIDE), q, dtype=torch.long)
            out = net(x, qmap)
            bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
            bpps.append(bits.item() / (h * w))
            mse = (out["x_hat"].clamp(0, 1) - x).pow(2).mean().item()
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-12)))
        results[f"q{q + 1}"] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
    net.train()
    return results


def learning_rate(step: int, progress: float, base: float, warmup: int = 200, decay_share: float = 0.3) -> float:
    """Warm-up over the first `warmup` steps, constant, then cosine decay to base/10 over the
    last `decay_share` of the run; `progress` is the share of the run done (steps or clock time)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, max(0.0, (progress - (1 - decay_share)) / decay_share))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def parse_until(text: str) -> float:
    """'HH:MM' (UTC) today, or tomorrow if already past, as a Unix time."""
    import datetime as dt

    hh, mm = (int(v) for v in text.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if end <= now:
        end += dt.timedelta(days=1)
    return end.timestamp()


def manifest_beside(path: str) -> dict:
    """The manifest that ships beside a weights file and describes it ({} if none)."""
    manifest = Path(path).with_name("manifest.json")
    if not manifest.exists():
        return {}
    meta = json.loads(manifest.read_text())
    return meta if meta.get("file") == Path(path).name else {}


def lineage_steps(training: dict | None) -> int:
    """Steps behind weights, all runs since the warm start included, from their manifest's
    training record (older manifests without a lineage: their own run's steps)."""
    return int(training.get("lineage_steps", training.get("steps", 0))) if training else 0


def _manifest_architecture(path: str) -> dict:
    return manifest_beside(path).get("architecture", {})


def manifest_lambdas(path: str) -> list[float] | None:
    return _manifest_architecture(path).get("lambdas")


def manifest_context_slices(path: str) -> int:
    return int(_manifest_architecture(path).get("context_slices", 0))


def parse_positions(text: str) -> tuple[int, ...]:
    """'1,3' -> (1, 3); '3,1,3' -> (1, 3, 3) (two blocks at 3); '' or 'none' -> ()."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        return tuple(sorted(int(v) for v in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positions such as 1,3, not {text!r}") from None


def trained_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A weights file's tensors that training starts from: without what export derives
    (the entropy models' tables, the integer copies for the coder)."""
    return {k: v for k, v in tensors.items() if not k.endswith(ENTROPY_TABLE_KEYS) and not k.startswith("int_")}


def init_weights(net: SDCNet, path: str, sample: torch.Tensor | None = None) -> None:
    """Start `net` from a weights file: gains carried over to this ladder, y widened to net.M.

    sample: a few training crops in [0, 1], used to calibrate new channels when widening.
    """
    from safetensors.torch import load_file

    state = trained_tensors(load_file(path))
    old_lambdas = manifest_lambdas(path) or list(net.lambdas[: state["log_gain"].shape[0]])
    new_lambdas = list(net.lambdas)
    if len(old_lambdas) != state["log_gain"].shape[0]:
        raise SystemExit(f"{path} has {state['log_gain'].shape[0]} gain vectors but its manifest lists "
                         f"{len(old_lambdas)} λs")
    same = len(old_lambdas) == len(new_lambdas) and np.allclose(old_lambdas, new_lambdas, rtol=1e-4)
    extends = len(old_lambdas) < len(new_lambdas) and np.allclose(old_lambdas, new_lambdas[: len(old_lambdas)], rtol=1e-4)
    shrinks = len(new_lambdas) < len(old_lambdas) and np.allclose(old_lambdas[: len(new_lambdas)], new_lambdas, rtol=1e-4)
    if shrinks:  # the top qualities dropped: the others keep their gains
        carry = lambda g: g[: len(new_lambdas)]  # noqa: E731
        print(f"qualities {len(new_lambdas) + 1}..{len(old_lambdas)} dropped", flush=True)
    elif extends:  # qualities added on top: the old ones keep their gains
        carry = lambda g: extend_log_gains(g, old_lambdas, new_lambdas)  # noqa: E731
        print(f"qualities {len(old_lambdas) + 1}..{len(new_lambdas)} added (λ up to {new_lambdas[-1]:g}), "
              "their gains extrapolated", flush=True)
    elif not same:
        carry = lambda g: remap_log_gains(g, old_lambdas, new_lambdas)  # noqa: E731
        print(f"gains remapped from λ {old_lambdas[0]:g}..{old_lambdas[-1]:g} to {new_lambdas[0]:g}..{new_lambdas[-1]:g}",
              flush=True)
    if not same:
        for name in GAIN_NAMES:
            state[name] = carry(state[name])
    file_N, file_M = state["g_a.0.weight"].shape[0], state["g_a.6.weight"].shape[0]
    if file_N != net.N or file_M > net.M:
        raise SystemExit(f"{path} is an N={file_N}, M={file_M} network; it can start N={file_N} networks "
                         f"with M >= {file_M}, not N={net.N}, M={net.M}")
    if file_M != net.M:
        from sdc.training.widen import widen_state

        try:
            state = widen_state(state, net.N, file_M, net.M, manifest_context_slices(path), net.context_slices, sample)
        except ValueError as exc:
            raise SystemExit(f"cannot widen {path}: {exc}") from None
        print(f"latent widened from {file_M} to {net.M} channels ({net.context_slices}-slice context)", flush=True)
    file_width = g_s_width_in(state)
    if file_width > net.g_s_width:
        raise SystemExit(f"{path} has a g_s {file_width} channels wide; it can start networks with --g-s-width >= "
                         f"{file_width}, not {net.g_s_width}")
    if file_width < net.g_s_width:
        from sdc.training.widen_synthesis import widen_synthesis_state

        state = widen_synthesis_state(state, net.g_s_width)
        print(f"g_s widened from {file_width} to {net.g_s_width} channels", flush=True)
    for key, dropped in undeclared_blocks(state, net.g_a_res, net.g_s_res, net.g_s_pointwise):
        transform, kind = BLOCK_KEYS[key]
        raise SystemExit(f"{path} has {transform} {kind} blocks after {dropped}; keep them with "
                         f"--{key.replace('_', '-')}")
    if has_bypass(state) and not net.bypass:
        raise SystemExit(f"{path} has a patch bypass; keep it with --bypass")
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(ENTROPY_TABLE_KEYS)]
    print(f"init from {path}; not in file: {missing or 'nothing'}; ignored: {unexpected or 'nothing'}", flush=True)


DEFAULT_ARCH = {"N": 64, "M": 96, "context_slices": 4, "num_qualities": DEFAULT_NUM_QUALITIES}


def resolve_architecture(args, ckpt: dict | None) -> None:
    """Fill --N/--M/--context-slices/--num-qualities left unset: from the run's checkpoint,
    else from the manifest beside --init, else DEFAULT_ARCH (so resuming needs no flags)."""
    if ckpt is not None:
        known = dict(ckpt.get("config", {}))
    elif args.init:
        known = dict(_manifest_architecture(args.init))
    else:
        known = {}
    if declared_num_qualities(known):
        known["num_qualities"] = declared_num_qualities(known)
    for key in DEFAULT_ARCH:
        if getattr(args, key) is None:
            setattr(args, key, int(known.get(key, DEFAULT_ARCH[key])))
    for key in BLOCK_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, tuple(known.get(key, ())))
    if args.bypass is None:
        args.bypass = bool(known.get("bypass", False))
    if args.g_s_width is None:
        args.g_s_width = int(known.get("g_s_width") or args.N)


# Parts that start at zero in a trained model (context, patch bypass, residual
# blocks): they learn at --context-lr-scale x the LR.
FAST_PREFIXES = ("context.", "g_a.bypass.", "g_s.bypass.", G_A_BLOCK_KEY, G_S_BLOCK_KEY, G_S_POINTWISE_KEY)


def parameter_groups(net: SDCNet) -> tuple[list, list, list]:
    """(main, fast, aux) parameters: the fast ones start at zero (FAST_PREFIXES); aux are
    the entropy bottleneck's quantiles, trained by their own loss."""
    main, fast, aux = [], [], []
    for name, param in net.named_parameters():
        (aux if name.endswith(".quantiles") else fast if name.startswith(FAST_PREFIXES) else main).append(param)
    return main, fast, aux


def adam(params, lr: float, fused: bool = True) -> torch.optim.Adam:
    """Adam with the fused CPU kernel (one pass over all parameters instead of a
    loop of small ops): benchmarks/results/train_step.json."""
    return torch.optim.Adam(params, lr=lr, fused=fused)


def keep_fused(opt: torch.optim.Optimizer) -> None:
    """Loading a state dict brings back the saved groups' options (older runs: not fused)."""
    for group in opt.param_groups:
        group["fused"], group["foreach"] = True, None


class CompiledForward:
    """The network's forward through torch.compile (inductor), for training.

    With fused Adam, about 8% (1 thread) and 14% (2 threads) less time per step here
    (mean over interleaved steps, benchmarks/results/train_step.json: it fuses
    the GDN, gain and likelihood element-wise ops that eager runs one by
    one), after a one-off compile of about 90 s. Inductor needs a C++ compiler; if
    the first call fails for any reason the run says so and goes on eagerly.
    Only the forward (and its backward) is compiled: the parameters are the
    net's own, so checkpoints and validation use `net` as before.
    """

    def __init__(self, net: SDCNet):
        self.net, self.fn, self.tried = net, torch.compile(net), False

    def __call__(self, x: torch.Tensor, qmap: torch.Tensor) -> dict:
        if self.tried:
            return self.fn(x, qmap)
        self.tried = True
        try:
            return self.fn(x, qmap)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, loudly
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            print(f"torch.compile failed ({type(exc).__name__}: {first}); training without it", flush=True)
            self.fn = self.net
            return self.fn(x, qmap)


def training_step(forward, net: SDCNet, opt, aux_opt, params, x: torch.Tensor, qmap: torch.Tensor,
                  quality_weights: torch.Tensor | None = None):
    """One optimisation step on a batch: rate-distortion loss, clipped gradients, then the
    entropy bottleneck's quantile (aux) loss (skipped when the bottleneck is frozen).
    Returns (loss, stats, aux loss)."""
    out = forward(x, qmap)
    loss, stats = rd_loss(out, x, qmap, quality_weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    aux = net.aux_loss()
    if aux.requires_grad:
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
    return loss, stats, aux


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="run directory (checkpoint + log)")
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--N", type=int, help=f"channels of the transforms (default: the run's, else --init's, else {DEFAULT_ARCH['N']})")
    p.add_argument("--M", type=int, help=f"channels of y (default: as --N; else {DEFAULT_ARCH['M']}); "
                   "more than --init's widens it")
    p.add_argument("--num-qualities", type=int,
                   help="qualities (gain vectors) on the λ ladder x2.4 from 0.00025; more than --init's adds "
                        f"qualities on top (default: the run's, else --init's, else {DEFAULT_NUM_QUALITIES})")
    p.add_argument("--gains-only-from", type=int, metavar="Q",
                   help="train only the gains of qualities Q.. on samples of those qualities, everything else "
                        "frozen (lower qualities keep their exact bytes): for qualities added with --num-qualities")
    p.add_argument("--context-slices", type=int,
                   help="channel slices of the 1x1 channel-conditional context, 0: none "
                   f"(default: as --N; else {DEFAULT_ARCH['context_slices']})")
    p.add_argument("--g-s-res", type=parse_positions,
                   help="positions in g_s after which a residual block sits, e.g. 1,3 (1: after the first inverse "
                   "GDN, at 1/8 resolution; 3: 1/4; 5: 1/2; a repeated position stacks blocks there: 1,3,3); "
                   "blocks missing from --init start as the identity "
                   "(default: the run's, else --init's, else none)")
    p.add_argument("--g-a-res", type=parse_positions,
                   help="positions in g_a after which a residual block sits, e.g. 5 (1: after the first GDN, at "
                   "1/2 resolution; 3: 1/4; 5: 1/8); blocks missing from --init start as the identity "
                   "(default: the run's, else --init's, else none)")
    p.add_argument("--g-s-pointwise", type=parse_positions,
                   help="positions in g_s after which a pointwise block sits (a residual block of 1x1 "
                   "convolutions: per-pixel capacity at about a ninth of a 3x3 block's cost), after any "
                   "residual blocks there, e.g. 5 (1/2 resolution); blocks missing from --init start as the "
                   "identity (default: the run's, else --init's, else none)")
    p.add_argument("--bypass", action=argparse.BooleanOptionalAction, default=None,
                   help="add a linear 16x16 patch path beside g_a and g_s, starting at zero "
                        "(default: as the run or --init has it)")
    p.add_argument("--g-s-width", type=int,
                   help="hidden channels of g_s (default: the run's, else --init's, else as --N); more than "
                        "--init's widens g_s keeping what it does (sdc.training.widen_synthesis)")
    p.add_argument("--context-lr-scale", type=float, default=5.0,
                   help="learning-rate multiplier of the parts that start from zero in a trained model: "
                        "the context, the patch bypass and residual blocks")
    p.add_argument("--init", help="safetensors to start from when the run has no checkpoint")
    p.add_argument("--steps", type=int, default=100_000, help="planned total steps (sets the LR decay)")
    p.add_argument("--until", help="wall-clock end, e.g. 07:35 (UTC, today): the LR schedule follows elapsed time "
                   "instead of steps, so a busy machine still finishes its decay before the deadline")
    p.add_argument("--stop-after-cpu-seconds", type=float, default=None, help="stop after this much process CPU time")
    # 256-pixel crops, batch 4: the same pixels per step as 128/16, but z is 4x4
    # per crop rather than 2x2, so h_s learns on latents shaped like real images'
    # (measured against 128/16 in docs/experiments.md).
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--mixed-share", type=float, default=0.3)
    p.add_argument("--quality-balance", type=float, default=None, metavar="ALPHA",
                   help="weigh each quality's loss by L_q^-ALPHA (L_q: its loss on val at the start of the run), "
                        "so the shared transforms serve all qualities, not mostly the top ones; 0: the plain sum "
                        "(default: the run's, else 1; measured in docs/experiments.md)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the crop order (default: the run's; for a new run, the --init weights' lineage "
                        "steps, so each continuation of the shipped weights sees new crops; else 0)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="run the training forward through torch.compile (default): with fused Adam about 8%% "
                        "(1 thread) to 14%% (2 threads) less time per step, after a one-off compile of about "
                        "90 s; --no-compile for runs of a few steps")
    args = p.parse_args(argv)
    if args.quality_balance is not None and args.quality_balance < 0:
        raise SystemExit(f"--quality-balance {args.quality_balance:g}: expected 0 (the plain sum) or more")

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run / "ckpt.pt", run / "log.jsonl"
    ck = torch.load(ckpt_path, weights_only=True) if ckpt_path.exists() else None
    resolve_architecture(args, ck)
    if args.context_slices > 1 and args.M % args.context_slices:
        raise SystemExit(f"--M {args.M} channels do not split into --context-slices {args.context_slices}")

    try:
        net = SDCNet.from_config(vars(args))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    lowest = 0
    if args.gains_only_from is not None:
        if not 1 <= args.gains_only_from <= net.num_qualities:
            raise SystemExit(f"--gains-only-from {args.gains_only_from}: qualities are 1..{net.num_qualities}")
        lowest = args.gains_only_from - 1
    base_params, ctx_params, aux_params = parameter_groups(net)
    params = base_params + ctx_params
    opt = adam(base_params, args.lr)
    aux_opt = adam(aux_params, 1e-3)

    def add_context_group() -> None:
        if ctx_params:
            opt.add_param_group({"params": ctx_params, "lr_scale": args.context_lr_scale})

    step, cpu_used = 0, 0.0
    if ck is not None:
        run_lambdas = ck.get("config", {}).get("lambdas")
        if run_lambdas and (len(run_lambdas) != len(net.lambdas) or not np.allclose(run_lambdas, net.lambdas, rtol=1e-4)):
            raise SystemExit(f"{ckpt_path} was trained with other λs ({len(run_lambdas)} qualities, "
                             f"{run_lambdas[0]:g}..{run_lambdas[-1]:g}); export it and start a new run with --init "
                             "to carry its gains over")
        run_slices = ck.get("config", {}).get("context_slices", 0)
        if run_slices not in (0, args.context_slices):
            raise SystemExit(f"{ckpt_path} has a {run_slices}-slice context; resume with --context-slices {run_slices}")
        for key, (transform, kind) in BLOCK_KEYS.items():
            run_res = tuple(ck.get("config", {}).get(key, ()))
            if run_res != getattr(args, key):
                raise SystemExit(f"{ckpt_path} has {transform} {kind} blocks after {list(run_res) or 'none'}; resume "
                                 f"without --{key.replace('_', '-')} (or start a new run with --init to add blocks)")
        if bool(ck.get("config", {}).get("bypass", False)) != args.bypass:
            raise SystemExit(f"{ckpt_path} {'has a' if args.bypass is False else 'has no'} patch bypass; resume without "
                             "--bypass/--no-bypass (or start a new run with --init to add one)")
        run_widths = {key: ck.get("config", {}).get(key, getattr(args, key)) for key in ("N", "M")}
        run_widths["g_s_width"] = ck.get("config", {}).get("g_s_width") or run_widths["N"]
        if run_widths != {"N": args.N, "M": args.M, "g_s_width": args.g_s_width}:
            raise SystemExit(f"{ckpt_path} is an N={run_widths['N']}, M={run_widths['M']} network with a g_s "
                             f"{run_widths['g_s_width']} wide; resume with --N {run_widths['N']} --M {run_widths['M']} "
                             f"--g-s-width {run_widths['g_s_width']} (or start a new run with --init to widen it)")
        net.load_state_dict({k: v for k, v in ck["model"].items() if not k.endswith(ENTROPY_TABLE_KEYS)}, strict=False)
        if len(ck["opt"]["param_groups"]) == 2:  # the run already trains its context
            add_context_group()
            opt.load_state_dict(ck["opt"])
        else:  # a context joins a run that had none: it starts at zero, with fresh Adam state
            opt.load_state_dict(ck["opt"])
            add_context_group()
        aux_opt.load_state_dict(ck["aux_opt"])
        keep_fused(opt)
        keep_fused(aux_opt)
        step, cpu_used = ck["step"], ck.get("cpu_seconds", 0.0)
        args.init = ck.get("config", {}).get("init") or args.init  # keep the run's lineage in later checkpoints
        init_training = ck.get("config", {}).get("init_training")
        if args.seed is None:
            args.seed = ck.get("config", {}).get("seed", 0)
        run_balance = ck.get("config", {}).get("quality_balance", 0.0)
        if args.quality_balance is not None and args.quality_balance != run_balance:
            raise SystemExit(f"{ckpt_path} was trained with --quality-balance {run_balance:g}; resume without it "
                             "(or start a new run with --init)")
        args.quality_balance, quality_weights = run_balance, ck.get("config", {}).get("quality_weights")
        print(f"resumed {ckpt_path} at step {step}", flush=True)

    train_images = load_images(Path(args.train), args.crop)
    val_images = load_images(Path(args.val), PAD_MULTIPLE)
    print(f"{len(train_images)} training images, {len(val_images)} validation images in memory", flush=True)
    if ck is None:
        add_context_group()
        # What the --init weights had been trained for when this run started: the
        # file beside them may be replaced later (by this run's own export).
        init_training = manifest_beside(args.init).get("training") if args.init else None
        if args.seed is None:
            # Every run counts its steps from 0 and draws crops from Random(seed * 1_000_003 + step):
            # with one fixed seed, each session's continuation of the shipped weights saw the same
            # crops in the same order. Seeding by the steps behind the --init weights gives new ones.
            args.seed = lineage_steps(init_training)
        if args.init:
            sample = random_batch(train_images, 16, args.crop, random.Random(args.seed))
            init_weights(net, args.init, sample)
        args.quality_balance = 1.0 if args.quality_balance is None else args.quality_balance
        quality_weights = None
        if args.quality_balance:
            start = validate(net, val_images, range(net.num_qualities))
            quality_weights = balanced_quality_weights(start, net.lambdas, args.quality_balance)
    print(f"crop seed {args.seed}", flush=True)
    if quality_weights is not None:
        print("quality weights " + " ".join(f"q{q + 1} {w:.3f}" for q, w in enumerate(quality_weights)), flush=True)
    weight_table = torch.tensor(quality_weights) if quality_weights is not None else None
    rng = random.Random(args.seed * 1_000_003 + step)
    torch.manual_seed(args.seed * 1_000_003 + step)

    def save(reason: str) -> None:
        state = {
            "model": net.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
            "step": step, "cpu_seconds": cpu_used + time.process_time() - cpu0,
            "config": {"N": args.N, "M": args.M, "init": args.init, "init_training": init_training, "seed": args.seed,
                       "crop": args.crop, "batch": args.batch,
                       "num_qualities": net.num_qualities, "lambdas": list(net.lambdas),
                       "context_slices": args.context_slices,
                       "bypass": args.bypass, "g_s_width": args.g_s_width,
                       "quality_balance": args.quality_balance, "quality_weights": quality_weights,
                       **{key: list(getattr(args, key)) for key in BLOCK_KEYS}},
        }
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)
        print(f"[{time.strftime('%H:%M:%S')}] checkpoint at step {step} ({reason})", flush=True)

    stop = {"flag": False}
    # Ctrl-C / SIGTERM finish the step, validate and checkpoint; the previous
    # handlers come back afterwards (main() is also called in-process by tests).
    previous = {sig: signal.signal(sig, lambda *_: stop.update(flag=True)) for sig in (signal.SIGTERM, signal.SIGINT)}

    cpu0, last_ckpt, t_log = time.process_time(), time.time(), time.time()
    deadline = parse_until(args.until) if args.until else None
    t_start, step_start = time.time(), step

    def run_progress() -> float:
        """Share of the run done: by the clock with --until, else by steps."""
        if deadline is not None:
            return (time.time() - t_start) / (deadline - t_start)
        return step / args.steps

    if args.gains_only_from is not None:
        train_only_gains_from(net, lowest)
    forward = CompiledForward(net) if args.compile else net
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    with open(log_path, "a") as log:
        while step < args.steps and not stop["flag"]:
            if deadline is not None and time.time() >= deadline:
                break
            lr = learning_rate(step, run_progress(), args.lr, warmup=0 if deadline is not None and step_start else 200)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            x = random_batch(train_images, args.batch, args.crop, rng)
            qmap = random_quality_maps(args.batch, args.crop // LATENT_STRIDE, net.num_qualities, rng, args.mixed_share,
                                       lowest)
            loss, stats, aux = training_step(forward, net, opt, aux_opt, params, x, qmap, weight_table)
            step += 1
            acc["loss"] += loss.item(); acc["bpp"] += stats["bpp"]; acc["mse"] += stats["mse"]; acc["n"] += 1

            if step % args.log_every == 0:
                n = acc["n"]
                rec = {
                    "step": step, "lr": lr, "loss": acc["loss"] / n, "bpp": acc["bpp"] / n,
                    "psnr": 10 * math.log10(1 / max(acc["mse"] / n, 1e-12)), "aux": aux.item(),
                    "sec_per_step": (time.time() - t_log) / n,
                    "cpu_seconds": cpu_used + time.process_time() - cpu0,
                }
                log.write(json.dumps(rec) + "\n"); log.flush()
                eta_min = ((deadline - time.time()) if deadline is not None
                           else (args.steps - step) * rec["sec_per_step"]) / 60
                print(f"step {step:6d} ({100 * run_progress():4.1f}%, eta {eta_min:5.0f} min)  "
                      f"lr {lr:.2e}  loss {rec['loss']:.3f}  bpp {rec['bpp']:.3f}  "
                      f"psnr {rec['psnr']:.2f}  {rec['sec_per_step']:.2f}s/step", flush=True)
                acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
                t_log = time.time()
            if step % args.val_every == 0:
                val = validate(net, val_images)
                log.write(json.dumps({"step": step, "val": val}) + "\n"); log.flush()
                print("val", json.dumps(val), flush=True)
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save("periodic"); last_ckpt = time.time()
            if args.stop_after_cpu_seconds and cpu_used + time.process_time() - cpu0 > args.stop_after_cpu_seconds:
                break
        val = validate(net, val_images)
        log.write(json.dumps({"step": step, "val": val, "final": True}) + "\n")
        print("val", json.dumps(val), flush=True)
    save("end")
    for sig, handler in previous.items():
        signal.signal(sig, handler)


if __name__ == "__main__":
    main()
