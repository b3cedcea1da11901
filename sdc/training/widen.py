"""Widen a trained network's latent y from M to M' > M channels, keeping what it does.

A warm start for a wider model (Net2Net-style, Chen et al. 2016): the
trained weights of an (N, M) network go into an (N, M') one so that its
reconstruction is unchanged and the old channels keep their coding
distributions; the new channels start as small, cheap, unused extras that
training can then put to work. Measured reason to widen: at the
highest quality every one of the 96 channels of the shipped model was non-zero
at 45-93% of positions, while its PSNR flattened (29.7, 30.1, 30.3 dB for the
top three qualities at +25% rate each): the latent, not the rate, was the cap.

Where each tensor goes (M old channels, E = M' - M new ones, appended last)::

    g_a.6  (M'×N conv)      old rows copied; new rows random, scaled down
    g_s.0  (M'→N deconv)    old input rows copied; new input rows zero  ─► x̂ unchanged
    h_a.0  (N×M' conv)      new input columns zero                       ─► z unchanged
    g_a/g_s.bypass          old rows copied; new rows zero (if present)
    h_s    widths M', 3M'/2, 2M': new hidden units random in, zero out;
           output = [σ (M') | μ (M')]: old rows copied to their places,
           new σ rows: zero weights, bias = start σ; new μ rows zero
    gains  (Q×M')           new columns: the old channels' mean per quality
    context (S' slices)     old slice networks: zero columns for the new
           channels' μ, σ-index inputs; networks of the new slices fresh
           (their last layer starts at zero, as in ChannelContext)

The context's slice width C = M / S must stay the same (new channels form
whole new slices), so old slice k still sees exactly its old inputs.
"""
from __future__ import annotations

import torch

from sdc.training.layers import g_a_res_in, g_s_pointwise_in, g_s_res_in, g_s_width_in, has_bypass
from sdc.training.network import SDCNet

# New y channels start at this fraction of the old channels' RMS: big enough
# that rounding at the high qualities leaves them non-zero (so g_s gets a
# gradient to learn them), small enough to cost few bits at first. Measured on
# 16 training crops, widening 96 -> 144 channels: the new
# channels add 0.000 / 0.017 / 0.266 bpp at q1 / q5 / q8 at 0.25 (to 0.06 /
# 0.52 / 1.11), and 0.000 / 0.140 / 0.439 bpp at 0.5.
NEW_CHANNEL_RMS_SHARE = 0.25


def _rows(new: torch.Tensor, old: torch.Tensor, index: list[int], dim: int = 0) -> None:
    """new[index along dim] = old (in place)."""
    new.index_copy_(dim, torch.tensor(index), old.to(new.dtype))


@torch.no_grad()
def widen_state(state: dict[str, torch.Tensor], N: int, M: int, new_M: int, slices: int, new_slices: int,
                sample: torch.Tensor | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """An (N, new_M, new_slices) SDCNet state dict from an (N, M, slices) one.

    sample: a few (B, 3, H, W) images in [0, 1] to calibrate the new channels'
    scale (RMS) and their starting σ; without it the new rows keep PyTorch's
    default initialisation scaled to the old rows' weight norm.
    """
    if new_M <= M:
        raise ValueError(f"can only widen: {M} -> {new_M} channels")
    if slices > 1 and (new_slices <= 1 or M // slices != new_M // new_slices or new_M % new_slices):
        raise ValueError(f"context slices of {M}/{slices} channels cannot become {new_M}/{new_slices}")
    torch.manual_seed(seed)
    wide = SDCNet(N, new_M, num_qualities=state["log_gain"].shape[0], context_slices=new_slices,
                  g_s_res=g_s_res_in(state), bypass=has_bypass(state), g_s_width=g_s_width_in(state),
                  g_a_res=g_a_res_in(state), g_s_pointwise=g_s_pointwise_in(state))
    out = {k: v.clone() for k, v in wide.state_dict().items()}
    old_ch, new_ch = list(range(M)), list(range(M, new_M))

    # Everything not touching y's width copies as is.
    for key, value in state.items():
        if key in out and out[key].shape == value.shape and not key.startswith("context."):
            out[key] = value.clone()

    # g_a: old output channels copied, new ones scaled to the old rows' weight norm.
    w_old, w_new = state["g_a.6.weight"], out["g_a.6.weight"]
    w_new[new_ch] *= w_old.flatten(1).norm(dim=1).mean() / w_new[new_ch].flatten(1).norm(dim=1).mean()
    _rows(w_new, w_old, old_ch)
    out["g_a.6.bias"].zero_()
    _rows(out["g_a.6.bias"], state["g_a.6.bias"], old_ch)
    # g_s and h_a: the new channels are not read yet.
    out["g_s.0.weight"].zero_()
    _rows(out["g_s.0.weight"], state["g_s.0.weight"], old_ch)
    if has_bypass(state):  # the patch bypass neither writes nor reads the new channels yet
        for key in ("g_a.bypass.weight", "g_a.bypass.bias", "g_s.bypass.weight"):
            out[key].zero_()
            _rows(out[key], state[key], old_ch)
    out["h_a.0.weight"].zero_()
    _rows(out["h_a.0.weight"], state["h_a.0.weight"], old_ch, dim=1)

    # h_s: hidden widths grow; new hidden units feed nothing yet.
    h1, h2 = state["h_s.0.weight"].shape[1], state["h_s.2.weight"].shape[1]  # M, 3M/2 (deconv: in, out)
    _rows(out["h_s.0.weight"], state["h_s.0.weight"], list(range(h1)), dim=1)
    _rows(out["h_s.0.bias"], state["h_s.0.bias"], list(range(h1)))
    w = out["h_s.2.weight"]
    w[h1:] = 0  # inputs from new hidden units
    w[:h1, :h2] = state["h_s.2.weight"]
    _rows(out["h_s.2.bias"], state["h_s.2.bias"], list(range(h2)))
    w, b = out["h_s.4.weight"], out["h_s.4.bias"]
    w.zero_(); b.zero_()
    old_out = old_ch + [new_M + c for c in old_ch]  # [σ | μ] rows of the old channels
    w[old_out, :h2] = state["h_s.4.weight"]
    b[old_out] = state["h_s.4.bias"]

    # Gains: new channels take the old ones' mean per quality.
    for name in ("log_gain", "log_inv_gain"):
        out[name] = torch.cat([state[name], state[name].mean(1, keepdim=True).expand(-1, new_M - M)], 1)

    # Context: old slice networks keep their inputs; new slices start fresh.
    if slices > 1:
        C = M // slices
        for k in range(1, slices):
            p = f"context.nets.{k - 1}."
            w_old = state[p + "0.weight"]
            cols = old_ch + [new_M + c for c in old_ch] + [2 * new_M + c for c in range(k * C)]
            w = out[p + "0.weight"]
            w.zero_()
            w[:, cols] = w_old
            for key in ("0.bias", "2.weight", "2.bias"):
                out[p + key] = state[p + key].clone()

    if sample is not None:
        _calibrate(wide, out, M, new_M, sample)
    return out


def _calibrate(wide: SDCNet, out: dict[str, torch.Tensor], M: int, new_M: int, sample: torch.Tensor) -> None:
    """Scale the new g_a rows to NEW_CHANNEL_RMS_SHARE of the old channels' RMS; start σ at their RMS."""
    wide.load_state_dict(out, strict=False)
    wide.eval()
    y = wide.g_a(sample)
    rms_old = y[:, :M].pow(2).mean((0, 2, 3)).sqrt().median()
    rms_new = y[:, M:].pow(2).mean((0, 2, 3)).sqrt().clamp_min(1e-6)
    factor = NEW_CHANNEL_RMS_SHARE * rms_old / rms_new  # per new channel
    out["g_a.6.weight"][M:] *= factor[:, None, None, None]
    out["h_s.4.bias"][M:new_M] = NEW_CHANNEL_RMS_SHARE * rms_old
