"""Detectors a user brings: Darknet (.cfg + .weights) through OpenCV's dnn module,
or an ONNX model (onnxruntime when installed, else OpenCV), with a class-names file.

Both expect YOLO-style outputs:
- Darknet through OpenCV: rows [cx, cy, w, h, objectness, class scores...],
  coordinates relative to the image, class scores already times objectness.
- ONNX: (1, N, 5 + C) (YOLOv5 style: objectness then class scores) or
  (1, 4 + C, N) / (1, N, 4 + C) (YOLOv8 style: class scores only); coordinates
  in input pixels or relative (<= 1.5 everywhere).
The image is resized (not letterboxed) to the square input size; boxes are
kept above `threshold` and de-duplicated per class by NMS (IoU 0.45).

The package's own COCO detector (offline.coco_detector) is a DarknetDetector
built from the hash-checked bytes in sdc/analysis/data/.
"""
from __future__ import annotations

import os
import re

import numpy as np

from sdc.errors import UsageError

from .tasks import canonical_label

Detection = tuple[str, tuple[float, float, float, float], float]

# Score threshold of a user's detector when detector_threshold is not set.
USER_THRESHOLD = 0.3


def read_names(path: str | None) -> list[str]:
    if not path:
        raise UsageError("a detector needs a class-names file (detector_names: one name per line)")
    try:
        with open(path, encoding="utf-8") as f:
            names = [ln.strip() for ln in f if ln.strip()]
    except OSError as e:
        raise UsageError(f"cannot read class names {path}: {e.strerror}") from None
    if not names:
        raise UsageError(f"class names file {path} is empty")
    return names


def _nms(rows: list[tuple[int, float, list[float]]], iou: float = 0.45) -> list[tuple[int, float, list[float]]]:
    import cv2

    out = []
    by_class: dict[int, list] = {}
    for r in rows:
        by_class.setdefault(r[0], []).append(r)
    for _, rs in sorted(by_class.items()):
        boxes = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for _, _, b in rs]
        scores = [s for _, s, _ in rs]
        keep = cv2.dnn.NMSBoxes(boxes, scores, 0.0, iou)
        out += [rs[int(k)] for k in np.asarray(keep).ravel()]
    out.sort(key=lambda r: -r[1])
    return out


def with_score_floor(cfg_text: str, threshold: float) -> str:
    """The Darknet .cfg text with `thresh` of every [yolo] and [region] layer set to `threshold`.

    OpenCV's importer zeroes the class scores below that layer setting (0.2 when
    the .cfg has none), so without this a threshold under 0.2 finds nothing more."""
    out, in_output_layer = [], False
    for line in cfg_text.splitlines():
        section = re.fullmatch(r"\s*\[(\w+)\]\s*", line)
        if section:
            in_output_layer = section.group(1) in ("yolo", "region")
            out.append(line)
            if in_output_layer:
                out.append(f"thresh={threshold:.6g}")
            continue
        if in_output_layer and re.match(r"\s*thresh\s*=", line):
            continue  # the last `thresh` of a section wins in OpenCV: keep only ours
        out.append(line)
    return "\n".join(out) + "\n"


def _read_bytes(path: str, what: str) -> bytes:
    if not path or not os.path.isfile(path):
        raise UsageError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {what} file {path}: {e.strerror}") from None


class DarknetDetector:
    """A Darknet YOLO model (.cfg text, .weights bytes, class names) run by OpenCV's dnn module."""

    def __init__(self, cfg: bytes, weights: bytes, names: list[str], name: str, input_size: int = 320,
                 threshold: float = USER_THRESHOLD):
        import cv2

        self.names = list(names)
        self.size = int(input_size)
        self.threshold = float(threshold)
        self.name = name
        text = with_score_floor(cfg.decode("utf-8", errors="replace"), self.threshold)
        try:
            self.net = cv2.dnn.readNetFromDarknet(np.frombuffer(text.encode("utf-8"), np.uint8),
                                                  np.frombuffer(weights, np.uint8))
        except cv2.error as e:
            raise UsageError(f"OpenCV cannot load the Darknet model {name}: {str(e).strip()[:200]}") from None
        self.out_names = self.net.getUnconnectedOutLayersNames()

    @classmethod
    def from_files(cls, cfg: str, weights: str, names: str, input_size: int = 320,
                   threshold: float = USER_THRESHOLD) -> "DarknetDetector":
        """A detector the user brings: paths of the .cfg, .weights and class-names files."""
        cfg_bytes = _read_bytes(cfg, "Darknet .cfg")
        weights_bytes = _read_bytes(weights, "Darknet .weights")
        return cls(cfg_bytes, weights_bytes, read_names(names), f"darknet({os.path.basename(weights)})",
                   input_size, threshold)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        blob = cv2.dnn.blobFromImage(rgb, 1 / 255.0, (self.size, self.size), swapRB=False, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.out_names)
        rows = []
        for o in outs:
            o = o.reshape(-1, o.shape[-1])
            scores = o[:, 5:]
            cls = scores.argmax(axis=1)
            conf = scores[np.arange(len(o)), cls]
            keep = conf > self.threshold
            for r, c, s in zip(o[keep], cls[keep], conf[keep]):
                cx, cy, bw, bh = r[0] * w, r[1] * h, r[2] * w, r[3] * h
                rows.append((int(c), float(s), [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
        return [(self._label(c), tuple(b), s) for c, s, b in _nms(rows)]

    def _label(self, c: int) -> str:
        return canonical_label(self.names[c]) if 0 <= c < len(self.names) else f"class {c}"


class OnnxDetector:
    def __init__(self, path: str, names: str, input_size: int = 640, threshold: float = USER_THRESHOLD):
        if not path or not os.path.isfile(path):
            raise UsageError(f"ONNX detector file not found: {path}")
        self.names = read_names(names)
        self.threshold = float(threshold)
        self.size = int(input_size)
        self.name = f"onnx({os.path.basename(path)})"
        self.session = None
        self.net = None
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
            self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            inp = self.session.get_inputs()[0]
            self.input_name = inp.name
            shape = inp.shape
            if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
                self.hw = (shape[2], shape[3])
            else:
                self.hw = (self.size, self.size)
        except ImportError:
            import cv2

            try:
                self.net = cv2.dnn.readNetFromONNX(path)
            except cv2.error as e:
                raise UsageError(f"OpenCV cannot load the ONNX model {path}: {str(e).strip()[:200]}") from None
            self.hw = (self.size, self.size)
        except Exception as e:  # onnxruntime's load errors have no common base class
            raise UsageError(f"cannot load the ONNX model {path}: {str(e)[:200]}") from None

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        ih, iw = self.hw
        x = cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        if self.session is not None:
            out = self.session.run(None, {self.input_name: x})[0]
        else:
            self.net.setInput(x)
            out = self.net.forward()
        return self._parse(np.asarray(out, dtype=np.float32), w, h, iw, ih)

    def _parse(self, out: np.ndarray, w: int, h: int, iw: int, ih: int) -> list[Detection]:
        nc = len(self.names)
        a = out.reshape(-1, *out.shape[-2:])[0] if out.ndim >= 2 else out.reshape(1, -1)
        if a.shape[-1] == 5 + nc:
            conf_all = a[:, 5:] * a[:, 4:5]
            boxes = a[:, :4]
        elif a.shape[-1] == 4 + nc:
            conf_all, boxes = a[:, 4:], a[:, :4]
        elif a.shape[0] == 4 + nc:
            a = a.T
            conf_all, boxes = a[:, 4:], a[:, :4]
        elif a.shape[0] == 5 + nc:
            a = a.T
            conf_all, boxes = a[:, 5:] * a[:, 4:5], a[:, :4]
        else:
            raise UsageError(f"{self.name}: output shape {tuple(out.shape)} does not match "
                             f"{nc} class names (expected N x {4 + nc} or N x {5 + nc})")
        cls = conf_all.argmax(axis=1) if len(a) else np.zeros(0, int)
        conf = conf_all[np.arange(len(a)), cls] if len(a) else np.zeros(0)
        relative = len(boxes) > 0 and float(np.abs(boxes).max()) <= 1.5
        sx, sy = (w, h) if relative else (w / iw, h / ih)
        rows = []
        for b, c, s in zip(boxes[conf > self.threshold], cls[conf > self.threshold], conf[conf > self.threshold]):
            cx, cy, bw, bh = b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy
            rows.append((int(c), float(s), [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
        return [(canonical_label(self.names[c]), tuple(b), s) for c, s, b in _nms(rows)]
