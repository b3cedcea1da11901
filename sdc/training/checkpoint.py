"""A run's checkpoint (``ckpt.pt``): what it must match to be resumed, resuming from it, and
writing it.

It holds the model, both optimizers' state, the step, the CPU seconds spent and the
run's config; the config makes resuming need no options and keeps what the run was
started with (its --init lineage, crop seed and quality weights).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdc.models.architecture import BLOCK_KEYS, Architecture
from sdc.training.network import SDCNet
from sdc.training.optim import Optimizers, keep_fused
from sdc.training.warm_start import ENTROPY_TABLE_KEYS


@dataclass
class RunStart:
    """Where a run's training starts: its step and the CPU seconds its checkpoints have spent,
    the training record of its --init weights when the run began (for the exported lineage),
    and its per-quality loss weights (None: the plain sum)."""

    step: int
    cpu_used: float
    init_training: dict | None
    quality_weights: list[float] | None


def load_checkpoint(path: Path) -> dict | None:
    """The run's checkpoint, or None for a new run."""
    return torch.load(path, weights_only=True) if path.exists() else None


def check_checkpoint_matches(ck: dict, args, net: SDCNet, ckpt_path: Path) -> None:
    """Stop unless the requested network is the checkpoint's: a run resumes in place, so other
    λs, context slices, blocks, bypass or widths go through export and a new run with --init,
    which carries the weights over (:func:`sdc.training.warm_start.init_weights`)."""
    run = Architecture.from_dict(ck.get("config", {}))
    run_lambdas = run.lambdas
    if run_lambdas and (len(run_lambdas) != len(net.lambdas) or not np.allclose(run_lambdas, net.lambdas, rtol=1e-4)):
        raise SystemExit(f"{ckpt_path} was trained with other λs ({len(run_lambdas)} qualities, "
                         f"{run_lambdas[0]:g}..{run_lambdas[-1]:g}); export it and start a new run with --init "
                         "to carry its gains over")
    if run.context_slices not in (0, args.context_slices):
        raise SystemExit(f"{ckpt_path} has a {run.context_slices}-slice context; resume with --context-slices "
                         f"{run.context_slices}")
    for key, (transform, kind) in BLOCK_KEYS.items():
        run_res = getattr(run, key)
        if run_res != getattr(args, key):
            raise SystemExit(f"{ckpt_path} has {transform} {kind} blocks after {list(run_res) or 'none'}; resume "
                             f"without --{key.replace('_', '-')} (or start a new run with --init to add blocks)")
    if run.bypass != args.bypass:
        raise SystemExit(f"{ckpt_path} {'has a' if args.bypass is False else 'has no'} patch bypass; resume without "
                         "--bypass/--no-bypass (or start a new run with --init to add one)")
    run_widths = {"N": run.N, "M": run.M, "g_s_width": run.g_s_width or run.N}
    if run_widths != {"N": args.N, "M": args.M, "g_s_width": args.g_s_width}:
        raise SystemExit(f"{ckpt_path} is an N={run_widths['N']}, M={run_widths['M']} network with a g_s "
                         f"{run_widths['g_s_width']} wide; resume with --N {run_widths['N']} --M {run_widths['M']} "
                         f"--g-s-width {run_widths['g_s_width']} (or start a new run with --init to widen it)")


def resume_from_checkpoint(ck: dict, args, net: SDCNet, optimizers: Optimizers, ckpt_path: Path) -> RunStart:
    """Load the network, both optimizers and the step from the checkpoint, and take the run's
    --init, seed and quality balance from its config, so the run goes on as it started
    (an explicit --seed still applies; another --quality-balance stops it)."""
    config = ck.get("config", {})
    net.load_state_dict({k: v for k, v in ck["model"].items() if not k.endswith(ENTROPY_TABLE_KEYS)}, strict=False)
    if len(ck["opt"]["param_groups"]) == 2:  # the run already trains its context
        optimizers.add_fast_group()
        optimizers.main.load_state_dict(ck["opt"])
    else:  # a context joins a run that had none: it starts at zero, with fresh Adam state
        optimizers.main.load_state_dict(ck["opt"])
        optimizers.add_fast_group()
    optimizers.aux.load_state_dict(ck["aux_opt"])
    keep_fused(optimizers.main)
    keep_fused(optimizers.aux)
    step, cpu_used = ck["step"], ck.get("cpu_seconds", 0.0)
    args.init = config.get("init") or args.init  # keep the run's lineage in later checkpoints
    init_training = config.get("init_training")
    if args.seed is None:
        args.seed = config.get("seed", 0)
    run_balance = config.get("quality_balance", 0.0)
    if args.quality_balance is not None and args.quality_balance != run_balance:
        raise SystemExit(f"{ckpt_path} was trained with --quality-balance {run_balance:g}; resume without it "
                         "(or start a new run with --init)")
    args.quality_balance, quality_weights = run_balance, config.get("quality_weights")
    print(f"resumed {ckpt_path} at step {step}", flush=True)
    return RunStart(step, cpu_used, init_training, quality_weights)


def checkpoint_config(args, net: SDCNet, start: RunStart) -> dict:
    """The run's config as its checkpoint keeps it: the architecture, to resume without options
    and to export; the lineage, seed and quality weights, for the run to go on as it started."""
    return {"N": args.N, "M": args.M, "init": args.init, "init_training": start.init_training, "seed": args.seed,
            "crop": args.crop, "batch": args.batch,
            "num_qualities": net.num_qualities, "lambdas": list(net.lambdas),
            "context_slices": args.context_slices,
            "bypass": args.bypass, "g_s_width": args.g_s_width,
            "quality_balance": args.quality_balance, "quality_weights": start.quality_weights,
            **{key: list(getattr(args, key)) for key in BLOCK_KEYS}}


def save_checkpoint(path: Path, net: SDCNet, optimizers: Optimizers, step: int, cpu_seconds: float, config: dict,
                    reason: str) -> None:
    """Write the checkpoint through a temporary file and a rename, so an interrupted write
    leaves the previous checkpoint whole."""
    state = {
        "model": net.state_dict(), "opt": optimizers.main.state_dict(), "aux_opt": optimizers.aux.state_dict(),
        "step": step, "cpu_seconds": cpu_seconds, "config": config,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    print(f"[{time.strftime('%H:%M:%S')}] checkpoint at step {step} ({reason})", flush=True)
