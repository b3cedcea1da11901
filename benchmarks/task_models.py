"""Task models that judge decoded images, behind one small interface per task.

    detector.detect(rgb)     -> [(coco_category_id, [x, y, w, h] in pixels, score), ...]
    segmenter.segment(rgb)   -> (H, W) uint8 PASCAL VOC class map (0 = background .. 20)
    classifier.classify(rgb) -> top-1 class index

Detectors come in three runtimes so that a user can bring their own:
TFLite (the quantised SSD-MobileNet v1 of ``shared/evalmodels``, the default),
ONNX (onnxruntime) and Darknet (OpenCV dnn), the last two with YOLO-style
outputs as in ``sdc/analysis/detectors.py``. Class names are mapped onto the
COCO category ids of the annotation file by name (``canonical_label`` turns
"motorbike" into "motorcycle" and so on); a class with no COCO category is
dropped.

Every model has a ``fingerprint``: its file hash plus a version string naming
its pre- and post-processing. The benchmark caches task outputs under it, so a
change of model or of processing must change the version string.

Everything runs on one thread: the benchmark shares a 2-core machine, and one
thread makes the per-image times comparable between runs.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from common import SHARED

EVALMODELS = SHARED / "evalmodels"
SSD_PATH = EVALMODELS / "ssd_mobilenet_v1_coco_quant_detect" / "detect.tflite"
SSD_LABELS = EVALMODELS / "ssd_mobilenet_v1_coco_quant_detect" / "labelmap.txt"
DEEPLAB_PATH = EVALMODELS / "deeplabv3_mnv2_pascal_quant" / "deeplabv3_mnv2_pascal_quant.tflite"
MOBILENET_PATH = EVALMODELS / "mobilenet_v2_1.0_224_quant" / "mobilenet_v2_1.0_224_quant.tflite"

Detection = tuple[int, list[float], float]
MAX_DETECTIONS = 100  # per image, as COCO's evaluation counts them
SCORE_FLOOR = 0.01  # YOLO-style detectors: keep low scores, mAP needs the whole precision-recall curve
NMS_IOU = 0.45


@functools.lru_cache(maxsize=None)
def file_sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_lines(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def coco_ids_by_name(categories: list[dict]) -> dict[str, int]:
    from sdc.analysis.tasks import canonical_label

    return {canonical_label(c["name"]): int(c["id"]) for c in categories}


def names_to_coco_ids(names: list[str], categories: list[dict]) -> list[int | None]:
    """COCO category id of each class name (None: not a COCO category)."""
    from sdc.analysis.tasks import canonical_label

    by_name = coco_ids_by_name(categories)
    return [by_name.get(canonical_label(n)) for n in names]


def resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


# ----------------------------------------------------------------------------- TFLite
class TfliteModel:
    """One interpreter with one thread; run(x) takes an (H, W, 3) uint8 image of the input size.

    keep_tensors: keep every intermediate tensor readable after run() (for features)."""

    def __init__(self, path: Path, keep_tensors: bool = False):
        import warnings

        from ai_edge_litert.interpreter import Interpreter

        if not Path(path).is_file():
            raise FileNotFoundError(f"task model not found: {path} (set SDC_SHARED)")
        self.path = str(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # preserve_all_tensors' "for debugging only" note
            self.interpreter = Interpreter(model_path=self.path, num_threads=1,
                                           experimental_preserve_all_tensors=keep_tensors)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        if inp["dtype"] != np.uint8 or len(inp["shape"]) != 4 or inp["shape"][3] != 3:
            raise ValueError(f"{path}: expected a uint8 (1, H, W, 3) input, got {inp['dtype']} {inp['shape']}")
        self.input_index = inp["index"]
        self.height, self.width = int(inp["shape"][1]), int(inp["shape"][2])
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(x, np.uint8)[None])
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i).copy() for i in self.outputs]


class TfliteSsdDetector:
    """SSD-MobileNet v1 COCO (quantised) with TFLite's detection post-process op.

    The TF Object Detection API trained it on the image stretched to 300x300
    (fixed_shape_resizer), so it is fed the same way. Output class c is the
    labelmap's line c + 1, and line i is COCO category id i ("???" at the ids
    COCO left unused); the constructor checks that against the annotation
    file's category names. The op returns at most 10 boxes, so fewer than
    COCO's 100 per image are ever scored.
    """

    VERSION = "tflite-ssd v1: PIL bilinear stretch to input size; class c -> COCO id c+1; boxes clipped"

    def __init__(self, categories: list[dict], path: Path = SSD_PATH, labelmap: Path = SSD_LABELS):
        self.model = TfliteModel(path)
        labels = read_lines(labelmap)
        names = {int(c["id"]): c["name"] for c in categories}
        wrong = [(i, lab, names[i]) for i, lab in enumerate(labels) if i in names and lab != names[i]]
        if wrong:
            raise ValueError(f"{labelmap}: line i is not COCO category i: {wrong[:3]}")
        self.valid = set(names)
        self.name = f"tflite({Path(path).name})"
        self.fingerprint = f"{self.VERSION}|{file_sha(str(path))}"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        boxes, classes, scores, count = self.model.run(resize(rgb, self.model.width, self.model.height))
        out = []
        for b, c, s in zip(boxes[0][: int(count[0])], classes[0], scores[0]):
            cid = int(c) + 1
            if cid not in self.valid:
                continue
            y0, x0, y1, x1 = np.clip(b, 0.0, 1.0) * [h, w, h, w]
            out.append((cid, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], float(s)))
        return out[:MAX_DETECTIONS]


# ----------------------------------------------------------------------------- YOLO-style (ONNX, Darknet)
def _nms_top(rows: list[tuple[int, float, list[float]]]) -> list[tuple[int, float, list[float]]]:
    """Per-class NMS of (class, score, [x0, y0, x1, y1]) rows, best MAX_DETECTIONS overall."""
    import cv2

    by_class: dict[int, list] = {}
    for r in rows:
        by_class.setdefault(r[0], []).append(r)
    kept = []
    for rs in by_class.values():
        boxes = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for _, _, b in rs]
        keep = cv2.dnn.NMSBoxes(boxes, [s for _, s, _ in rs], 0.0, NMS_IOU)
        kept += [rs[int(k)] for k in np.asarray(keep).ravel()]
    kept.sort(key=lambda r: -r[1])
    return kept[:MAX_DETECTIONS]


def _yolo_rows(boxes: np.ndarray, conf: np.ndarray, sx: float, sy: float) -> list[tuple[int, float, list[float]]]:
    """Rows of the best class per box above SCORE_FLOOR; boxes are (cx, cy, w, h) scaled by (sx, sy)."""
    if not len(boxes):
        return []
    cls = conf.argmax(axis=1)
    best = conf[np.arange(len(conf)), cls]
    rows = []
    for b, c, s in zip(boxes[best > SCORE_FLOOR], cls[best > SCORE_FLOOR], best[best > SCORE_FLOOR]):
        cx, cy, bw, bh = b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy
        rows.append((int(c), float(s), [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
    return rows


def _to_detections(rows, coco_ids: list[int | None], w: int, h: int) -> list[Detection]:
    out = []
    for c, s, (x0, y0, x1, y1) in _nms_top(rows):
        cid = coco_ids[c] if 0 <= c < len(coco_ids) else None
        if cid is None:
            continue
        x0, x1 = max(0.0, x0), min(float(w), x1)
        y0, y1 = max(0.0, y0), min(float(h), y1)
        if x1 > x0 and y1 > y0:
            out.append((cid, [x0, y0, x1 - x0, y1 - y0], s))
    return out


class OnnxDetector:
    """A YOLO-style ONNX detector (onnxruntime, 1 thread), input (1, 3, H, W) RGB / 255 stretched.

    Output (1, N, 5 + C) (YOLOv5: objectness, class scores) or (1, 4 + C, N) /
    (1, N, 4 + C) (YOLOv8: class scores); boxes cx, cy, w, h in input pixels,
    or relative when no coordinate exceeds 1.5.
    """

    VERSION = "onnx-yolo v1: PIL bilinear stretch, RGB/255 NCHW; v5/v8 layouts; floor 0.01; NMS 0.45; top 100"

    def __init__(self, path: str, names: str, categories: list[dict], input_size: int = 640):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        fixed = len(inp.shape) == 4 and all(isinstance(v, int) for v in inp.shape[2:])
        self.hw = (inp.shape[2], inp.shape[3]) if fixed else (input_size, input_size)
        self.names = read_lines(names)
        self.coco_ids = names_to_coco_ids(self.names, categories)
        self.name = f"onnx({Path(path).name})"
        self.fingerprint = f"{self.VERSION}|{file_sha(str(path))}|{file_sha(str(names))}|{self.hw}"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        ih, iw = self.hw
        x = resize(rgb, iw, ih).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        out = np.asarray(self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0], np.float32)
        boxes, conf = self._split(out)
        relative = len(boxes) > 0 and float(np.abs(boxes).max()) <= 1.5
        sx, sy = (w, h) if relative else (w / iw, h / ih)
        return _to_detections(_yolo_rows(boxes, conf, sx, sy), self.coco_ids, w, h)

    def _split(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nc = len(self.names)
        a = out.reshape(-1, *out.shape[-2:])[0]
        if a.shape[-1] not in (4 + nc, 5 + nc) and a.shape[0] in (4 + nc, 5 + nc):
            a = a.T
        if a.shape[-1] == 5 + nc:
            return a[:, :4], a[:, 5:] * a[:, 4:5]
        if a.shape[-1] == 4 + nc:
            return a[:, :4], a[:, 4:]
        raise ValueError(f"{self.name}: output {tuple(out.shape)} does not fit {nc} class names")


class DarknetDetector:
    """A Darknet YOLO (.cfg + .weights) through OpenCV dnn; rows [cx, cy, w, h, obj, class scores], relative."""

    VERSION = "darknet-yolo v1: cv2 blob 1/255 stretch, class scores as given; floor 0.01; NMS 0.45; top 100"

    def __init__(self, cfg: str, weights: str, names: str, categories: list[dict], input_size: int | None = None):
        import cv2

        cv2.setNumThreads(1)
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.size = int(input_size or self._cfg_size(cfg))
        self.names = read_lines(names)
        self.coco_ids = names_to_coco_ids(self.names, categories)
        self.name = f"darknet({Path(weights).name})"
        self.fingerprint = (f"{self.VERSION}|{file_sha(str(cfg))}|{file_sha(str(weights))}|"
                            f"{file_sha(str(names))}|{self.size}")

    @staticmethod
    def _cfg_size(cfg: str) -> int:
        for line in read_lines(cfg):
            if line.replace(" ", "").startswith("width="):
                return int(line.split("=", 1)[1])
        return 416

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        self.net.setInput(cv2.dnn.blobFromImage(rgb, 1 / 255.0, (self.size, self.size), swapRB=False, crop=False))
        rows = []
        for o in self.net.forward(self.out_names):
            o = o.reshape(-1, o.shape[-1])
            rows += _yolo_rows(o[:, :4], o[:, 5:], w, h)
        return _to_detections(rows, self.coco_ids, w, h)


def make_detector(spec: str | None, categories: list[dict]):
    """A detector from a command-line spec.

        None / "ssd"                        the shared SSD-MobileNet v1 (TFLite)
        tflite:MODEL[:LABELMAP]             an SSD with TFLite's post-process op and a COCO labelmap
        onnx:MODEL:NAMES[:SIZE]             a YOLO-style ONNX model
        darknet:CFG:WEIGHTS:NAMES[:SIZE]    a Darknet YOLO
    """
    if not spec or spec == "ssd":
        return TfliteSsdDetector(categories)
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "tflite" and 1 <= len(parts) <= 2:
        return TfliteSsdDetector(categories, Path(parts[0]), Path(parts[1]) if len(parts) > 1 else SSD_LABELS)
    if kind == "onnx" and 2 <= len(parts) <= 3:
        return OnnxDetector(parts[0], parts[1], categories, *(int(p) for p in parts[2:]))
    if kind == "darknet" and 3 <= len(parts) <= 4:
        return DarknetDetector(parts[0], parts[1], parts[2], categories, *(int(p) for p in parts[3:]))
    raise ValueError(f"bad detector spec {spec!r} (see task_models.make_detector)")


# ----------------------------------------------------------------------------- segmentation, classification
class DeeplabSegmenter:
    """DeepLabv3 MobileNetV2 (PASCAL VOC, quantised), 513x513 -> class map.

    As in DeepLab's own demo, the image is resized (bilinear) so that its long
    side is 513 and padded with the mean pixel (128, which the quantised input
    maps to 0); the valid part of the output is resized back to the image size
    with nearest neighbour, so maps are compared at the image's own size.
    """

    VERSION = "deeplab v1: long side to 513 (PIL bilinear), pad 128 bottom/right; crop; nearest back to image size"

    def __init__(self, path: Path = DEEPLAB_PATH):
        self.model = TfliteModel(path)
        self.name = f"tflite({Path(path).name})"
        self.fingerprint = f"{self.VERSION}|{file_sha(str(path))}"

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        h, w = rgb.shape[:2]
        side = self.model.height
        s = side / max(h, w)
        rh, rw = max(1, round(h * s)), max(1, round(w * s))
        x = np.full((side, side, 3), 128, np.uint8)
        x[:rh, :rw] = resize(rgb, rw, rh)
        labels = self.model.run(x)[0][0][:rh, :rw].astype(np.uint8)
        return np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))


class MobilenetClassifier:
    """MobileNetV2 1.0 224 (ImageNet, 1001 classes with background first, quantised).

    TF-slim's evaluation preprocessing: the central 87.5% of the image, resized
    (bilinear) to 224x224.
    """

    VERSION = "mobilenet v1: central 87.5% crop, PIL bilinear to input size; argmax"

    def __init__(self, path: Path = MOBILENET_PATH, keep_tensors: bool = False):
        self.model = TfliteModel(path, keep_tensors)
        self.name = f"tflite({Path(path).name})"
        self.fingerprint = f"{self.VERSION}|{file_sha(str(path))}"

    def classify(self, rgb: np.ndarray) -> int:
        h, w = rgb.shape[:2]
        ch, cw = max(1, round(h * 0.875)), max(1, round(w * 0.875))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        x = resize(np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw]), self.model.width, self.model.height)
        return int(np.argmax(self.model.run(x)[0][0]))

