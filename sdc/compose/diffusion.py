"""The "diffusion" composer: text-guided inpainting of the missing regions with diffusers.

The model is any diffusers inpainting pipeline that
``diffusers.AutoPipelineForInpainting`` can load (Stable Diffusion 1.x/2.x
inpainting, SDXL inpainting, ...), named by Hugging Face id or local directory.
It is prompted with the caption stored in the .sdc file.

Weights are never downloaded unless asked for: the default loads with
``local_files_only=True`` (the Hugging Face cache or a local directory). Opt in
with ``config={"allow_download": True}`` or ``SDC_ALLOW_DOWNLOAD=1``.

How one image goes through it:

* the hole is first cleaned by the offline "smooth" composer, and that image is
  the pipeline's starting point: with ``strength`` < 1 (default 0.8) the
  hyperprior's colours and layout survive as the initial latent instead of
  being replaced by pure noise (a hole covering the whole picture still yields
  that picture, not an unrelated one);
* the image is resized so its longer side is ``size`` px (default 512, SD 2's
  training size), each side a multiple of 8 (the VAE's stride); the mask is
  resized with area averaging, so a working pixel that touches the hole is
  repainted;
* the result is resized back and pasted only inside ``missing``; decoded pixels
  are never touched.

With a ControlNet (config ``controlnet``), the composition is DISCOVER's: the
decoded picture (its hole filled by "smooth") is also the ControlNet's
conditioning image, so the generated regions follow the layout and colours
the received levels and the hyperprior give, not only the caption; a tile or
low-resolution-conditioned ControlNet of the inpainting model's base fits
this. The pipeline is then diffusers' ControlNet inpainting pipeline, loaded
with the same safety rules.

Config keys (``compose(..., config={...})``; env fallbacks in brackets):
``model`` [SDC_DIFFUSION_MODEL] id or path, default
stabilityai/stable-diffusion-2-inpainting; ``allow_download``
[SDC_ALLOW_DOWNLOAD] bool, default False; ``steps`` 25; ``strength`` 0.8;
``guidance_scale`` 7.5; ``negative_prompt`` None; ``seed`` 0; ``size`` 512;
``device`` "cuda" when available, else "cpu"; ``dtype`` float16 on CUDA, else
float32; ``controlnet`` [SDC_DIFFUSION_CONTROLNET] id or path of a ControlNet,
default none; ``control_scale`` 1.0 (its conditioning scale).
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np

from sdc.errors import BadInputError, UsageError

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-inpainting"
MODEL_ENV = "SDC_DIFFUSION_MODEL"
CONTROLNET_ENV = "SDC_DIFFUSION_CONTROLNET"
DOWNLOAD_ENV = "SDC_ALLOW_DOWNLOAD"

DEFAULTS = {
    "model": None,  # None: $SDC_DIFFUSION_MODEL or DEFAULT_MODEL
    "allow_download": None,  # None: $SDC_ALLOW_DOWNLOAD
    "steps": 25,
    "strength": 0.8,
    "guidance_scale": 7.5,
    "negative_prompt": None,
    "seed": 0,
    "size": 512,
    "device": None,
    "dtype": None,
    "controlnet": None,  # None: $SDC_DIFFUSION_CONTROLNET, else plain inpainting
    "control_scale": 1.0,
}


class ComposerUnavailable(BadInputError):
    """The composer cannot run here (package or weights missing); "auto" falls back on this."""


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def resolve(config: dict | None) -> dict:
    """Config with defaults and environment filled in."""
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in (config or {}).items() if k in DEFAULTS})
    if cfg["model"] is None:
        cfg["model"] = os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    cfg["model"] = str(cfg["model"])
    if cfg["controlnet"] is None:
        cfg["controlnet"] = os.environ.get(CONTROLNET_ENV) or None
    cfg["controlnet"] = str(cfg["controlnet"]) if cfg["controlnet"] else None
    if cfg["allow_download"] is None:
        cfg["allow_download"] = _truthy(os.environ.get(DOWNLOAD_ENV))
    try:
        for key, kind in (("steps", int), ("seed", int), ("size", int), ("strength", float),
                          ("guidance_scale", float), ("control_scale", float)):
            cfg[key] = kind(cfg[key])
    except (TypeError, ValueError):
        raise UsageError(f"diffusion composer: {key} must be a number, got {cfg[key]!r}") from None
    if cfg["steps"] < 1 or cfg["size"] < 8 or not 0.0 < cfg["strength"] <= 1.0 or cfg["guidance_scale"] < 0 \
            or cfg["control_scale"] < 0:
        raise UsageError("diffusion composer: need steps >= 1, size >= 8, 0 < strength <= 1, guidance_scale >= 0, "
                         "control_scale >= 0")
    if cfg["dtype"] not in (None, "float32", "float16", "bfloat16"):
        raise UsageError(f"diffusion composer: dtype must be float32, float16 or bfloat16, got {cfg['dtype']!r}")
    # The pipeline runs about steps * strength steps and refuses zero.
    cfg["steps"] = max(cfg["steps"], math.ceil(1.0 / cfg["strength"] - 1e-9))
    return cfg


def work_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w): longer side about `size`, both multiples of 8, aspect kept."""
    scale = size / max(height, width)
    return (max(8, int(round(height * scale / 8)) * 8), max(8, int(round(width * scale / 8)) * 8))


def _how_to_provide(model: str, env: str = MODEL_ENV, key: str = "model") -> str:
    return (f"download it once (hf download {model}), point {env} or config '{key}' at a "
            f"local diffusers directory, or allow downloads with {DOWNLOAD_ENV}=1")


def _unavailable(what: str, name: str, allow_download: bool, exc: Exception, env: str = MODEL_ENV,
                 key: str = "model") -> ComposerUnavailable:
    """The one-line error for a model that could not be loaded."""
    # OSError: not in the cache (huggingface_hub's LocalEntryNotFoundError), unreadable
    # directory; ValueError: neither a directory nor a repo id.
    if os.path.isdir(name):
        where = f"could not be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    elif allow_download:
        where = f"could not be downloaded ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    else:  # the hub's own message only talks about its local_files_only flag
        where = "is not available locally"
    return ComposerUnavailable(f"{what} {name!r} {where}; {_how_to_provide(name, env, key)}")


@functools.lru_cache(maxsize=1)
def load_pipeline(model: str, allow_download: bool, device: str, dtype_name: str, controlnet: str | None):
    """The diffusers inpainting pipeline, with a ControlNet when one is named (cached: a
    batch decode loads it once)."""
    try:
        import torch
        from diffusers import AutoPipelineForInpainting, ControlNetModel
    except ImportError as exc:
        raise ComposerUnavailable(
            f"the diffusion composer needs diffusers and transformers ({exc.name} is missing): "
            "pip install 'sdc[models]'") from None
    # safetensors only: a pickled checkpoint is refused rather than loaded.
    kwargs = {"local_files_only": not allow_download, "use_safetensors": True}
    if dtype_name != "float32":  # the default; newer diffusers renamed torch_dtype= to dtype=
        import diffusers.pipelines.pipeline_utils as pu

        kwargs["dtype" if hasattr(pu, "_resolve_dtype") else "torch_dtype"] = getattr(torch, dtype_name)
    extra = {}
    if controlnet is not None:
        try:
            extra["controlnet"] = ControlNetModel.from_pretrained(controlnet, **kwargs)
        except (OSError, ValueError) as exc:
            raise _unavailable("ControlNet", controlnet, allow_download, exc, CONTROLNET_ENV, "controlnet") from None
    try:
        pipe = AutoPipelineForInpainting.from_pretrained(model, **kwargs, **extra)
    except (OSError, ValueError) as exc:
        raise _unavailable("diffusion model", model, allow_download, exc) from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusion_compose(rgb: np.ndarray, missing: np.ndarray, caption: str, config: dict | None = None
                      ) -> tuple[np.ndarray, str | None]:
    """(image, note): the composed image, and a note when it had to fall back to "smooth"."""
    from PIL import Image

    from sdc.compose.smooth import smooth_compose

    cfg = resolve(config)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        raise ComposerUnavailable("the diffusion composer needs torch") from None
    device = cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = cfg["dtype"] or ("float16" if str(device).startswith("cuda") else "float32")
    pipe = load_pipeline(cfg["model"], bool(cfg["allow_download"]), str(device), str(dtype_name), cfg["controlnet"])

    height, width = missing.shape
    start = smooth_compose(rgb, missing)
    h, w = work_size(height, width, cfg["size"])
    image = Image.fromarray(start).resize((w, h), Image.Resampling.LANCZOS)
    mask_small = np.asarray(Image.fromarray(missing.astype(np.uint8) * 255).resize((w, h), Image.Resampling.BOX))
    mask = Image.fromarray(np.where(mask_small > 0, 255, 0).astype(np.uint8))
    generator = torch.Generator(device="cpu").manual_seed(cfg["seed"])
    control = {"control_image": image, "controlnet_conditioning_scale": cfg["control_scale"]} \
        if cfg["controlnet"] else {}
    with torch.inference_mode():
        result = pipe(prompt=caption or "", negative_prompt=cfg["negative_prompt"], image=image, mask_image=mask,
                      height=h, width=w, strength=cfg["strength"], num_inference_steps=cfg["steps"],
                      guidance_scale=cfg["guidance_scale"], generator=generator, output_type="np", **control)
    nsfw = getattr(result, "nsfw_content_detected", None)
    if nsfw and nsfw[0]:
        # The model's safety checker blanked the picture: pasting black is worse than the offline fill.
        return start, "the diffusion model's safety checker withheld its output; used the 'smooth' composer"
    generated = np.clip(np.rint(np.asarray(result.images[0], dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    generated = np.asarray(Image.fromarray(generated).resize((width, height), Image.Resampling.LANCZOS))
    out = rgb.copy()
    out[missing] = generated[missing]
    return out, None
