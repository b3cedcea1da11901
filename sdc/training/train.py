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

This module holds the command line, the run's set-up and its step loop; the
pieces live beside it: :mod:`sdc.training.data` (images, crops, quality maps),
:mod:`sdc.training.objective` (loss, quality weights, validation, LR schedule),
:mod:`sdc.training.warm_start` (--init weights and manifests),
:mod:`sdc.training.optim` (parameter groups, Adam, the training step) and
:mod:`sdc.training.checkpoint` (resuming and saving).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import torch

from sdc.training.checkpoint import (RunStart, check_checkpoint_matches, checkpoint_config, load_checkpoint,
                                     resume_from_checkpoint, save_checkpoint)
from sdc.training.data import load_images, random_batch, random_quality_maps
from sdc.geometry import LATENT_STRIDE, PAD_MULTIPLE
from sdc.training.network import DEFAULT_NUM_QUALITIES, SDCNet
from sdc.training.objective import balanced_quality_weights, learning_rate, validate
from sdc.training.optim import (CompiledForward, Optimizers, make_optimizers, set_learning_rate, train_only_gains_from,
                                training_step)
from sdc.training.warm_start import DEFAULT_ARCH, init_weights, lineage_steps, manifest_beside, resolve_architecture


def parse_positions(text: str) -> tuple[int, ...]:
    """'1,3' -> (1, 3); '3,1,3' -> (1, 3, 3) (two blocks at 3); '' or 'none' -> ()."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    try:
        return tuple(sorted(int(v) for v in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positions such as 1,3, not {text!r}") from None


def parse_until(text: str) -> float:
    """'HH:MM' (UTC) today, or tomorrow if already past, as a Unix time."""
    import datetime as dt

    hh, mm = (int(v) for v in text.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if end <= now:
        end += dt.timedelta(days=1)
    return end.timestamp()


def parse_args(argv=None) -> argparse.Namespace:
    """The command line. Architecture options left unset stay None here, to be filled from the
    run's checkpoint or the --init manifest (:func:`resolve_architecture`)."""
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
    return args


def build_network(args) -> SDCNet:
    """The network the resolved options describe; options that cannot make one stop the run
    with a message rather than a traceback."""
    if args.context_slices > 1 and args.M % args.context_slices:
        raise SystemExit(f"--M {args.M} channels do not split into --context-slices {args.context_slices}")
    try:
        return SDCNet.from_config(vars(args))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def lowest_trained_quality(args, net: SDCNet) -> int:
    """The lowest 0-based quality the training samples draw: 0, or with --gains-only-from Q the
    first of the qualities whose gains learn, as only their samples teach them."""
    if args.gains_only_from is None:
        return 0
    if not 1 <= args.gains_only_from <= net.num_qualities:
        raise SystemExit(f"--gains-only-from {args.gains_only_from}: qualities are 1..{net.num_qualities}")
    return args.gains_only_from - 1


def load_training_data(args) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Training images (at least a crop on each side) and validation images (at least the
    padding multiple), decoded once into memory."""
    train_images = load_images(Path(args.train), args.crop)
    val_images = load_images(Path(args.val), PAD_MULTIPLE)
    print(f"{len(train_images)} training images, {len(val_images)} validation images in memory", flush=True)
    return train_images, val_images


def start_new_run(args, net: SDCNet, optimizers: Optimizers, train_images, val_images) -> RunStart:
    """A run without a checkpoint: the network from --init (or as built), the crop seed, and
    the quality weights measured on val now, which the run then keeps to its end."""
    optimizers.add_fast_group()
    # What the --init weights had been trained for when this run started: the
    # file beside them may be replaced later (by this run's own export).
    init_training = manifest_beside(args.init).get("training") if args.init else None
    if args.seed is None:
        # Every run counts its steps from 0 and draws crops from Random(seed * 1_000_003 + step):
        # with one fixed seed, each continuation of the shipped weights would see the same
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
    return RunStart(0, 0.0, init_training, quality_weights)


def seed_training(args, start: RunStart) -> random.Random:
    """Print the crop seed and quality weights, and seed the crop and quality-map draws (the
    returned generator) and torch's (the training noise) by the seed and the starting step:
    the same seed and start train bit-identically, and a resumed run draws no repeat of its
    first crops."""
    print(f"crop seed {args.seed}", flush=True)
    if start.quality_weights is not None:
        print("quality weights " + " ".join(f"q{q + 1} {w:.3f}" for q, w in enumerate(start.quality_weights)),
              flush=True)
    rng = random.Random(args.seed * 1_000_003 + start.step)
    torch.manual_seed(args.seed * 1_000_003 + start.step)
    return rng


class StopSignals:
    """Ctrl-C / SIGTERM finish the step, validate and checkpoint; the previous
    handlers come back afterwards (main() is also called in-process by tests)."""

    def __init__(self):
        self.requested = False
        self.previous = {sig: signal.signal(sig, self._request) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _request(self, *_) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class RunClock:
    """The run's time: CPU seconds including its earlier sessions (logged and checkpointed), and
    the share of the run done, by the clock with --until (so a busy machine still finishes its
    LR decay before the deadline), else by steps."""

    def __init__(self, args, start: RunStart):
        self.cpu_used, self.cpu0 = start.cpu_used, time.process_time()
        self.deadline = parse_until(args.until) if args.until else None
        self.t_start, self.step_start, self.steps = time.time(), start.step, args.steps

    def cpu_seconds(self) -> float:
        return self.cpu_used + time.process_time() - self.cpu0

    def progress(self, step: int) -> float:
        """Share of the run done: by the clock with --until, else by steps."""
        if self.deadline is not None:
            return (time.time() - self.t_start) / (self.deadline - self.t_start)
        return step / self.steps

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def warmup(self) -> int:
        """LR warm-up steps: none when a --until session resumes a run, whose schedule follows
        the clock from this session's start."""
        return 0 if self.deadline is not None and self.step_start else 200

    def minutes_left(self, step: int, sec_per_step: float) -> float:
        return ((self.deadline - time.time()) if self.deadline is not None
                else (self.steps - step) * sec_per_step) / 60


@dataclass
class TrainingRun:
    """What the step loop, validation and checkpoints of a run share."""

    args: argparse.Namespace
    net: SDCNet
    forward: Callable  # the net, or its compiled forward
    optimizers: Optimizers
    train_images: list
    val_images: list
    lowest: int
    start: RunStart
    clock: RunClock
    stop: StopSignals
    ckpt_path: Path
    weight_table: torch.Tensor | None = field(init=False)  # the start's quality weights, as rd_loss takes them

    def __post_init__(self):
        weights = self.start.quality_weights
        self.weight_table = torch.tensor(weights) if weights is not None else None


class RunningMeans:
    """Loss, bpp and MSE summed over the steps since the last log line."""

    def __init__(self):
        self.loss, self.bpp, self.mse, self.n = 0.0, 0.0, 0.0, 0

    def add(self, loss: float, stats: dict) -> None:
        self.loss += loss; self.bpp += stats["bpp"]; self.mse += stats["mse"]; self.n += 1


def train_steps(run: TrainingRun, step: int, rng: random.Random, log: TextIO) -> int:
    """Train until the planned steps, --until, --stop-after-cpu-seconds or a stop signal,
    logging every --log-every steps, validating every --val-every and checkpointing every
    --ckpt-minutes; returns the step reached."""
    args, clock, net, optimizers = run.args, run.clock, run.net, run.optimizers
    last_ckpt = t_log = time.time()
    means = RunningMeans()
    while step < args.steps and not run.stop.requested:
        if clock.past_deadline():
            break
        lr = learning_rate(step, clock.progress(step), args.lr, warmup=clock.warmup())
        set_learning_rate(optimizers.main, lr)
        x = random_batch(run.train_images, args.batch, args.crop, rng)
        qmap = random_quality_maps(args.batch, args.crop // LATENT_STRIDE, net.num_qualities, rng, args.mixed_share,
                                   run.lowest)
        loss, stats, aux = training_step(run.forward, net, optimizers.main, optimizers.aux, optimizers.params, x, qmap,
                                         run.weight_table)
        step += 1
        means.add(loss.item(), stats)
        if step % args.log_every == 0:
            log_progress(log, step, lr, means, aux.item(), time.time() - t_log, clock)
            means, t_log = RunningMeans(), time.time()
        if step % args.val_every == 0:
            log_validation(log, run, step)
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save(run, step, "periodic"); last_ckpt = time.time()
        if args.stop_after_cpu_seconds and clock.cpu_seconds() > args.stop_after_cpu_seconds:
            break
    return step


def log_progress(log: TextIO, step: int, lr: float, means: RunningMeans, aux: float, seconds: float,
                 clock: RunClock) -> None:
    """One log.jsonl record of the means since the last one, and its line on stdout."""
    n = means.n
    rec = {
        "step": step, "lr": lr, "loss": means.loss / n, "bpp": means.bpp / n,
        "psnr": 10 * math.log10(1 / max(means.mse / n, 1e-12)), "aux": aux,
        "sec_per_step": seconds / n,
        "cpu_seconds": clock.cpu_seconds(),
    }
    log.write(json.dumps(rec) + "\n"); log.flush()
    eta_min = clock.minutes_left(step, rec["sec_per_step"])
    print(f"step {step:6d} ({100 * clock.progress(step):4.1f}%, eta {eta_min:5.0f} min)  "
          f"lr {lr:.2e}  loss {rec['loss']:.3f}  bpp {rec['bpp']:.3f}  "
          f"psnr {rec['psnr']:.2f}  {rec['sec_per_step']:.2f}s/step", flush=True)


def log_validation(log: TextIO, run: TrainingRun, step: int, final: bool = False) -> None:
    """Validate on val (:func:`validate`'s default qualities) into log.jsonl and stdout; the
    record at the end of a session is marked final."""
    val = validate(run.net, run.val_images)
    record = {"step": step, "val": val, "final": True} if final else {"step": step, "val": val}
    log.write(json.dumps(record) + "\n"); log.flush()
    print("val", json.dumps(val), flush=True)


def save(run: TrainingRun, step: int, reason: str) -> None:
    """Checkpoint the run at `step` (see :mod:`sdc.training.checkpoint`)."""
    save_checkpoint(run.ckpt_path, run.net, run.optimizers, step, run.clock.cpu_seconds(),
                    checkpoint_config(run.args, run.net, run.start), reason)


def main(argv=None) -> None:
    """Set up the run in --run (resumed from its checkpoint, else started from --init or from
    scratch), train it, validate, and checkpoint at the end."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "ckpt.pt", run_dir / "log.jsonl"
    ck = load_checkpoint(ckpt_path)
    resolve_architecture(args, ck)
    net = build_network(args)
    lowest = lowest_trained_quality(args, net)
    optimizers = make_optimizers(net, args.lr, args.context_lr_scale)
    if ck is not None:
        check_checkpoint_matches(ck, args, net, ckpt_path)
        start = resume_from_checkpoint(ck, args, net, optimizers, ckpt_path)
    train_images, val_images = load_training_data(args)
    if ck is None:
        start = start_new_run(args, net, optimizers, train_images, val_images)
    rng = seed_training(args, start)

    stop = StopSignals()
    clock = RunClock(args, start)
    if args.gains_only_from is not None:
        train_only_gains_from(net, lowest)
    forward = CompiledForward(net) if args.compile else net
    run = TrainingRun(args, net, forward, optimizers, train_images, val_images, lowest, start, clock, stop, ckpt_path)
    with open(log_path, "a") as log:
        step = train_steps(run, start.step, rng, log)
        log_validation(log, run, step, final=True)
    save(run, step, "end")
    stop.restore()


if __name__ == "__main__":
    main()
