"""Widen a trained network's synthesis transform g_s from N to N' > N hidden channels.

Why g_s alone: `benchmarks/transform_bound.py` measured that g_s, not the
encoder, caps the top qualities (g_s of per-image optimised latents gains only
+0.93 dB over g_s(g_a(x))), and decoding has time to spare (0.27 s against the
0.40 s that "2x faster than compressai" allows) while encoding has little; so
the extra width goes where it is both needed and affordable.

The widened network reconstructs exactly what the old one did (Net2Net-style,
Chen et al. 2016), so it is a warm start. E = N' - N new channels per hidden
layer, appended last::

    g_s.0        (M→N' deconv)    old columns copied; new output columns random
    g_s.1/3/5    inverse GDN       old β, γ block copied; new channels: β = 1,
                                   γ = 0.1 on their own diagonal, 0 across
                                   (compressai's start), so old outputs see none
    g_s.2, g_s.4 (N'→N' deconv)    old block copied; inputs from new channels
                                   zero; new output columns random
    g_s.6        (N'→3 deconv)     inputs from new channels zero      ─► x̂ unchanged
    g_s.r*, p*   residual blocks   both convolutions grow the same way (inputs
                                   from new channels zero), so old channels
                                   see exactly their old block

"Random" is PyTorch's default initialisation scaled to the norm of the old
output columns, so new channels carry activations of the usual size and their
outgoing weights (zero) get a gradient at the first step.
"""
from __future__ import annotations

import torch

from sdc.training.layers import block_names, g_s_pointwise_in, g_s_res_in, g_s_width_in, synthesis
from sdc.training.network import trainable_gdn

# Hidden layers of g_s: (deconvolution, inverse GDN after it); g_s.6 maps to RGB.
_DECONVS = ("g_s.0", "g_s.2", "g_s.4")
_GDNS = ("g_s.1", "g_s.3", "g_s.5")


def _grow_deconv(new: torch.Tensor, old: torch.Tensor, grow_out: bool) -> None:
    """ConvTranspose weight (in, out, k, k): old block copied, inputs from new channels zero,
    new output columns rescaled to the old columns' norm (in place)."""
    n_in, n_out = old.shape[:2]
    if grow_out:
        cols = new[:n_in, n_out:]
        cols *= old.transpose(0, 1).flatten(1).norm(dim=1).mean() / cols.transpose(0, 1).flatten(1).norm(dim=1).mean()
    new[n_in:] = 0
    new[:n_in, :n_out] = old


def _grow_conv(new: torch.Tensor, old: torch.Tensor) -> None:
    """Conv weight (out, in, k, k): old block copied, inputs from new channels zero, new rows
    rescaled to the old rows' norm (in place)."""
    n_out, n_in = old.shape[:2]
    rows = new[n_out:, :n_in]
    rows *= old.flatten(1).norm(dim=1).mean() / rows.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
    new[:, n_in:] = 0
    new[:n_out, :n_in] = old


@torch.no_grad()
def widen_synthesis_state(state: dict[str, torch.Tensor], new_width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of the same network with g_s `new_width` channels wide."""
    M, width = state["g_a.6.weight"].shape[0], g_s_width_in(state)
    if new_width <= width:
        raise ValueError(f"can only widen g_s: {width} -> {new_width} channels")
    torch.manual_seed(seed)
    # Only g_s changes: its fresh layers (compressai's start) are built alone; the bypass, if
    # any, is copied with everything else below.
    g_s = synthesis(new_width, M, trainable_gdn, g_s_res_in(state), g_s_pointwise_in(state))
    fresh = {f"g_s.{k}": v for k, v in g_s.state_dict().items()}
    out = {k: (v.clone() if not k.startswith("g_s.") or k.startswith("g_s.bypass.") else fresh[k].clone())
           for k, v in state.items()}
    for i, name in enumerate(_DECONVS + ("g_s.6",)):
        w = out[f"{name}.weight"]
        _grow_deconv(w, state[f"{name}.weight"], grow_out=name != "g_s.6")
        b = out[f"{name}.bias"]
        if name != "g_s.6":
            b.zero_()
        b[: state[f"{name}.bias"].shape[0]] = state[f"{name}.bias"]
    for name in _GDNS:
        for key in ("beta", "gamma"):  # the reparametrised raw values: new entries keep compressai's start
            t = out[f"{name}.{key}"]
            old = state[f"{name}.{key}"]
            if key == "beta":
                t[:width] = old
            else:
                t[:width, :width] = old
        for key in ("beta_reparam.pedestal", "beta_reparam.lower_bound.bound",
                    "gamma_reparam.pedestal", "gamma_reparam.lower_bound.bound"):
            out[f"{name}.{key}"] = state[f"{name}.{key}"].clone()
    for _, block in block_names(g_s_res_in(state)) + block_names(g_s_pointwise_in(state), "p"):
        for conv in ("conv_a", "conv_b"):
            key = f"g_s.{block}.{conv}"
            _grow_conv(out[f"{key}.weight"], state[f"{key}.weight"])
            b = out[f"{key}.bias"]
            b.zero_()
            b[:width] = state[f"{key}.bias"]
        out[f"g_s.{block}.conv_b.weight"][width:] = 0  # a new block output starts as the identity too
    return out
