"""Fixed string tables of the binary metadata (spec/FORMAT.md, "Label table" and
"Analyzer table"). A string's index is what a format 2 file stores; entries
never move or change (a later 2.x may only append), so these are written out
here rather than taken from sdc.analysis, whose lists may evolve.
"""
from __future__ import annotations

# 0..79: COCO's 80 detection classes, in category-id order.
COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

# 80..117: the labels sdc's own detectors and task lists use.
SDC_LABELS: tuple[str, ...] = (
    "face", "text", "salient region", "license plate", "object", "animal", "vehicle",
    "head", "hand", "pedestrian", "child", "cyclist", "rider", "crowd", "body", "eye",
    "van", "tram", "trailer", "taxi", "ambulance", "police car", "fire truck", "tractor",
    "scooter", "traffic sign", "sign", "document", "page", "label", "poster", "screen",
    "logo", "street sign", "price tag", "receipt", "banner", "number",
)

LABELS: tuple[str, ...] = COCO_LABELS + SDC_LABELS
LABEL_ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}

# Analyzer names ("detector/masks/ranker") sdc's analyzers write, whole and in parts.
ANALYZER_TABLE: tuple[str, ...] = (
    "regions(coco)/heuristic", "regions(coco)/given",
    "offline(haar+saliency)/grabcut/heuristic", "offline(haar+ppocr+saliency)/grabcut/heuristic",
    "heuristic", "given", "grabcut", "box", "regions(coco)",
    "offline(haar+saliency)", "offline(haar+ppocr+saliency)",
    "grounding-dino(grounding-dino-tiny)", "owlv2(owlv2-base-patch16-ensemble)",
    "sam(vit_b)", "sam(vit_l)", "sam(vit_h)", "sam-hf(sam-vit-base)", "openai",
    "none (analysis failed)",
    # Format 2.1: the offline default analyzer's names, whole and by detector.
    "offline(yolo-fastest-1.1-xl+haar+ppocr)/box/heuristic",
    "offline(yolo-fastest-1.1-xl+haar+ppocr+saliency)/box/heuristic",
    "offline(yolo-fastest-1.1-xl+haar+ppocr)", "offline(yolo-fastest-1.1-xl+haar+ppocr+saliency)",
    "offline(yolo-fastest-1.1-xl+haar)", "offline(yolo-fastest-1.1-xl+haar+saliency)",
)
# Entries from this index on were appended by format 2.1; a file naming one of them
# is written as 2.1, any other as 2.0 (spec/FORMAT.md, section 10).
ANALYZER_TABLE_2_0_SIZE = 19
ANALYZER_ID: dict[str, int] = {name: i for i, name in enumerate(ANALYZER_TABLE)}


def unknown_entry(index: int) -> str:
    """What a reader shows for an index beyond its table (appended by a later 2.x)."""
    return f"#{index}"
