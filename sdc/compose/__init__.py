"""Composers: a complete picture for human eyes from a partial decode.

When a receiver decodes only some importance levels, the codec fills the
missing regions from the hyperprior's predicted mean (blurry blotches). A
composer replaces those pixels, and only those:

=========== ============================================================
"none"      return the decode as is
"smooth"    deblock the hyperprior fill (a Gaussian low-pass), 0.02 s;
            see :mod:`sdc.compose.smooth` for the measurements behind it
"learned"   offline default: a network trained on this codec's own partial
            decodes (:mod:`sdc.compose.learned`), ONNX Runtime,
            deterministic, 0.12 s, its weights shipped and hash-checked in
            ``weights/``; it beats "smooth" on a feature distance to the
            originals and on detection (``benchmarks/compose_tasks.py``)
"diffusion" text-guided inpainting with a diffusers inpainting pipeline,
            prompted with the file's caption, and with a ControlNet
            conditioned on the decoded picture when one is named (DISCOVER's
            composition; :mod:`sdc.compose.diffusion`); its weights must be
            local unless downloads are allowed, else a one-line
            :class:`~sdc.errors.BadInputError` says how to get them
"auto"      "diffusion" when diffusers and the weights are available here,
            otherwise "learned" with a :class:`ComposeFallbackWarning`
=========== ============================================================

Every composer returns a new (H, W, 3) uint8 array whose pixels outside
`missing` are byte-identical to the input; `compose` enforces this. Nothing
heavy (OpenCV, torch, diffusers) is imported before a composer needs it.

Fallback policy: "diffusion" never substitutes silently: a missing package or
missing weights is an error. "auto" falls back to "learned" and says so with
``warnings.warn(..., ComposeFallbackWarning)`` (Python prints it once per
process on stderr; callers may filter or record it). The same warning is
issued if a model's safety checker withholds an output: that hole is filled by
"smooth" instead of pasting a black picture.
"""
from __future__ import annotations

import warnings

import numpy as np

from sdc.errors import UsageError

COMPOSERS: tuple[str, ...] = ("none", "smooth", "learned", "diffusion", "auto")
DEFAULT_COMPOSER = "learned"  # the offline one; what a caller should pick when it has no preference

SMOOTH_KEYS = ("sigma",)
LEARNED_KEYS = ("weights",)


class ComposeFallbackWarning(UserWarning):
    """A composer could not run as asked and another one filled the missing regions."""


def _config_keys() -> set[str]:
    from sdc.compose.diffusion import DEFAULTS

    return set(SMOOTH_KEYS) | set(LEARNED_KEYS) | set(DEFAULTS)


def compose(rgb: np.ndarray, missing: np.ndarray, *, composer: str, caption: str = "",
            config: dict | None = None) -> np.ndarray:
    """Fill the `missing` pixels of `rgb` with `composer` (one of COMPOSERS).

    Args:
        rgb: (H, W, 3) uint8 decode; missing pixels hold the hyperprior fill.
        missing: (H, W) bool, True where the pixel's level was not decoded.
        composer: name from COMPOSERS (case-insensitive).
        caption: text describing the image (the .sdc caption); prompts "diffusion".
        config: optional settings: "sigma" for "smooth" (see
            :mod:`sdc.compose.smooth`); "weights" (a folder with composer.json
            and its ONNX file) for "learned"; "model", "allow_download", "steps",
            "strength", "guidance_scale", "negative_prompt", "seed", "size",
            "device", "dtype", "controlnet", "control_scale" for "diffusion"
            (see :mod:`sdc.compose.diffusion`).

    Returns:
        A new (H, W, 3) uint8 array, equal to `rgb` outside `missing`.

    Raises:
        UsageError: unknown composer name or config key.
        BadInputError: "diffusion" cannot run (package or weights missing).
    """
    name = (composer or "").strip().lower()
    if name not in COMPOSERS:
        raise UsageError(f"unknown composer {composer!r}: expected one of {', '.join(COMPOSERS)}")
    config = dict(config or {})
    unknown = sorted(set(config) - _config_keys())
    if unknown:
        raise UsageError(f"unknown composer setting(s) {', '.join(unknown)}: expected some of "
                         f"{', '.join(sorted(_config_keys()))}")
    rgb = np.ascontiguousarray(rgb)  # OpenCV wants contiguous arrays
    missing = np.ascontiguousarray(missing, dtype=bool)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"compose expects an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    if missing.shape != rgb.shape[:2]:
        raise ValueError(f"missing mask is {missing.shape}, image is {rgb.shape[:2]}")
    if name == "none" or not missing.any():
        return rgb.copy()

    if name == "smooth":
        out = _smooth(rgb, missing, config)
    elif name == "learned":
        out = _learned(rgb, missing, config)
    else:
        from sdc.compose.diffusion import DEFAULTS, ComposerUnavailable, diffusion_compose

        try:
            out, note = diffusion_compose(rgb, missing, caption,
                                          {k: v for k, v in config.items() if k in DEFAULTS})
        except ComposerUnavailable as exc:
            if name != "auto":
                raise
            warnings.warn(f"composer 'auto': {exc}; using 'learned'", ComposeFallbackWarning, stacklevel=2)
            out = _learned(rgb, missing, config)
        else:
            if note:
                warnings.warn(f"composer {name!r}: {note}", ComposeFallbackWarning, stacklevel=2)
    # The contract, whatever a backend did: decoded pixels come back untouched.
    out = np.ascontiguousarray(out, dtype=np.uint8)
    if out.shape != rgb.shape:
        raise RuntimeError(f"composer {name!r} returned shape {out.shape}, expected {rgb.shape}")
    out[~missing] = rgb[~missing]
    return out


def _smooth(rgb: np.ndarray, missing: np.ndarray, config: dict) -> np.ndarray:
    from sdc.compose.smooth import smooth_compose

    return smooth_compose(rgb, missing, **{k: config[k] for k in SMOOTH_KEYS if k in config})


def _learned(rgb: np.ndarray, missing: np.ndarray, config: dict) -> np.ndarray:
    from sdc.compose.learned import learned_compose

    return learned_compose(rgb, missing, weights=config.get("weights"))


__all__ = ["COMPOSERS", "DEFAULT_COMPOSER", "ComposeFallbackWarning", "compose"]
