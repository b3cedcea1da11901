"""Semantic analysis: the encoder's understanding of an image.

    from sdc.analysis import analyze, load_regions, Analysis, DetectedObject, ANALYZERS

`analyze(image, analyzer=..., task=..., config=...)` runs three stages, each
with pluggable backends (heavy ones imported only when selected):

grounding (boxes, labels, scores)
    offline         faces (OpenCV Haar cascade) + text (PP-OCR detector shipped in
                    the rapidocr wheel, run by OpenCV dnn) + salient regions
                    (spectral residual). No download, deterministic.
    darknet / onnx  a detector the user brings (Darknet .cfg/.weights through
                    OpenCV, or ONNX through onnxruntime/OpenCV) with a names file.
    grounding-dino  transformers Grounding DINO (IDEA-Research/grounding-dino-tiny
                    or a local path), queried with the task's labels, else the
                    labels the LMM lists for the image, else the COCO classes.
    owlv2           transformers OWLv2, queried the same way.
masks
    box, grabcut (OpenCV GrabCut inside the box; offline default),
    sam (segment-anything checkpoint, loaded with weights_only=True),
    sam-hf (transformers SamModel id or path).
ranking into L1 / L2 / L3
    heuristic (offline default; see ranking.py), or SDComp's two prompts
    (captions, then a level and reason per object) through an OpenAI-compatible
    endpoint (lmm.OpenAICompatible) or a local transformers VLM (lmm.LocalVLM).

`--analyzer auto` (the default): the big-model pipeline when its weights are
already on the machine (a local path, or the Hugging Face cache; nothing is
downloaded unless allow_download is set), else a configured Darknet/ONNX
detector, else the offline default. `Analysis.analyzer` says what ran, e.g.
"offline(haar+ppocr+saliency)/grabcut/heuristic". Settings: config.py.

Why this offline default. Components measured alone on ../shared/data/coco128
(128 images, 525 ground-truth objects of area >= 32x32; "covered" = at least
half of the object's mask inside the boxes; seconds per image on the 2-core
dev machine while a training job runs):

    component                         objects covered   image area   s/img
    Haar frontal faces (480 px)            0.4%            0.6%      0.12
    PP-OCR text (480 px)                   7.2%            6.4%      0.17
    spectral-residual saliency, k=1.5     64.0%           41.9%      0.003
    spectral-residual saliency, k=2       37.1%           22.3%      0.003
      ... with a centre bias (chosen)     41.7%           23.7%      0.003
    spectral-residual saliency, k=3       11.2%            6.4%      0.003
    frequency-tuned saliency, k=1.5       50.9%           40.2%      0.004
    HOG people detector (OpenCV)           0.8%            0.5%      0.03

Faces and text barely cover COCO objects, but they are what machines (face
and OCR pipelines) most need kept, and they rank L1; saliency finds generic
objects at almost no cost (spectral residual beats frequency-tuned at equal
area; weighting it towards the centre helps), ranks L2/L3 (generic regions
are never L1), and k=2 keeps about a fifth of the image. Haar runs on the
image scaled to 400 px (minNeighbors 10: 11 of 12 detections on coco128 lie in
an annotated person, vs 12 of 17 at 6), PP-OCR at 384 px.

Whole pipelines (benchmarks/analysis_coco128.py, 515 non-crowd objects; wall
seconds under a load average of ~8, CPU seconds in brackets):

    analyzer                                   covered   area   s/img
    offline default (GrabCut masks)             39.8%    23.4%  0.53 (0.29 CPU)
    offline, box masks                          45.6%    28.9%  0.37 (0.20 CPU)
    darknet yolo-fastest-1.1, GrabCut           62.5%    23.9%  0.20 (0.10 CPU)
    darknet yolo-fastest-1.1, box masks         75.3%    35.7%  0.05 (0.02 CPU)
    darknet yolo-fastest-1.1-xl, box masks      84.7%    39.7%  0.09 (0.05 CPU)

Faces, Haar vs MTCNN (facenet-pytorch 2.6 installed with --no-deps into a
scratch directory just to measure it; coco128, detections whose centre lies in
an annotated person / elsewhere, CPU seconds per image):

    Haar (as configured)    10 / 1     0.08 CPU s/img
    MTCNN (p > 0.9)         51 / 1     1.59 CPU s/img

MTCNN finds five times the faces but costs 19 times the
CPU, over the offline budget, and cannot be a dependency: facenet-pytorch 2.6
pins torch<2.3 and Pillow<10.3. Other rejected options: rapidocr-onnxruntime
(pulls opencv-python, which clashes with opencv-python-headless); OpenCV's
saliency module (only in opencv-contrib, which clashes the same way); OpenCV's
HOG people detector (table above). The
`rapidocr` 3.x wheel depends on opencv-python-headless and ships its PP-OCR
models; only its detector's ONNX file is used, through OpenCV.
"""
from __future__ import annotations

from .core import Analysis, DetectedObject
from .pipeline import ANALYZERS, MASKERS, RANKERS, analyze
from .regions import load_regions

__all__ = ["Analysis", "DetectedObject", "analyze", "load_regions", "ANALYZERS", "MASKERS", "RANKERS"]
