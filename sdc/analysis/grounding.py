"""Open-vocabulary grounding through transformers: Grounding DINO and OWLv2.

Models load from a local path or the Hugging Face cache (local_files_only
unless allow_download is set); trust_remote_code only when the config says so.
"""
from __future__ import annotations

import re

Detection = tuple[str, tuple[float, float, float, float], float]

# Grounding DINO reads at most 256 text tokens; a chunk of labels stays well below.
GDINO_LABELS_PER_QUERY = 24


def _match_label(phrase: str, queries: list[str]) -> str:
    p = " ".join(phrase.lower().replace(".", " ").split())
    if not p:
        return queries[0] if len(queries) == 1 else "object"
    lowered = {q.lower(): q for q in queries}
    if p in lowered:
        return lowered[p]
    words = set(re.findall(r"[a-z0-9]+", p))
    best, best_n = None, 0
    for q in queries:
        n = len(words & set(re.findall(r"[a-z0-9]+", q.lower())))
        if n > best_n:
            best, best_n = q, n
    return best or "object"


def _nms(dets: list[Detection], iou: float = 0.5) -> list[Detection]:
    import numpy as np

    dets = sorted(dets, key=lambda d: -d[2])
    keep: list[Detection] = []
    for d in dets:
        b = np.array(d[1])
        ok = True
        for k in keep:
            if k[0] != d[0]:
                continue
            c = np.array(k[1])
            ix = max(0.0, min(b[2], c[2]) - max(b[0], c[0]))
            iy = max(0.0, min(b[3], c[3]) - max(b[1], c[1]))
            inter = ix * iy
            union = (b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            keep.append(d)
    return keep


class GroundingDetector:
    def __init__(self, kind: str, model: str, cfg: dict):
        import torch
        from transformers import AutoProcessor

        self.torch = torch
        self.kind = kind
        from .config import hf_kwargs, hf_model_kwargs

        kw = hf_kwargs(cfg)
        self.processor = AutoProcessor.from_pretrained(model, **kw)
        if kind == "grounding-dino":
            from transformers import GroundingDinoForObjectDetection as M
        elif kind == "owlv2":
            from transformers import Owlv2ForObjectDetection as M
        else:
            raise ValueError(f"unknown grounding model kind {kind!r}")
        self.model = M.from_pretrained(model, **hf_model_kwargs(cfg)).eval()
        self.device = cfg.get("device") or "cpu"
        self.model.to(self.device)
        self.box_threshold = float(cfg.get("box_threshold", 0.3))
        self.text_threshold = float(cfg.get("text_threshold", 0.25))
        short = model.rstrip("/").split("/")[-1]
        self.name = f"{kind}({short})"

    def detect(self, image, labels: list[str]) -> list[Detection]:
        image = image.convert("RGB")
        labels = [lab for lab in dict.fromkeys(x.strip() for x in labels) if lab]
        if not labels:
            return []
        if self.kind == "grounding-dino":
            out: list[Detection] = []
            for i in range(0, len(labels), GDINO_LABELS_PER_QUERY):
                out += self._gdino(image, labels[i:i + GDINO_LABELS_PER_QUERY])
            return _nms(out)
        return _nms(self._owlv2(image, labels))

    def _gdino(self, image, labels: list[str]) -> list[Detection]:
        text = ". ".join(x.lower() for x in labels) + "."
        inputs = self.processor(images=image, text=text, return_tensors="pt").to(self.device)
        with self.torch.inference_mode():
            outputs = self.model(**inputs)
        res = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold,
            text_threshold=self.text_threshold, target_sizes=[(image.height, image.width)])[0]
        names = res["text_labels"] if "text_labels" in res else res["labels"]
        return [(_match_label(str(n), labels), tuple(float(v) for v in b), float(s))
                for b, s, n in zip(res["boxes"].tolist(), res["scores"].tolist(), names)]

    def _owlv2(self, image, labels: list[str]) -> list[Detection]:
        inputs = self.processor(text=[labels], images=image, truncation=True, return_tensors="pt").to(self.device)
        with self.torch.inference_mode():
            outputs = self.model(**inputs)
        # OWLv2 pads the image to a square before resizing: boxes are relative to that square
        side = max(image.width, image.height)
        res = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.box_threshold, target_sizes=[(side, side)], text_labels=[labels])[0]
        return [(labels[int(li)], tuple(float(v) for v in b), float(s))
                for b, s, li in zip(res["boxes"].tolist(), res["scores"].tolist(), res["labels"].tolist())]
