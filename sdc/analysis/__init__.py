"""Semantic analysis: the encoder's understanding of an image.

    from sdc.analysis import analyze, load_regions, Analysis, DetectedObject, ANALYZERS

`analyze(image, analyzer=..., task=..., config=...)` runs three stages, each
with backends looked up by name (backends.py registers them, registry.py
holds the registries; heavy ones are imported only when selected):

grounding (boxes, labels, scores)
    offline         COCO objects (Yolo-Fastest 1.1-XL, shipped in the package) +
                    faces (OpenCV Haar cascade, inside the people found) + text
                    (PP-OCR detector shipped in the rapidocr wheel, run by OpenCV
                    dnn); salient regions (spectral residual) only when the COCO
                    detector finds nothing. No download, deterministic.
    darknet / onnx  a detector the user brings (Darknet .cfg/.weights through
                    OpenCV, or ONNX through onnxruntime/OpenCV) with a names file.
    grounding-dino  transformers Grounding DINO (IDEA-Research/grounding-dino-tiny
                    or a local path), queried with the task's labels, else the
                    labels the LMM lists for the image, else the COCO classes.
    owlv2           transformers OWLv2, queried the same way.
masks
    box (the default for a detector's objects: offline, darknet, onnx),
    grabcut (OpenCV GrabCut inside the box; the default for big-model boxes
    without SAM), sam (segment-anything checkpoint, loaded with
    weights_only=True), sam-hf (transformers SamModel id or path).
ranking into L1 / L2 / L3
    heuristic (offline default; see ranking.py), or SDComp's two prompts
    (captions, then a level and reason per object) through an OpenAI-compatible
    endpoint (lmm.OpenAICompatible) or a local transformers VLM (lmm.LocalVLM).

`--analyzer auto` (the default): the big-model pipeline when its weights are
already on the machine (a local path, or the Hugging Face cache; nothing is
downloaded unless allow_download is set), else a configured Darknet/ONNX
detector, else the offline default. `Analysis.analyzer` says what ran, e.g.
"offline(yolo-fastest-1.1-xl+haar+ppocr)/box/heuristic" ("+saliency" when
salient regions were added). Settings (config.py, spec/ANALYSIS.md):
detector_threshold, detector_input_size, masks, box_margin, box_margin_px,
offline_saliency.

What ships. sdc/analysis/data/ holds Yolo-Fastest 1.1-XL (yolo-fastest-1.1-xl.cfg
and .weights, 3.7 MB; 80 COCO classes, mAP@0.5 34.3% on COCO val2017 by its
authors' log) from dog-qiuqiu/Yolo-Fastest, with coco.names, its LICENSE
(YOLO licence v2, public-domain style) and yolo-fastest.json (the source
revision, licence, sha256 of each file). offline.coco_detector
reads each file once, checks its sha256 against the manifest (a mismatch is a
one-line BadInputError) and gives OpenCV's dnn module those bytes; the model is
loaded once per process. The detector runs at 320x320 and keeps detections
scoring above 0.15.

Why this offline default. Measured by benchmarks/analysis_coco128.py
(results/analysis_coco128.json) on ../shared/data/coco128: 128 images, 515
non-crowd objects of area >= 32x32; an object is covered when at least half of
its mask lies in the L1-L3 regions, by their pixels ("px") or by the codec's
region map of 16x16 cells (dilated by one cell, "map"); areas are mean shares
of the image. coco128 are COCO train2017 images, which Yolo-Fastest was
trained on, so its recall there is optimistic.

The detectors' boxes alone and with the offline faces and text (seconds per
image for the detector alone, wall and CPU, on the 2-core machine under a load
average of about 5):

    model   input  thr.  | detector boxes           | + faces + text | s/img (CPU)
                         | cov. px  map  area px map | cov. map  area |
    1.1     320    0.05  |  93.8  97.1  49.6  62.0   |  97.1   64.2   | 0.035 (0.018)
    1.1     320    0.10  |  88.5  92.4  44.6  55.9   |  92.8   59.0   |
    1.1     320    0.20  |  80.4  85.6  38.3  48.6   |  86.4   52.5   |
    1.1     416    0.05  |  89.5  93.2  42.1  55.8   |  93.8   59.2   | 0.053 (0.027)
    1.1     480    0.05  |  88.3  92.0  39.6  54.0   |  92.6   57.7   | 0.069 (0.035)
    1.1-XL  320    0.05  |  96.5  97.9  48.2  60.0   |  98.1   63.0   | 0.064 (0.032)
    1.1-XL  320    0.10  |  94.8  96.7  45.9  57.3   |  97.3   60.4   |
    1.1-XL  320    0.15  |  92.4  95.2  44.2  55.3   |  95.9   58.6   |
    1.1-XL  320    0.20  |  90.3  93.8  42.9  53.7   |  94.6   57.1   |
    1.1-XL  320    0.30  |  84.7  89.1  39.6  50.2   |  89.9   53.7   |
    1.1-XL  416    0.05  |  93.8  95.9  42.6  55.5   |  96.7   59.2   | 0.137 (0.067)
    1.1-XL  416    0.15  |  86.0  90.9  36.4  48.1   |  91.8   52.8   |
    1.1-XL  480    0.05  |  92.8  96.5  41.9  55.2   |  96.9   58.8   | 0.145 (0.072)

At equal area 1.1-XL at 320 covers more than 1.1 at any size, and larger
inputs cover less at the same threshold for twice the time (the model was
trained at 320). OpenCV's Darknet importer zeroes class scores under 0.2
unless the .cfg says otherwise, so DarknetDetector sets each YOLO layer's
`thresh` to the detector's threshold. 0.15 is the lowest threshold whose
region map stays under 60% of the image once faces and text are added.

Whole `analyze` calls (wall seconds under a load average of about 5, CPU
seconds in brackets; L1 = share of the image in L1 regions):

    analyzer                               cov. px   map   area px   map   L1    s/img
    offline default (1.1-XL, 320, 0.15)     93.2    96.1    47.5    59.1  32.1  0.26 (0.17)
    ... threshold 0.1                       95.0    97.3    49.0    60.7  32.7  0.27 (0.17)
    ... threshold 0.2                       91.1    94.8    46.4    58.1  31.8  0.32 (0.17)
    ... threshold 0.3                       85.4    90.1    43.2    54.6  31.5  0.31 (0.15)
    ... saliency always                     95.3    97.3    54.7    67.6  32.1  0.31 (0.17)
    ... saliency off                        93.0    95.9    47.2    58.6  32.1  0.31 (0.17)
    ... GrabCut masks                       84.3    92.4    37.2    51.1  24.6  0.52 (0.26)
    ... box_margin 0.15, box_margin_px 8    95.9    97.9    61.5    69.9  43.7  0.33 (0.16)
    darknet yolo-fastest-1.1 (0.3, user's)  75.3    81.2    35.7    45.0  23.2  0.04 (0.02)

Salient regions on every image add 1.2 points of coverage (map) for 8.5
points of area, so they run only when the detector finds nothing (3 of the
128 images; +0.2 points for +0.5). Haar scans only the box around the people the detector
found: a fifth of its CPU on coco128 (0.013 s instead of 0.072), and its one
detection on an image without people goes. The heuristic ranker puts 81% of
the people, faces and text in L1, 61% of the vehicles and animals, and no
everyday object (L2 at most without a task that lists it). On 50 images the
detector never saw (../shared/data/val and 40 BSDS500 test images, no
annotations) the default's region map covers 51% of the image (4.0 objects per
image). A fresh process has its first result after about 0.85 s (imports and
the three models).

Faces, Haar vs MTCNN (facenet-pytorch 2.6 installed with --no-deps into a
scratch directory just to measure it; coco128, detections whose centre lies in
an annotated person / elsewhere, CPU seconds per image on the whole image):

    Haar (as configured)    10 / 1     0.08 CPU s/img
    MTCNN (p > 0.9)         51 / 1     1.59 CPU s/img

MTCNN finds five times the faces but costs 19 times the CPU, over the offline
budget, and cannot be a dependency: facenet-pytorch 2.6 pins torch<2.3 and
Pillow<10.3. Other rejected options: rapidocr-onnxruntime (pulls
opencv-python, which clashes with opencv-python-headless); OpenCV's saliency
module (only in opencv-contrib, which clashes the same way); OpenCV's HOG
people detector (0.8% of the objects covered alone). The `rapidocr` 3.x wheel
depends on opencv-python-headless and ships its PP-OCR models; only its
detector's ONNX file is used, through OpenCV, at 384 px; Haar runs on the
image scaled to 400 px with minNeighbors 10.
"""
from __future__ import annotations

from .core import Analysis, DetectedObject
from .pipeline import ANALYZERS, MASKERS, RANKERS, analyze
from .regions import load_regions

__all__ = ["Analysis", "DetectedObject", "analyze", "load_regions", "ANALYZERS", "MASKERS", "RANKERS"]
