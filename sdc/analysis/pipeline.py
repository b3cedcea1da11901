"""`analyze`: ground -> mask -> rank, each stage's backend looked up by name (backends.py).

The LMM, when one runs, comes first: it lists a task's labels and captions the image
(grounding queries with what it saw) before it ranks. Each stage falls back rather than
fail the encode: grounding to the offline detectors, masks to GrabCut, ranking to the
heuristic, each with a warning; a backend named explicitly that cannot run at all raises
UsageError.
"""
from __future__ import annotations

from sdc.errors import SdcError, UsageError

from . import ranking
from .backends import (GRABCUT, GROUNDING, MASKS, RANKING, Context, Grounding, grounding_choice, masks_choice,
                       ranker_choice)
from .config import resolve_config
from .core import Analysis, DetectedObject, clip_box
from .masks import grow_box
from .registry import AUTO
from .tasks import resolve_task

ANALYZERS = GROUNDING.names()
MASKERS = MASKS.names()
RANKERS = RANKING.names()

# Loaded backends, kept for the life of the process (a batch encode loads each model once).
_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _short(e: BaseException) -> str:
    s = " ".join(str(e).split()) or type(e).__name__
    return s[:200]


def _pip_hint(e: BaseException) -> str:
    return " (pip install 'sdc[models]')" if isinstance(e, ImportError) else ""


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
    explicit = analyzer != AUTO
    if not explicit:
        analyzer = cfg.get("analyzer") or AUTO
    GROUNDING.check(analyzer)
    RANKING.check(cfg["ranker"])
    MASKS.check(cfg["masks"])
    task = task.strip() if isinstance(task, str) and task.strip() else None
    ctx = Context(cfg, _cached, image.convert("RGB"), task)

    lmm = _lmm(ctx, offline_asked=analyzer == "offline")
    lmm = _read_task_and_image(ctx, lmm)
    if analyzer == AUTO:
        analyzer = grounding_choice(cfg)
    found = _ground(ctx, analyzer, explicit)
    objects = _objects(ctx, found.detections)
    masks = _mask(ctx, objects, found.fine_masks)
    ranker = _rank(ctx, objects, lmm)
    return Analysis(width=ctx.width, height=ctx.height, objects=objects, caption_short=ctx.caption_short,
                    caption_long=ctx.caption_long, analyzer=f"{found.name}/{masks}/{ranker}", task=task,
                    labels=ctx.labels, warnings=ctx.warnings)


# ------------------------------------------------------------------ LMM
def _lmm(ctx: Context, offline_asked: bool):
    """The ranker's LMM, or None (heuristic ranking)."""
    choice = ctx.cfg["ranker"]
    try:
        return RANKING[ranker_choice(ctx.cfg, offline_asked) if choice == AUTO else choice](ctx)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001
        ctx.warnings.append(f"LMM unavailable ({_short(e)}); ranking with the heuristic")
        return None


def _read_task_and_image(ctx: Context, lmm):
    """The task's labels and the image's captions; returns the LMM, or None once it has failed."""
    if ctx.task:
        try:
            ctx.labels, _src = resolve_task(ctx.task, lmm, ctx.warnings)
        except Exception as e:  # noqa: BLE001 - transport errors, timeouts: stop asking this LMM
            ctx.warnings.append(f"{lmm.name} failed while listing the task's labels ({_short(e)}); "
                                "heuristic ranking, no captions")
            lmm = None
            ctx.labels, _src = resolve_task(ctx.task, None, ctx.warnings)
    if lmm is not None:
        try:
            ctx.caption_short, ctx.caption_long, ctx.image_labels = ranking.ask(
                lmm, ranking.CAPTION_PROMPT, ranking.parse_caption, image=ctx.image)
        except ranking.ParseError as e:
            ctx.warnings.append(f"{lmm.name}: unusable caption answer twice ({e}); no captions")
        except Exception as e:  # noqa: BLE001 - transport errors, timeouts, model errors
            ctx.warnings.append(f"{lmm.name} failed ({_short(e)}); heuristic ranking, no captions")
            lmm = None
    return lmm


# ------------------------------------------------------------------ ground
def _ground(ctx: Context, name: str, explicit: bool) -> Grounding:
    """Grounding backend `name`; one that cannot load or fails runs the offline detectors instead."""
    if name == "offline":
        return GROUNDING[name](ctx)
    try:
        return GROUNDING[name](ctx)
    except UsageError:
        if explicit:
            raise
        ctx.warnings.append(f"{name} could not be loaded; used the offline detectors")
    except SdcError:
        raise
    except Exception as e:  # noqa: BLE001 - a model failing must not fail the encode
        if explicit and isinstance(e, (OSError, ImportError)):
            raise UsageError(f"analyzer {name!r} cannot run: {_short(e)}{_pip_hint(e)}") from None
        ctx.warnings.append(f"{name} failed ({_short(e)}); used the offline detectors")
    return GROUNDING["offline"](ctx)


def _objects(ctx: Context, detections: list[tuple]) -> list[DetectedObject]:
    """The max_objects best-scoring detections with a box inside the image, grown by the margin."""
    cfg = ctx.cfg
    W, H = ctx.width, ctx.height
    objects = []
    for lab, box, s, src in sorted(detections, key=lambda r: -r[2])[: cfg["max_objects"]]:
        b = clip_box(box, W, H)
        if b[2] - b[0] < 1 or b[3] - b[1] < 1:
            continue
        b = grow_box(b, cfg["box_margin"], cfg["box_margin_px"], W, H)
        objects.append(DetectedObject(id=len(objects), label=lab, box=b, score=float(s), level="L3",
                                      source=src))
    return objects


# ------------------------------------------------------------------ mask
def _mask(ctx: Context, objects: list[DetectedObject], fine: bool) -> str:
    """Masks of the configured backend; a model that cannot load or fails leaves it to GrabCut."""
    choice = ctx.cfg["masks"]
    try:
        masker = MASKS[masks_choice(ctx.cfg, fine) if choice == AUTO else choice](ctx)
    except Exception as e:  # noqa: BLE001
        if choice != AUTO:
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"masks {choice!r} cannot be loaded: {_short(e)}{_pip_hint(e)}") from None
        ctx.warnings.append(f"SAM could not be loaded ({_short(e)}); used GrabCut masks")
        masker = GRABCUT
    try:
        masker.apply(ctx.rgb, objects)
        return masker.name
    except Exception as e:  # noqa: BLE001
        if masker is GRABCUT:
            raise
        ctx.warnings.append(f"{masker.name} failed ({_short(e)}); used GrabCut masks")
        GRABCUT.apply(ctx.rgb, objects)
        return GRABCUT.name


# ------------------------------------------------------------------ rank
def _rank(ctx: Context, objects: list[DetectedObject], lmm) -> str:
    """Levels from the LMM when it gives a usable answer, else from the heuristic ranker."""
    if lmm is not None:
        if not objects:
            return lmm.name
        prompt = ranking.rank_prompt(objects, ctx.width, ctx.height, ctx.caption_short, ctx.caption_long,
                                     ctx.task)
        ids = [o.id for o in objects]
        try:
            levels = ranking.ask(lmm, prompt, lambda t: ranking.parse_ranking(t, ids), image=ctx.image)
            for o in objects:
                o.level, o.reason = levels[o.id]
            return lmm.name
        except ranking.ParseError as e:
            ctx.warnings.append(f"{lmm.name}: unusable ranking answer twice ({e}); used the heuristic ranker")
        except Exception as e:  # noqa: BLE001
            ctx.warnings.append(f"{lmm.name} failed while ranking ({_short(e)}); used the heuristic ranker")
    ranking.heuristic_rank(objects, ctx.width, ctx.height, ctx.labels)
    return "heuristic"
