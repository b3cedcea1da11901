"""The backends of each analysis stage, registered by name (registry.py).

    GROUNDING[name](ctx) -> Grounding      the objects: labels, boxes, scores
    MASKS[name](ctx)     -> a masker        .name, and .apply(rgb, objects) sets the objects' masks
    RANKING[name](ctx)   -> an LMM or None  the LMM lists a task's labels, captions the image and
                                            ranks the objects; None: the heuristic ranker

"auto" is no backend: `grounding_choice`, `masks_choice` and `ranker_choice` say which
registered name it stands for on this machine. The names are the config's and the CLI's;
with the names the backends report they make up `Analysis.analyzer`, which files store
(spec/FORMAT.md's analyzer table), so they must not change.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from sdc.errors import UsageError

from . import offline
from .config import DEFAULT_VLMS, model_available
from .masks import apply_grabcut
from .registry import Registry
from .tasks import BUILTIN_TASKS, canonical_label


@dataclass
class Context:
    """One `analyze` call as the backends see it; the stages fill in what they learn."""

    cfg: dict  # resolve_config's result, this call's own copy
    load: Callable[[tuple, Callable[[], object]], object]  # (key, make): the model this process keeps under key
    image: object  # the PIL image, RGB
    task: str | None = None
    labels: list[str] | None = None  # the task's labels
    caption_short: str = ""
    caption_long: str = ""
    image_labels: list[str] = field(default_factory=list)  # the kinds of objects the LMM saw
    warnings: list[str] = field(default_factory=list)
    rgb: np.ndarray = field(init=False)

    def __post_init__(self):
        self.rgb = np.asarray(self.image)

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def _required(cfg: dict, key: str, message: str):
    """The setting `key`, which this backend cannot run without (UsageError `message` if unset)."""
    if not cfg.get(key):
        raise UsageError(message)
    return cfg[key]


# ------------------------------------------------------------------ grounding
class Grounding(NamedTuple):
    detections: list[tuple]  # (label, box, score, source)
    name: str  # what ran: the first part of Analysis.analyzer
    fine_masks: bool = False  # an open-vocabulary model's boxes: masks "auto" refines them


GROUNDING = Registry("analyzer")


@GROUNDING.register("offline")
def offline_grounding(ctx: Context) -> Grounding:
    """COCO objects (the shipped detector), faces (Haar) inside the people it found, text
    (PP-OCR, when rapidocr is installed), and salient regions as `offline_saliency` says (by
    default only when the detector finds nothing: on coco128 they cost area for little recall
    on top of it)."""
    rgb, cfg = ctx.rgb, ctx.cfg
    threshold = cfg["detector_threshold"] or offline.COCO_THRESHOLD
    size = cfg["detector_input_size"]
    det = ctx.load(("offline-coco", size, threshold), lambda: offline.coco_detector(threshold, size))
    raw = [(lab, box, s, f"offline:{det.name}") for lab, box, s in det.detect(rgb)]
    found_objects = bool(raw)
    parts = [det.name, "haar"]
    people = [box for lab, box, _, _ in raw if lab == "person"]
    if people:
        # Scanning only the box around the people costs a fifth of the CPU on coco128 and
        # drops the cascade's detections where there is nobody.
        raw += [(lab, box, s, "offline:haar") for lab, box, s in offline.detect_faces(rgb, within=_union(people))]
    if offline.text_model_path():
        parts.append("ppocr")
        raw += [(lab, box, s, "offline:ppocr") for lab, box, s in offline.detect_text(rgb)]
    mode = cfg["offline_saliency"]
    if mode == "always" or (mode == "fallback" and not found_objects):
        parts.append("saliency")
        raw += [(lab, box, s, "offline:saliency") for lab, box, s in offline.detect_salient(rgb)]
    return Grounding(raw, f"offline({'+'.join(parts)})")


def _union(boxes) -> tuple[float, float, float, float]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


@GROUNDING.register("darknet")
def darknet_grounding(ctx: Context) -> Grounding:
    from .detectors import DarknetDetector

    cfg = ctx.cfg
    threshold, size = _user_detector_settings(cfg)
    if not (cfg.get("detector_cfg") and cfg.get("detector_weights")):
        raise UsageError("analyzer 'darknet' needs detector_cfg, detector_weights and detector_names")
    key = ("darknet", cfg["detector_cfg"], cfg["detector_weights"], cfg.get("detector_names"), size, threshold)
    det = ctx.load(key, lambda: DarknetDetector.from_files(
        cfg["detector_cfg"], cfg["detector_weights"], cfg.get("detector_names"), size, threshold))
    return _closed_set(ctx, det)


@GROUNDING.register("onnx")
def onnx_grounding(ctx: Context) -> Grounding:
    from .detectors import OnnxDetector

    cfg = ctx.cfg
    threshold, size = _user_detector_settings(cfg)
    model = _required(cfg, "detector_onnx", "analyzer 'onnx' needs detector_onnx and detector_names")
    key = ("onnx", model, cfg.get("detector_names"), size, threshold)
    det = ctx.load(key, lambda: OnnxDetector(model, cfg.get("detector_names"), size, threshold))
    return _closed_set(ctx, det)


def _user_detector_settings(cfg: dict) -> tuple[float, int]:
    from .detectors import USER_THRESHOLD

    return cfg["detector_threshold"] or USER_THRESHOLD, cfg["detector_input_size"]


def _closed_set(ctx: Context, det) -> Grounding:
    """A user's detector's boxes: with a task, those of the task's classes; a task none of
    whose labels the detector knows keeps everything (the ranker still sees the task)."""
    found = det.detect(ctx.rgb)
    if ctx.labels:
        wanted = {canonical_label(x) for x in ctx.labels}
        if any(canonical_label(n) in wanted for n in det.names):
            found = [d for d in found if canonical_label(d[0]) in wanted]
        else:
            ctx.warnings.append(f"{det.name} knows none of the task's labels; kept all its detections")
    return Grounding([(lab, box, s, det.name) for lab, box, s in found], det.name)


@GROUNDING.register("grounding-dino")
def grounding_dino_grounding(ctx: Context) -> Grounding:
    return _open_vocabulary(ctx, "grounding-dino", ctx.cfg["grounding_model"])


@GROUNDING.register("owlv2")
def owlv2_grounding(ctx: Context) -> Grounding:
    return _open_vocabulary(ctx, "owlv2", ctx.cfg["owlv2_model"])


def _open_vocabulary(ctx: Context, kind: str, model: str) -> Grounding:
    """A transformers model queried with the task's labels, else the kinds of objects the LMM
    saw, else the COCO classes."""
    from .grounding import GroundingDetector

    cfg = ctx.cfg
    if not (model_available(model) or cfg.get("allow_download")):
        raise UsageError(f"{kind} model {model!r} is not on this machine (no local directory, not in the "
                         "Hugging Face cache); give a local path, or allow_download = true to fetch it")
    key = (kind, model, cfg["trust_remote_code"], cfg["allow_download"])
    det = ctx.load(key, lambda: GroundingDetector(kind, model, cfg))
    queries = ctx.labels or ctx.image_labels or BUILTIN_TASKS["coco"]
    return Grounding([(lab, box, s, det.name) for lab, box, s in det.detect(ctx.image, queries)], det.name,
                     fine_masks=True)


def grounding_choice(cfg: dict) -> str:
    """What analyzer "auto" runs: an open-vocabulary model whose weights are already on this
    machine (or may be downloaded), else a configured detector, else the offline default."""
    if model_available(cfg.get("grounding_model")):
        return "grounding-dino"
    if model_available(cfg.get("owlv2_model")):
        return "owlv2"
    if cfg.get("allow_download") and cfg.get("grounding_model"):
        return "grounding-dino"
    if cfg.get("detector_cfg") and cfg.get("detector_weights"):
        return "darknet"
    if cfg.get("detector_onnx"):
        return "onnx"
    return "offline"


# ------------------------------------------------------------------ masks
class Masker(NamedTuple):
    name: str
    apply: Callable  # (rgb, objects): sets the masks of the objects it can


BOX = Masker("box", lambda rgb, objects: None)  # every object's region is its box
GRABCUT = Masker("grabcut", apply_grabcut)

MASKS = Registry("masks choice")
MASKS.register("box")(lambda ctx: BOX)
MASKS.register("grabcut")(lambda ctx: GRABCUT)


@MASKS.register("sam")
def sam_masks(ctx: Context):
    from .sam import SegmentAnythingMasker

    cfg = ctx.cfg
    ckpt = _required(cfg, "sam_checkpoint", "masks 'sam' needs sam_checkpoint (a segment-anything .pth file)")
    key = ("sam", ckpt, cfg.get("sam_model_type"), repr(cfg.get("sam_arch")))
    return ctx.load(key, lambda: SegmentAnythingMasker(ckpt, cfg.get("sam_model_type"), arch=cfg.get("sam_arch")))


@MASKS.register("sam-hf")
def sam_hf_masks(ctx: Context):
    from .sam import TransformersSamMasker

    model = ctx.cfg.get("sam_hf_model")
    if not (model_available(model) or ctx.cfg.get("allow_download")):
        raise UsageError(f"SAM model {model!r} is not on this machine; give a local path or allow_download")
    return ctx.load(("sam-hf", model), lambda: TransformersSamMasker(model, ctx.cfg))


def masks_choice(cfg: dict, fine: bool) -> str:
    """What masks "auto" makes (config.DEFAULTS says why): the box itself for a detector's
    boxes; for an open-vocabulary model's (`fine`), SAM when its weights are here, else GrabCut."""
    if not fine:
        return "box"
    ckpt = cfg.get("sam_checkpoint")
    if ckpt and os.path.isfile(ckpt):
        return "sam"
    if model_available(cfg.get("sam_hf_model")):
        return "sam-hf"
    return "grabcut"


# ------------------------------------------------------------------ ranking
RANKING = Registry("ranker")
RANKING.register("heuristic")(lambda ctx: None)


@RANKING.register("openai")
def openai_ranker(ctx: Context):
    cfg = ctx.cfg
    url = _required(cfg, "lmm_base_url", "ranker 'openai' needs an endpoint: set lmm_base_url or SDC_LMM_BASE_URL")
    from .lmm import OpenAICompatible

    return OpenAICompatible(url, cfg.get("lmm_model"), cfg.get("lmm_api_key"), timeout=cfg["lmm_timeout"])


@RANKING.register("vlm")
def vlm_ranker(ctx: Context):
    cfg = ctx.cfg
    vlm = _required(cfg, "vlm_model", "ranker 'vlm' needs a model: set vlm_model or SDC_VLM_MODEL (id or path)")
    from .lmm import LocalVLM

    key = ("vlm", vlm, cfg["allow_download"], cfg["trust_remote_code"], cfg.get("device"))
    model = ctx.load(key, lambda: LocalVLM(vlm, cfg))
    model.max_new_tokens = cfg["vlm_max_new_tokens"]  # per-call settings of the kept model
    model.timeout = cfg["lmm_timeout"]
    return model


def ranker_choice(cfg: dict, offline_asked: bool) -> str:
    """What ranker "auto" runs: the heuristic when the analyzer "offline" was asked for by
    name (everything stays local unless a ranker is named too; "auto" that ends up offline
    still uses a configured LMM), else a configured endpoint, else a local VLM that is on this
    machine or may be downloaded: vlm_model, or the first of DEFAULT_VLMS in the cache, which
    then goes into `cfg` (this call's own copy) as if configured."""
    if offline_asked:
        return "heuristic"
    if cfg.get("lmm_base_url"):
        return "openai"
    vlm = cfg.get("vlm_model") or next((m for m in DEFAULT_VLMS if model_available(m)), None)
    if vlm and (model_available(vlm) or cfg.get("allow_download")):
        cfg["vlm_model"] = vlm
        return "vlm"
    return "heuristic"
