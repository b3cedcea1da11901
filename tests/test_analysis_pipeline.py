"""analyze(): the offline default (see also test_offline_detector.py), user detectors (Darknet on the shared Yolo-Fastest, ONNX), auto choice."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from sdc.analysis import ANALYZERS, Analysis, analyze
from sdc.analysis import offline
from sdc.errors import UsageError

from conftest import COCO, DARKNET

pytestmark = pytest.mark.usefixtures("isolated_analysis")



def coco_image(name: str) -> Image.Image:
    return Image.open(COCO / "train2017" / name)


def gt_boxes(name: str, category: str) -> list[tuple[float, float, float, float]]:
    d = json.loads((COCO / "annotations" / "instances_train2017.json").read_text())
    cid = next(c["id"] for c in d["categories"] if c["name"] == category)
    iid = next(i["id"] for i in d["images"] if i["file_name"] == name)
    return [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
            for a in d["annotations"] if a["image_id"] == iid and a["category_id"] == cid]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---------------------------------------------------------------- offline
def test_offline_default_is_fast_deterministic_and_complete():
    img = coco_image("000000000113.jpg")  # three people at a table
    analyze(img, analyzer="offline")  # warm-up: loads the text model
    t = time.process_time()  # CPU seconds: the wall clock depends on the training job next door
    a = analyze(img, analyzer="offline")
    dt = time.process_time() - t
    b = analyze(img, analyzer="offline")
    assert a.to_json() == b.to_json()
    assert a.analyzer == "offline(yolo-fastest-1.1-xl+haar+ppocr)/box/heuristic"
    assert dt < 1.0, f"offline analysis took {dt:.2f} CPU s"  # ~0.2 CPU s (benchmarks/results)
    assert a.objects and all(o.level in ("L1", "L2", "L3") for o in a.objects)
    assert all(o.reason for o in a.objects)
    # the shipped COCO detector finds each annotated person
    people = [o.box for o in a.objects if o.label == "person"]
    for g in gt_boxes("000000000113.jpg", "person"):
        assert max(iou(g, p) for p in people) > 0.5
    # both faces are found, inside the annotated people, and ranked L1
    faces = [o for o in a.objects if o.label == "face"]
    people = gt_boxes("000000000113.jpg", "person")
    assert len(faces) == 2
    for f in faces:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        assert any(p[0] <= cx <= p[2] and p[1] <= cy <= p[3] for p in people)
        assert f.level == "L1" and f.source == "offline:haar"
    gm = a.group_map(-(-a.height // 16), -(-a.width // 16))
    assert (gm == 0).any() and (gm == 3).any()


def test_offline_text_detector_finds_printed_text():
    img = Image.new("RGB", (320, 240), (235, 235, 225))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=36)
    d.text((40, 90), "HELLO 2024", fill=(10, 10, 10), font=font)
    found = offline.detect_text(np.asarray(img))
    assert found, "no text found"
    label, box, score = found[0]
    assert label == "text" and score > 0.5
    assert box[0] < 60 and box[2] > 200 and box[1] < 110 and box[3] > 115


def test_offline_saliency_finds_the_odd_object():
    rng = np.random.default_rng(0)
    arr = (rng.normal(128, 6, size=(240, 320, 3))).clip(0, 255).astype(np.uint8)
    arr[140:190, 200:260] = (200, 30, 30)
    found = offline.detect_salient(arr)
    assert any(b[0] <= 215 and b[2] >= 245 and b[1] <= 155 and b[3] >= 175 for _, b, _ in found)


# ---------------------------------------------------------------- darknet
def test_darknet_yolo_fastest_finds_the_annotated_people():
    name = "000000000113.jpg"
    a = analyze(coco_image(name), analyzer="darknet", config={**DARKNET, "masks": "box"})
    assert a.analyzer == "darknet(yolo-fastest-1.1.weights)/box/heuristic"
    people = [o for o in a.objects if o.label == "person"]
    for g in gt_boxes(name, "person"):
        assert max(iou(g, p.box) for p in people) > 0.5
    assert all(p.level == "L1" for p in people if p.score > 0.8)
    assert {"dining table"} <= {o.label for o in a.objects}  # Darknet's "diningtable" is normalised


def test_darknet_task_keeps_task_labels_only():
    name = "000000000086.jpg"  # a person on a motorcycle
    everything = analyze(coco_image(name), analyzer="darknet", config={**DARKNET, "masks": "box"})
    assert {"person", "motorcycle"} <= {o.label for o in everything.objects}
    people = analyze(coco_image(name), analyzer="darknet", task="people", config={**DARKNET, "masks": "box"})
    assert {o.label for o in people.objects} == {"person"}
    assert people.task == "people" and "face" in people.labels
    # a task whose classes the detector knows but does not see leaves nothing to rank
    none = analyze(coco_image("000000000113.jpg"), analyzer="darknet", task="vehicles",
                   config={**DARKNET, "masks": "box"})
    assert none.objects == [] and none.warnings == []


def test_darknet_boxes_by_default_grabcut_masks_stay_inside_boxes():
    img = coco_image("000000000036.jpg")
    boxes = analyze(img, analyzer="darknet", config=DARKNET)
    assert boxes.analyzer.endswith("/box/heuristic") and all(o.mask is None for o in boxes.objects)
    a = analyze(img, analyzer="darknet", config={**DARKNET, "masks": "grabcut"})
    assert a.analyzer.endswith("/grabcut/heuristic")
    person = next(o for o in a.objects if o.label == "person")
    assert person.mask is not None
    x0, y0, x1, y1 = (int(v) for v in person.box)
    inside = person.mask[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1].sum()
    assert inside == person.mask.sum()
    assert 0.2 < person.mask.sum() / person.area < 0.98


def test_darknet_missing_files_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        analyze(coco_image("000000000036.jpg"), analyzer="darknet",
                config={**DARKNET, "detector_weights": str(tmp_path / "nope.weights")})


# ------------------------------------------------------------------- onnx
def _tiny_onnx(path: Path, out: np.ndarray) -> None:
    """An ONNX model that ignores its 64x64 input (times zero) and returns `out`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    const = numpy_helper.from_array(out.astype(np.float32), "const")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["const", "z"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out.shape))],
                              initializer=[const, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_detector_yolov8_layout(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("person\ncar\n")
    # (1, 4 + C, N): columns are boxes cx, cy, w, h in input pixels (64x64), then class scores
    boxes = np.array([[32, 32, 16, 32, 0.9, 0.1],  # a person in the middle
                      [8, 8, 8, 8, 0.1, 0.8],  # a car top-left
                      [33, 32, 16, 32, 0.7, 0.05],  # duplicate person: removed by NMS
                      [50, 50, 4, 4, 0.1, 0.1]], np.float32)  # below threshold
    _tiny_onnx(tmp_path / "det.onnx", boxes.T[None])
    img = Image.new("RGB", (128, 96), (90, 90, 90))
    a = analyze(img, analyzer="onnx", config={"detector_onnx": str(tmp_path / "det.onnx"),
                                              "detector_names": str(names), "masks": "box"})
    assert a.analyzer == "onnx(det.onnx)/box/heuristic"
    got = sorted((o.label, tuple(round(v) for v in o.box)) for o in a.objects)
    assert got == [("car", (8, 6, 24, 18)), ("person", (48, 24, 80, 72))]


def test_onnx_detector_yolov5_layout_relative_boxes(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\n")
    rows = np.array([[0.5, 0.5, 0.5, 0.5, 0.9, 0.1, 0.9, 0.0]], np.float32)  # dog, obj 0.9 x 0.9
    _tiny_onnx(tmp_path / "v5.onnx", rows[None])
    a = analyze(Image.new("RGB", (100, 50)), analyzer="onnx",
                config={"detector_onnx": str(tmp_path / "v5.onnx"), "detector_names": str(names), "masks": "box"})
    assert [(o.label, tuple(round(v) for v in o.box), round(o.score, 2)) for o in a.objects] == \
        [("dog", (25, 12, 75, 38), 0.81)]


def test_onnx_output_not_matching_names_is_a_usage_error(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\nf\ng\n")
    _tiny_onnx(tmp_path / "bad.onnx", np.zeros((1, 5, 3), np.float32))
    with pytest.raises(UsageError, match="does not match"):
        analyze(Image.new("RGB", (64, 64)), analyzer="onnx",
                config={"detector_onnx": str(tmp_path / "bad.onnx"), "detector_names": str(names)})


# ------------------------------------------------------------------- auto
def test_auto_picks_offline_then_a_configured_detector(tmp_path, monkeypatch):
    img = coco_image("000000000036.jpg")
    assert analyze(img).analyzer.startswith("offline(")
    cfg = tmp_path / "config" / "sdc" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("[analysis]\n" + "".join(f'{k} = "{v}"\n' for k, v in DARKNET.items()))
    a = analyze(img)
    assert a.analyzer.startswith("darknet(") and any(o.label == "person" for o in a.objects)
    # the config file can pin the choice
    cfg.write_text(cfg.read_text() + 'analyzer = "offline"\n')
    assert analyze(img).analyzer.startswith("offline(")


def test_explicit_big_model_without_weights_is_a_clear_error():
    with pytest.raises(UsageError, match="not on this machine"):
        analyze(Image.new("RGB", (64, 64)), analyzer="grounding-dino")
    with pytest.raises(UsageError, match="unknown analyzer"):
        analyze(Image.new("RGB", (64, 64)), analyzer="magic")
    assert set(ANALYZERS) >= {"auto", "offline", "darknet", "onnx", "grounding-dino", "owlv2"}


def test_analysis_file_round_trip_through_json(tmp_path):
    img = coco_image("000000000036.jpg")
    a = analyze(img, analyzer="darknet", config={**DARKNET, "masks": "grabcut"})
    assert any(o.mask is not None for o in a.objects)  # masks go through RLE
    p = tmp_path / "regions.json"
    p.write_text(json.dumps(a.to_json()))
    from sdc.analysis import load_regions

    b = load_regions(str(p), img.width, img.height)
    assert isinstance(b, Analysis)
    assert np.array_equal(a.group_map(40, 30), b.group_map(40, 30))
    assert b.metadata() == a.metadata()
