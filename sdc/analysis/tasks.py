"""Task labels (DISCOVER): the list of labels an analysis looks for, given a task.

`--task "..."` is resolved once per task text:
1. a built-in list when the task names one (see BUILTIN_TASKS / TASK_ALIASES);
2. else a cached list under $XDG_CACHE_HOME/sdc/tasks/<sha256(task)>.json;
3. else the LMM (when one is configured) turns the task into about 100
   labels, which are cached for every later image;
4. else the built-in list whose labels the task text mentions (COCO by
   default), with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from sdc.bitstream.tables import COCO_LABELS as _FORMAT_COCO_LABELS

# COCO's 80 classes: the same list as the first entries of the format's label table.
COCO_LABELS = list(_FORMAT_COCO_LABELS)

PEOPLE_LABELS = [
    "person", "face", "head", "hand", "pedestrian", "child", "cyclist", "rider", "crowd",
    "body", "eye", "license plate",
]

VEHICLE_LABELS = [
    "car", "truck", "bus", "motorcycle", "bicycle", "van", "train", "tram", "boat", "airplane",
    "trailer", "taxi", "ambulance", "police car", "fire truck", "tractor", "scooter",
    "license plate", "traffic light", "stop sign", "traffic sign", "pedestrian", "cyclist",
]

TEXT_LABELS = [
    "text", "sign", "license plate", "document", "page", "label", "poster", "screen",
    "book", "logo", "street sign", "price tag", "receipt", "banner", "number",
]

BUILTIN_TASKS: dict[str, list[str]] = {
    "coco": COCO_LABELS,
    "people": PEOPLE_LABELS,
    "vehicles": VEHICLE_LABELS,
    "text": TEXT_LABELS,
}

# Task texts (lower-cased, stripped) that select a built-in list directly.
TASK_ALIASES: dict[str, str] = {
    "coco": "coco", "coco detection": "coco", "detection": "coco", "object detection": "coco",
    "detect objects": "coco", "objects": "coco",
    "classification": "coco", "image classification": "coco", "classify": "coco", "recognition": "coco",
    "segmentation": "coco", "semantic segmentation": "coco", "instance segmentation": "coco",
    "people": "people", "person": "people", "persons": "people", "faces": "people", "face": "people",
    "people and faces": "people", "person detection": "people", "face detection": "people",
    "vehicles": "vehicles", "vehicle": "vehicles", "cars": "vehicles", "traffic": "vehicles",
    "vehicle detection": "vehicles",
    "text": "text", "ocr": "text", "text/ocr": "text", "text detection": "text", "read text": "text",
}

# Names other label sets use for COCO classes (Darknet coco.names, VOC).
LABEL_SYNONYMS: dict[str, str] = {
    "motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
    "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv",
    "tv monitor": "tv", "television": "tv", "people": "person", "man": "person",
    "woman": "person", "boy": "person", "girl": "person", "human": "person",
}


def canonical_label(label: str) -> str:
    t = re.sub(r"\s+", " ", label.strip().lower())
    return LABEL_SYNONYMS.get(t, t)


def builtin_for(task: str) -> str | None:
    """Name of the built-in list a task text selects directly, or None."""
    t = re.sub(r"\s+", " ", task.strip().lower()).rstrip(".")
    return TASK_ALIASES.get(t)


def guess_builtin(task: str) -> str:
    """The built-in list whose labels the task text mentions most (COCO when none)."""
    t = task.lower()
    words = set(re.findall(r"[a-z]+", t))
    best, best_n = "coco", 0
    for name in ("people", "vehicles", "text"):
        n = sum(1 for lab in BUILTIN_TASKS[name] if lab in t or lab + "s" in words)
        n += sum(1 for alias, target in TASK_ALIASES.items() if target == name and alias in words)
        if n > best_n:
            best, best_n = name, n
    return best


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sdc" / "tasks"


def cache_path(task: str) -> Path:
    return cache_dir() / (hashlib.sha256(task.encode("utf-8")).hexdigest() + ".json")


def read_cache(task: str) -> list[str] | None:
    p = cache_path(task)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    labels = d.get("labels") if isinstance(d, dict) else None
    if d.get("task") != task or not valid_labels(labels):
        return None
    return labels


def write_cache(task: str, labels: list[str], source: str) -> None:
    p = cache_path(task)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps({"task": task, "labels": labels, "source": source}, indent=1),
                       encoding="utf-8")
        os.replace(tmp, p)
    except OSError:
        pass  # a read-only cache only costs a second DISCOVER call


def valid_labels(labels) -> bool:
    return (isinstance(labels, list) and 1 <= len(labels) <= 300
            and all(isinstance(x, str) and 0 < len(x.strip()) <= 60 for x in labels))


def clean_labels(labels: list[str]) -> list[str]:
    out, seen = [], set()
    for x in labels:
        c = canonical_label(x)
        if c and c not in seen:
            seen.add(c)
            out.append(c)
    return out


def resolve_task(task: str, lmm=None, warnings: list[str] | None = None) -> tuple[list[str], str]:
    """Labels for a task and where they came from ("builtin:coco", "cache", "lmm:<name>", "guess:coco").

    `lmm` is an object with a `discover(task) -> list[str]` method (see lmm.py) or None.
    """
    warnings = warnings if warnings is not None else []
    name = builtin_for(task)
    if name:
        return list(BUILTIN_TASKS[name]), f"builtin:{name}"
    cached = read_cache(task)
    if cached:
        return cached, "cache"
    if lmm is not None:
        from .ranking import ParseError

        try:
            labels = lmm.discover(task)
        except ParseError as e:  # unusable answers; transport errors go to the caller
            labels = None
            warnings.append(f"task labels: {lmm.name} gave unusable answers twice ({e}); using a built-in list")
        if labels:
            labels = clean_labels(labels)
            write_cache(task, labels, lmm.name)
            return labels, f"lmm:{lmm.name}"
    guess = guess_builtin(task)
    if lmm is None:
        warnings.append(f"task labels: no LMM configured; using the built-in '{guess}' list for this task")
    return list(BUILTIN_TASKS[guess]), f"guess:{guess}"
