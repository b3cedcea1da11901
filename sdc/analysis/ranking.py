"""Ranking objects into L1 / L2 / L3.

Two rankers:

- `heuristic_rank` (offline default, deterministic). Each object gets an
  importance in [0, 1]:

      importance = 0.45 * prior + 0.20 * size + 0.15 * centrality + 0.20 * confidence

  prior       label prior (LABEL_PRIORS: people, faces and text 1.0; vehicles
              and animals 0.8; other known things 0.6; salient regions 0.35;
              unknown labels 0.5). With task labels, a label in the task's
              list gets at least 0.9 and one outside it is multiplied by 0.5.
  size        min(1, 2 * sqrt(box area / image area)): an object filling a
              quarter of the image counts fully.
  centrality  1 - distance of the box centre from the image centre,
              divided by the half-diagonal.
  confidence  the detector's score.

  L1 when importance >= 0.62, L2 when >= 0.45, else L3. L1 is kept for what
  machines most often look for: a label whose prior (after the task's
  adjustment) is below 0.8 is L2 at most: without a task, everyday objects
  (a table, a chair, a cup) never reach L1 however large they are, while
  people, faces, text, vehicles and animals can; with a task, only the task's
  labels can. Regions of unknown content (GENERIC_LABELS: "salient region",
  "object") are L2 at most too. The reason line gives the four terms.

- the LMM ranker (SDComp's two prompts): `caption` asks for a short and a
  long caption (and the kinds of objects present, used to query grounding
  when there is no task); `rank` gives the captions and the grounded objects
  (id, label, box) and asks for a level and a one-line reason per object.
  Answers are parsed strictly (JSON only, every id exactly once, levels in
  L1/L2/L3); an unusable answer is asked again once with the error stated;
  after that the caller falls back to `heuristic_rank` and records a warning.
"""
from __future__ import annotations

import json
import math
import re

from .core import DetectedObject
from .tasks import BUILTIN_TASKS, canonical_label

_ANIMALS = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
            "animal"}
_VEHICLES = {"bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "van",
             "tram", "vehicle", "scooter", "taxi"}
LABEL_PRIORS: dict[str, float] = {
    "person": 1.0, "face": 1.0, "text": 1.0, "license plate": 1.0, "pedestrian": 1.0,
    "cyclist": 1.0, "rider": 1.0, "child": 1.0, "traffic light": 0.8, "stop sign": 0.8,
    "sign": 0.8, "salient region": 0.35,
    **{k: 0.8 for k in _ANIMALS | _VEHICLES},
}
for _lab in BUILTIN_TASKS["coco"]:
    LABEL_PRIORS.setdefault(_lab, 0.6)
UNKNOWN_PRIOR = 0.5
GENERIC_LABELS = {"salient region", "object"}
L1_MIN, L2_MIN = 0.62, 0.45
L1_PRIOR_MIN = 0.8  # a lower prior caps the level at L2


def heuristic_importance(o: DetectedObject, width: int, height: int,
                         task_labels: list[str] | None = None) -> tuple[float, str]:
    label = canonical_label(o.label)
    prior = LABEL_PRIORS.get(label, UNKNOWN_PRIOR)
    if task_labels:
        wanted = {canonical_label(x) for x in task_labels}
        prior = max(prior, 0.9) if label in wanted else prior * 0.5
    x0, y0, x1, y1 = o.box
    frac = max(0.0, x1 - x0) * max(0.0, y1 - y0) / max(1.0, float(width * height))
    size = min(1.0, 2.0 * math.sqrt(frac))
    cx, cy = (x0 + x1) / 2 / width - 0.5, (y0 + y1) / 2 / height - 0.5
    centrality = max(0.0, 1.0 - math.hypot(cx, cy) / math.hypot(0.5, 0.5))
    conf = min(1.0, max(0.0, float(o.score)))
    imp = 0.45 * prior + 0.20 * size + 0.15 * centrality + 0.20 * conf
    if prior < L1_PRIOR_MIN or label in GENERIC_LABELS:
        imp = min(imp, L1_MIN - 0.01)
    reason = (f"heuristic: prior {prior:.2f} ({label}), area {100 * frac:.0f}%, "
              f"centrality {centrality:.2f}, confidence {conf:.2f} -> {imp:.2f}")
    return imp, reason


def heuristic_rank(objects: list[DetectedObject], width: int, height: int,
                   task_labels: list[str] | None = None) -> None:
    """Set `level` and `reason` of every object in place (see the module docstring)."""
    for o in objects:
        imp, reason = heuristic_importance(o, width, height, task_labels)
        o.level = "L1" if imp >= L1_MIN else "L2" if imp >= L2_MIN else "L3"
        o.reason = reason


# ------------------------------------------------------------------ prompts
CAPTION_PROMPT = (
    "Describe this image. Answer with one JSON object and nothing else, in this form:\n"
    '{"short": "<one-sentence caption>", '
    '"long": "<a detailed paragraph: the scene, every notable object and how they relate>", '
    '"objects": ["<kind of object>", ...]}\n'
    '"objects" lists the kinds of objects visible in the image, one to three words each, at most 30.'
)

RANK_PROMPT = (
    "Short caption: {short}\n"
    "Long caption: {long}\n"
    "{task_line}"
    "Objects found in the image ({width}x{height} pixels), as id: label [x0, y0, x1, y1]:\n"
    "{lines}\n"
    "Rank every object by how much it matters to {goal}:\n"
    "L1 = essential (the subject, what the captions are about), "
    "L2 = important context, L3 = minor detail.\n"
    "Answer with one JSON object and nothing else, in this form:\n"
    '{{"objects": [{{"id": <id>, "level": "L1" | "L2" | "L3", "reason": "<one line>"}}, ...]}}\n'
    "with exactly one entry for each id listed above."
)

DISCOVER_PROMPT = (
    'Images will be compressed and then analysed by a machine for this task: "{task}".\n'
    "List about 100 short labels (one to three words each) of the objects, parts and regions "
    "this task needs to see in an image, the most important first.\n"
    'Answer with one JSON object and nothing else, in this form: {{"labels": ["<label>", ...]}}'
)

RETRY_PROMPT = ("Your previous answer could not be used: {error}. "
                "Answer again with one JSON object only, exactly in the form asked.")


class ParseError(ValueError):
    pass


def _json_object(text: str) -> dict:
    if not isinstance(text, str) or not text.strip():
        raise ParseError("the answer was empty")
    t = text.strip()
    fence = re.fullmatch(r"```(?:json|JSON)?\s*(.*?)\s*```", t, flags=re.S)
    if fence:
        t = fence.group(1)
    try:
        d = json.loads(t)
    except ValueError:
        # one JSON object with prose around it; nothing looser than that
        a, b = t.find("{"), t.rfind("}")
        if a < 0 or b <= a:
            raise ParseError("the answer is not JSON") from None
        try:
            d = json.loads(t[a:b + 1])
        except ValueError as e:
            raise ParseError(f"the answer is not valid JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise ParseError("the answer is not a JSON object")
    return d


def parse_caption(text: str) -> tuple[str, str, list[str]]:
    d = _json_object(text)
    short, long_ = d.get("short"), d.get("long")
    if not isinstance(short, str) or not short.strip():
        raise ParseError('"short" must be a non-empty string')
    if not isinstance(long_, str) or not long_.strip():
        raise ParseError('"long" must be a non-empty string')
    objs = d.get("objects", [])
    if not isinstance(objs, list) or not all(isinstance(x, str) for x in objs):
        raise ParseError('"objects" must be a list of strings')
    labels = [x.strip() for x in objs if x.strip() and len(x.strip()) <= 60][:30]
    return short.strip(), long_.strip(), labels


def parse_ranking(text: str, ids: list[int]) -> dict[int, tuple[str, str]]:
    d = _json_object(text)
    items = d.get("objects")
    if not isinstance(items, list):
        raise ParseError('"objects" must be a list')
    want = set(ids)
    out: dict[int, tuple[str, str]] = {}
    for it in items:
        if not isinstance(it, dict):
            raise ParseError('every entry of "objects" must be an object')
        oid = it.get("id")
        if isinstance(oid, str) and oid.strip().isdigit():
            oid = int(oid.strip())
        if not isinstance(oid, int) or isinstance(oid, bool):
            raise ParseError(f"id {oid!r} is not an integer")
        if oid not in want:
            raise ParseError(f"id {oid} is not one of the listed ids")
        if oid in out:
            raise ParseError(f"id {oid} is ranked twice")
        level = it.get("level")
        if isinstance(level, str):
            level = level.strip().upper()
        if level not in ("L1", "L2", "L3"):
            raise ParseError(f"level {it.get('level')!r} of id {oid} is not L1, L2 or L3")
        reason = it.get("reason", "")
        if not isinstance(reason, str):
            raise ParseError(f"reason of id {oid} is not a string")
        out[oid] = (level, " ".join(reason.split())[:300])
    missing = want - set(out)
    if missing:
        raise ParseError(f"ids {sorted(missing)} are missing")
    return out


def parse_labels(text: str) -> list[str]:
    d = _json_object(text)
    labels = d.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ParseError('"labels" must be a list of strings')
    labels = [x.strip() for x in labels if x.strip()]
    if not (3 <= len(labels) <= 300):
        raise ParseError(f"expected about 100 labels, got {len(labels)}")
    if any(len(x) > 60 for x in labels):
        raise ParseError("a label is longer than 60 characters")
    return labels


def ask(lmm, prompt: str, parse, image=None):
    """Ask `lmm` once, and once more with the error when the answer does not parse.

    Returns the parsed value; raises ParseError (or the backend's error) when
    both answers are unusable.
    """
    messages = [{"role": "user", "content": prompt}]
    answer = lmm.chat(messages, image=image)
    try:
        return parse(answer)
    except ParseError as e:
        messages += [{"role": "assistant", "content": str(answer)[:4000]},
                     {"role": "user", "content": RETRY_PROMPT.format(error=e)}]
    answer = lmm.chat(messages, image=image)
    return parse(answer)


def rank_prompt(objects: list[DetectedObject], width: int, height: int, short: str, long_: str,
                task: str | None) -> str:
    lines = "\n".join(f"{o.id}: {o.label} [{', '.join(str(int(round(v))) for v in o.box)}]"
                      for o in objects)
    return RANK_PROMPT.format(
        short=short or "(none)", long=long_ or "(none)",
        task_line=f"Task the decoded image will serve: {task}\n" if task else "",
        width=width, height=height, lines=lines,
        goal="the task" if task else "the meaning of the image")
