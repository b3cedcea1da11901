"""`analyze`: choose the backends, run grounding -> masks -> ranking, report what ran."""
from __future__ import annotations

import os
import time

import numpy as np

from sdc.errors import SdcError, UsageError

from . import offline, ranking
from .config import DEFAULT_VLMS, model_available, resolve_config
from .core import Analysis, DetectedObject, clip_box
from .masks import grow_box
from .tasks import BUILTIN_TASKS, canonical_label, resolve_task

ANALYZERS = ["auto", "offline", "darknet", "onnx", "grounding-dino", "owlv2"]
MASKERS = ["auto", "box", "grabcut", "sam", "sam-hf"]
RANKERS = ["auto", "heuristic", "openai", "vlm"]

# Loaded backends, kept for the life of the process (a batch encode loads each model once).
_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _short(e: BaseException) -> str:
    s = " ".join(str(e).split()) or type(e).__name__
    return s[:200]


# ------------------------------------------------------------------ choose
def _grounding_choice(cfg: dict) -> str | None:
    """The grounding pipeline `auto` runs: its weights must already be on this machine."""
    if model_available(cfg.get("grounding_model")):
        return "grounding-dino"
    if model_available(cfg.get("owlv2_model")):
        return "owlv2"
    if cfg.get("allow_download") and cfg.get("grounding_model"):
        return "grounding-dino"
    return None


def _detector_choice(cfg: dict) -> str | None:
    if cfg.get("detector_cfg") and cfg.get("detector_weights"):
        return "darknet"
    if cfg.get("detector_onnx"):
        return "onnx"
    return None


def _make_lmm(cfg: dict, ranker: str, offline_asked: bool):
    """The LMM for captions, ranking and DISCOVER, or None (heuristic ranking).

    An analyzer of "offline" asked for by name keeps everything local unless a
    ranker is named too; "auto" that ends up offline still uses a configured LMM."""
    if ranker == "heuristic" or (ranker == "auto" and offline_asked):
        return None
    if ranker in ("auto", "openai") and cfg.get("lmm_base_url"):
        from .lmm import OpenAICompatible

        return OpenAICompatible(cfg["lmm_base_url"], cfg.get("lmm_model"), cfg.get("lmm_api_key"),
                                timeout=cfg["lmm_timeout"])
    if ranker == "openai":
        raise UsageError("ranker 'openai' needs an endpoint: set lmm_base_url or SDC_LMM_BASE_URL")
    vlm = cfg.get("vlm_model")
    if not vlm and ranker == "auto":
        vlm = next((m for m in DEFAULT_VLMS if model_available(m)), None)
    if ranker == "vlm" and not vlm:
        raise UsageError("ranker 'vlm' needs a model: set vlm_model or SDC_VLM_MODEL (id or path)")
    if vlm and (ranker == "vlm" or model_available(vlm) or cfg.get("allow_download")):
        from .lmm import LocalVLM

        key = ("vlm", vlm, cfg["allow_download"], cfg["trust_remote_code"], cfg.get("device"))
        model = _cached(key, lambda: LocalVLM(vlm, cfg))
        model.max_new_tokens = cfg["vlm_max_new_tokens"]  # per-call settings of the kept model
        model.timeout = cfg["lmm_timeout"]
        return model
    return None


def _offline_detector(cfg: dict):
    """The shipped COCO detector at the config's threshold and input size, loaded once per process."""
    threshold = cfg["detector_threshold"] or offline.COCO_THRESHOLD
    size = cfg["detector_input_size"]
    return _cached(("offline-coco", size, threshold), lambda: offline.coco_detector(threshold, size))


def _union(boxes) -> tuple[float, float, float, float]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _detect_offline(rgb: np.ndarray, cfg: dict) -> tuple[list, str]:
    """COCO objects (the shipped detector), faces (Haar) inside the people it found, text
    (PP-OCR, when rapidocr is installed), and salient regions as `offline_saliency` says (by
    default only when the detector finds nothing: on coco128 they cost area for little recall
    on top of it)."""
    det = _offline_detector(cfg)
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
    return raw, f"offline({'+'.join(parts)})"


def _load_detector(kind: str, cfg: dict):
    from .detectors import USER_THRESHOLD, DarknetDetector, OnnxDetector

    threshold = cfg["detector_threshold"] or USER_THRESHOLD
    size = cfg["detector_input_size"]
    if kind == "darknet":
        if not (cfg.get("detector_cfg") and cfg.get("detector_weights")):
            raise UsageError("analyzer 'darknet' needs detector_cfg, detector_weights and detector_names")
        key = ("darknet", cfg["detector_cfg"], cfg["detector_weights"], cfg.get("detector_names"), size, threshold)
        return _cached(key, lambda: DarknetDetector.from_files(
            cfg["detector_cfg"], cfg["detector_weights"], cfg.get("detector_names"), size, threshold))
    if not cfg.get("detector_onnx"):
        raise UsageError("analyzer 'onnx' needs detector_onnx and detector_names")
    key = ("onnx", cfg["detector_onnx"], cfg.get("detector_names"), size, threshold)
    return _cached(key, lambda: OnnxDetector(cfg["detector_onnx"], cfg.get("detector_names"), size, threshold))


def _load_grounding(kind: str, cfg: dict):
    from .grounding import GroundingDetector

    model = cfg["grounding_model"] if kind == "grounding-dino" else cfg["owlv2_model"]
    if not (model_available(model) or cfg.get("allow_download")):
        raise UsageError(f"{kind} model {model!r} is not on this machine (no local directory, not in the "
                         "Hugging Face cache); give a local path, or allow_download = true to fetch it")
    key = (kind, model, cfg["trust_remote_code"], cfg["allow_download"])
    return _cached(key, lambda: GroundingDetector(kind, model, cfg))


def _masker(choice: str, cfg: dict, big: bool):
    """(kind, masker or None). kind: box | grabcut | sam | sam-hf; "auto" as in config.DEFAULTS."""
    if choice == "auto":
        ckpt = cfg.get("sam_checkpoint")
        if not big:
            return "box", None
        if ckpt and os.path.isfile(ckpt):
            choice = "sam"
        elif model_available(cfg.get("sam_hf_model")):
            choice = "sam-hf"
        else:
            return "grabcut", None
    if choice in ("box", "grabcut"):
        return choice, None
    if choice == "sam":
        from .sam import SegmentAnythingMasker

        ckpt = cfg.get("sam_checkpoint")
        if not ckpt:
            raise UsageError("masks 'sam' needs sam_checkpoint (a segment-anything .pth file)")
        key = ("sam", ckpt, cfg.get("sam_model_type"), repr(cfg.get("sam_arch")))
        return "sam", _cached(key, lambda: SegmentAnythingMasker(ckpt, cfg.get("sam_model_type"),
                                                                  arch=cfg.get("sam_arch")))
    if choice == "sam-hf":
        from .sam import TransformersSamMasker

        model = cfg.get("sam_hf_model")
        if not (model_available(model) or cfg.get("allow_download")):
            raise UsageError(f"SAM model {model!r} is not on this machine; give a local path or allow_download")
        key = ("sam-hf", model)
        return "sam-hf", _cached(key, lambda: TransformersSamMasker(model, cfg))
    raise UsageError(f"unknown masks choice {choice!r}: expected one of {', '.join(MASKERS)}")


# ----------------------------------------------------------------- analyze
def analyze(image, *, analyzer: str = "auto", task: str | None = None,
            config: dict | None = None) -> Analysis:
    """Analyse a PIL image: grounded objects, masks, levels (see the package docstring).

    `analyzer` "auto" uses the config's choice, else the big-model pipeline
    when its weights are on this machine, else a configured detector, else
    the offline default. Model failures at run time fall back (to the offline
    detectors, GrabCut, the heuristic ranker) with a warning; a backend that
    was named explicitly but cannot be loaded raises UsageError.
    """
    cfg = resolve_config(config)
    explicit = analyzer != "auto"
    if not explicit:
        analyzer = cfg.get("analyzer") or "auto"
    if analyzer not in ANALYZERS:
        raise UsageError(f"unknown analyzer {analyzer!r}: expected one of {', '.join(ANALYZERS)}")
    if cfg["ranker"] not in RANKERS:
        raise UsageError(f"unknown ranker {cfg['ranker']!r}: expected one of {', '.join(RANKERS)}")
    if cfg["masks"] not in MASKERS:
        raise UsageError(f"unknown masks choice {cfg['masks']!r}: expected one of {', '.join(MASKERS)}")
    task = task.strip() if isinstance(task, str) and task.strip() else None

    rgb_img = image.convert("RGB")
    rgb = np.asarray(rgb_img)
    H, W = rgb.shape[:2]
    warnings: list[str] = []

    offline_asked = analyzer == "offline"
    if analyzer == "auto":
        analyzer = _grounding_choice(cfg) or _detector_choice(cfg) or "offline"
    big = analyzer in ("grounding-dino", "owlv2")

    # ---- LMM (captions, ranking, task labels)
    lmm = None
    try:
        lmm = _make_lmm(cfg, cfg["ranker"], offline_asked)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001
        warnings.append(f"LMM unavailable ({_short(e)}); ranking with the heuristic")

    labels = None
    if task:
        try:
            labels, _src = resolve_task(task, lmm, warnings)
        except Exception as e:  # noqa: BLE001 - transport errors, timeouts: stop asking this LMM
            warnings.append(f"{lmm.name} failed while listing the task's labels ({_short(e)}); "
                            "heuristic ranking, no captions")
            lmm = None
            labels, _src = resolve_task(task, None, warnings)

    short = long_ = ""
    image_labels: list[str] = []
    if lmm is not None:
        try:
            short, long_, image_labels = ranking.ask(lmm, ranking.CAPTION_PROMPT, ranking.parse_caption,
                                                     image=rgb_img)
        except ranking.ParseError as e:
            warnings.append(f"{lmm.name}: unusable caption answer twice ({e}); no captions")
        except Exception as e:  # noqa: BLE001 - transport errors, timeouts, model errors
            warnings.append(f"{lmm.name} failed ({_short(e)}); heuristic ranking, no captions")
            lmm = None

    # ---- grounding
    raw: list[tuple] = []
    det_desc = ""
    if analyzer in ("darknet", "onnx", "grounding-dino", "owlv2"):
        try:
            if analyzer in ("darknet", "onnx"):
                det = _load_detector(analyzer, cfg)
                found = det.detect(rgb)
                if labels:
                    # keep the task's classes; a task none of whose labels the
                    # detector knows keeps everything (the ranker still sees the task)
                    wanted = {canonical_label(x) for x in labels}
                    if any(canonical_label(n) in wanted for n in det.names):
                        found = [d for d in found if canonical_label(d[0]) in wanted]
                    else:
                        warnings.append(f"{det.name} knows none of the task's labels; kept all its detections")
                raw = [(lab, box, s, det.name) for lab, box, s in found]
                det_desc = det.name
            else:
                det = _load_grounding(analyzer, cfg)
                queries = labels or image_labels or BUILTIN_TASKS["coco"]
                raw = [(lab, box, s, det.name) for lab, box, s in det.detect(rgb_img, queries)]
                det_desc = det.name
        except UsageError:
            if explicit:
                raise
            warnings.append(f"{analyzer} could not be loaded; used the offline detectors")
            raw, det_desc = _detect_offline(rgb, cfg)
            big = False
        except SdcError:
            raise
        except Exception as e:  # noqa: BLE001 - a model failing must not fail the encode
            if explicit and isinstance(e, (OSError, ImportError)):
                hint = " (pip install 'sdc[models]')" if isinstance(e, ImportError) else ""
                raise UsageError(f"analyzer {analyzer!r} cannot run: {_short(e)}{hint}") from None
            warnings.append(f"{analyzer} failed ({_short(e)}); used the offline detectors")
            raw, det_desc = _detect_offline(rgb, cfg)
            big = False
    else:
        raw, det_desc = _detect_offline(rgb, cfg)

    raw.sort(key=lambda r: -r[2])
    raw = raw[: cfg["max_objects"]]
    objects = []
    for lab, box, s, src in raw:
        b = clip_box(box, W, H)
        if b[2] - b[0] < 1 or b[3] - b[1] < 1:
            continue
        b = grow_box(b, cfg["box_margin"], cfg["box_margin_px"], W, H)
        objects.append(DetectedObject(id=len(objects), label=lab, box=b, score=float(s), level="L3",
                                      source=src))

    # ---- masks
    mask_desc = "box"
    try:
        kind, masker = _masker(cfg["masks"], cfg, big)
    except Exception as e:  # noqa: BLE001
        if cfg["masks"] != "auto":
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"masks {cfg['masks']!r} cannot be loaded: {_short(e)}"
                             + (" (pip install 'sdc[models]')" if isinstance(e, ImportError) else "")) from None
        warnings.append(f"SAM could not be loaded ({_short(e)}); used GrabCut masks")
        kind, masker = "grabcut", None
    if kind == "grabcut":
        from .masks import apply_grabcut

        apply_grabcut(rgb, objects)
        mask_desc = "grabcut"
    elif masker is not None:
        try:
            masker.apply(rgb, objects)
            mask_desc = masker.name
        except Exception as e:  # noqa: BLE001
            from .masks import apply_grabcut

            warnings.append(f"{masker.name} failed ({_short(e)}); used GrabCut masks")
            apply_grabcut(rgb, objects)
            mask_desc = "grabcut"

    # ---- ranking
    rank_desc = "heuristic"
    ranked = False
    if lmm is not None and objects:
        prompt = ranking.rank_prompt(objects, W, H, short, long_, task)
        ids = [o.id for o in objects]
        try:
            levels = ranking.ask(lmm, prompt, lambda t: ranking.parse_ranking(t, ids), image=rgb_img)
            for o in objects:
                o.level, reason = levels[o.id]
                o.reason = reason
            ranked = True
            rank_desc = lmm.name
        except ranking.ParseError as e:
            warnings.append(f"{lmm.name}: unusable ranking answer twice ({e}); used the heuristic ranker")
        except Exception as e:  # noqa: BLE001
            warnings.append(f"{lmm.name} failed while ranking ({_short(e)}); used the heuristic ranker")
    elif lmm is not None:
        rank_desc = lmm.name
        ranked = True
    if not ranked:
        ranking.heuristic_rank(objects, W, H, labels)

    return Analysis(width=W, height=H, objects=objects, caption_short=short, caption_long=long_,
                    analyzer=f"{det_desc}/{mask_desc}/{rank_desc}", task=task, labels=labels,
                    warnings=warnings)


def timed_analyze(image, **kw) -> tuple[Analysis, float]:
    t = time.perf_counter()
    a = analyze(image, **kw)
    return a, time.perf_counter() - t
