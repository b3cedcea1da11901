"""Starting training from a weights file (``--init``) and the manifest beside it.

A weights file may describe another network than the one requested: its gains are
carried over to the requested λ ladder, its latent and synthesis widened, and
anything the requested network could not hold stops the run with the option that
would keep it. The manifest also fills architecture options left unset
(:func:`resolve_architecture`), and its training record gives the run its lineage.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sdc.models.architecture import BLOCK_KEYS, Architecture
from sdc.training.layers import g_s_width_in, has_bypass, undeclared_blocks
from sdc.training.network import DEFAULT_NUM_QUALITIES, SDCNet, extend_log_gains, remap_log_gains

ENTROPY_TABLE_KEYS = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")
GAIN_NAMES = ("log_gain", "log_inv_gain", "log_z_gain")
DEFAULT_ARCH = {"N": 64, "M": 96, "context_slices": 4, "num_qualities": DEFAULT_NUM_QUALITIES}


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


def manifest_architecture(path: str) -> Architecture:
    """The architecture the manifest beside a weights file declares."""
    return Architecture.from_dict(manifest_beside(path).get("architecture", {}))


def trained_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A weights file's tensors that training starts from: without what export derives
    (the entropy models' tables, the integer copies for the coder)."""
    return {k: v for k, v in tensors.items() if not k.endswith(ENTROPY_TABLE_KEYS) and not k.startswith("int_")}


def resolve_architecture(args, ckpt: dict | None) -> None:
    """Fill --N/--M/--context-slices/--num-qualities and the other architecture options left
    unset: from the run's checkpoint, else from the manifest beside --init (both read as
    :class:`Architecture` reads them, so resuming needs no flags), else DEFAULT_ARCH (a new
    network from scratch)."""
    if ckpt is not None:
        known = Architecture.from_dict(ckpt.get("config", {}))
    elif args.init:
        known = manifest_architecture(args.init)
    else:
        known = None
    for key in DEFAULT_ARCH:
        if getattr(args, key) is None:
            setattr(args, key, int(getattr(known, key) if known else DEFAULT_ARCH[key]))
    for key in BLOCK_KEYS:
        if getattr(args, key) is None:
            setattr(args, key, getattr(known, key) if known else ())
    if args.bypass is None:
        args.bypass = known.bypass if known else False
    if args.g_s_width is None:
        args.g_s_width = int((known.g_s_width if known else None) or args.N)


def init_weights(net: SDCNet, path: str, sample: torch.Tensor | None = None) -> None:
    """Start `net` from a weights file: gains carried over to this ladder, y widened to net.M.

    sample: a few training crops in [0, 1], used to calibrate new channels when widening.
    """
    from safetensors.torch import load_file

    state = trained_tensors(load_file(path))
    carry_gains(state, path, net)
    state = widen_to_network(state, path, net, sample)
    check_blocks_kept(state, path, net)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(ENTROPY_TABLE_KEYS)]
    print(f"init from {path}; not in file: {missing or 'nothing'}; ignored: {unexpected or 'nothing'}", flush=True)


def carry_gains(state: dict[str, torch.Tensor], path: str, net: SDCNet) -> None:
    """Fit the file's gain vectors (in `state`, in place) to net's λ ladder, so each quality the
    file and the network share keeps what it learnt: the top ones dropped, new ones on top
    extrapolated, or all remapped by λ when the ladders differ otherwise."""
    old_lambdas = list(manifest_architecture(path).lambdas) or list(net.lambdas[: state["log_gain"].shape[0]])
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


def widen_to_network(state: dict[str, torch.Tensor], path: str, net: SDCNet,
                     sample: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The file's tensors widened to net's latent (M) and g_s widths, keeping what the network
    does; a file wider than the network, or of another N, stops the run, as no width is dropped."""
    file_N, file_M = state["g_a.0.weight"].shape[0], state["g_a.6.weight"].shape[0]
    if file_N != net.N or file_M > net.M:
        raise SystemExit(f"{path} is an N={file_N}, M={file_M} network; it can start N={file_N} networks "
                         f"with M >= {file_M}, not N={net.N}, M={net.M}")
    if file_M != net.M:
        from sdc.training.widen import widen_state

        try:
            state = widen_state(state, net.N, file_M, net.M, manifest_architecture(path).context_slices, net.context_slices, sample)
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
    return state


def check_blocks_kept(state: dict[str, torch.Tensor], path: str, net: SDCNet) -> None:
    """Stop if the file has residual or pointwise blocks or a patch bypass that net lacks: loading
    would silently leave their trained tensors out, and the options that keep them are named."""
    for key, dropped in undeclared_blocks(state, net.g_a_res, net.g_s_res, net.g_s_pointwise):
        transform, kind = BLOCK_KEYS[key]
        raise SystemExit(f"{path} has {transform} {kind} blocks after {dropped}; keep them with "
                         f"--{key.replace('_', '-')}")
    if has_bypass(state) and not net.bypass:
        raise SystemExit(f"{path} has a patch bypass; keep it with --bypass")
