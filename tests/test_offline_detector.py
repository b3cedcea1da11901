"""The COCO detector shipped in sdc/analysis/data/ and the offline analyzer built on it."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sdc.analysis import analyze, offline, pipeline
from sdc.analysis.config import resolve_config
from sdc.analysis.detectors import with_score_floor
from sdc.analysis.masks import grow_box
from sdc.errors import BadInputError, UsageError

from conftest import COCO

pytestmark = pytest.mark.usefixtures("isolated_analysis")

NAME = "offline(yolo-fastest-1.1-xl+haar+ppocr)/box/heuristic"


def coco_rgb(name: str) -> np.ndarray:
    with Image.open(COCO / "train2017" / name) as im:
        return np.asarray(im.convert("RGB"))


def gt_boxes(name: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(category, box) of the image's annotated objects of at least 32x32 pixels."""
    d = json.loads((COCO / "annotations" / "instances_train2017.json").read_text())
    cats = {c["id"]: c["name"] for c in d["categories"]}
    iid = next(i["id"] for i in d["images"] if i["file_name"] == name)
    return [(cats[a["category_id"]], (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                      a["bbox"][1] + a["bbox"][3]))
            for a in d["annotations"] if a["image_id"] == iid and a["area"] >= 32 * 32 and not a["iscrowd"]]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector():
    return offline.coco_detector()


# ------------------------------------------------------------ the files
def test_manifest_names_source_licence_and_hashes_of_the_shipped_files():
    manifest, files = offline.shipped_files()
    assert manifest["name"] == "yolo-fastest-1.1-xl"
    assert "dog-qiuqiu/Yolo-Fastest @ 96a2900d163196c396e73f3fdab04ca4dd9a2f70" in manifest["source"]
    assert "YOLO licence" in manifest["licence"]
    assert set(files) == {"LICENSE", "coco.names", "yolo-fastest-1.1-xl.cfg", "yolo-fastest-1.1-xl.weights"}
    for name, data in files.items():
        assert hashlib.sha256((offline.DATA_DIR / name).read_bytes()).hexdigest() == manifest["sha256"][name]
    assert b"public domain" in files["LICENSE"]
    assert len(files["coco.names"].decode().split()) >= 80


@pytest.fixture
def data_copy(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(offline.DATA_DIR, d, ignore=shutil.ignore_patterns("__pycache__"))
    return d / offline.COCO_MANIFEST.name


def test_tampered_weights_are_refused_before_loading(data_copy):
    weights = data_copy.parent / "yolo-fastest-1.1-xl.weights"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: still loads in OpenCV, so only the hash can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(BadInputError) as e:
        offline.coco_detector(manifest_path=data_copy)
    msg = str(e.value)
    assert "\n" not in msg and "yolo-fastest-1.1-xl.weights does not match its manifest" in msg
    assert "reinstall sdc" in msg


def test_missing_file_and_broken_manifest_are_one_line_errors(data_copy):
    (data_copy.parent / "coco.names").unlink()
    with pytest.raises(BadInputError, match=r"coco\.names is missing or unreadable"):
        offline.shipped_files(data_copy)
    data_copy.write_text("{")
    with pytest.raises(BadInputError, match="unreadable detector manifest"):
        offline.shipped_files(data_copy)


def test_an_untampered_copy_loads(data_copy):
    det = offline.coco_detector(manifest_path=data_copy)
    assert det.name == "yolo-fastest-1.1-xl" and len(det.names) == 80


# ------------------------------------------------------------ detection
@pytest.mark.parametrize("name, wanted", [
    ("000000000113.jpg", {"person"}),  # three people at a table
    ("000000000086.jpg", {"person", "motorcycle"}),
    ("000000000034.jpg", {"zebra"}),
    ("000000000071.jpg", {"train"}),
])
def test_shipped_detector_finds_the_annotated_objects(detector, name, wanted):
    found = detector.detect(coco_rgb(name))
    for cat, g in gt_boxes(name):
        if cat in wanted:
            assert max((iou(g, b) for lab, b, _ in found if lab == cat), default=0) > 0.5, (cat, g, found)


def test_score_floor_lets_low_thresholds_through(detector):
    cfg = "[net]\nwidth=320\n\n[yolo]\nignore_thresh = .5\nthresh = 0.9\nclasses=80\n\n[region]\nclasses=2\n"
    out = with_score_floor(cfg, 0.05)
    assert out.count("thresh=0.05") == 2 and "thresh = 0.9" not in out and "ignore_thresh = .5" in out
    # OpenCV drops class scores under 0.2 unless the layers say otherwise
    low = offline.coco_detector(threshold=0.05).detect(coco_rgb("000000000061.jpg"))
    assert any(s < 0.2 for _, _, s in low)
    assert len(low) > len(detector.detect(coco_rgb("000000000061.jpg")))


# -------------------------------------------------------------- analyze
def test_offline_analyzer_name_levels_and_determinism():
    img = Image.open(COCO / "train2017" / "000000000113.jpg")
    a = analyze(img, analyzer="offline")
    b = analyze(img, analyzer="offline")
    assert a.analyzer == NAME
    assert a.to_json() == b.to_json()
    assert all(o.mask is None for o in a.objects)  # detector objects are coded as boxes
    people = [o for o in a.objects if o.label == "person"]
    faces = [o for o in a.objects if o.label == "face"]
    assert len(people) == 3 and len(faces) == 2
    assert all(o.level == "L1" for o in people + faces)
    assert all(o.source == "offline:yolo-fastest-1.1-xl" for o in people)
    # everyday objects rank below the people
    assert all(o.level != "L1" for o in a.objects if o.label in ("knife", "chair"))


def test_faces_are_looked_for_inside_the_detected_people():
    rgb = coco_rgb("000000000113.jpg")
    assert len(offline.detect_faces(rgb)) == 2
    assert len(offline.detect_faces(rgb, within=(0, 0, 320, 427))) == 2  # the left half holds both
    assert offline.detect_faces(rgb, within=(400, 0, 640, 480)) == []
    # no person here, and the cascade's one detection on the whole image is not a face
    name = "000000000143.jpg"
    assert not [c for c, _ in gt_boxes(name) if c == "person"] and offline.detect_faces(coco_rgb(name))
    a = analyze(Image.open(COCO / "train2017" / name), analyzer="offline")
    assert not [o for o in a.objects if o.label in ("face", "person")]


def test_detector_is_loaded_once_per_process(monkeypatch):
    monkeypatch.setattr(pipeline, "_CACHE", {})
    calls = []
    real = offline.coco_detector

    def counting(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(offline, "coco_detector", counting)
    img = Image.open(COCO / "train2017" / "000000000034.jpg")
    for _ in range(3):
        analyze(img, analyzer="offline")
    assert calls == [(offline.COCO_THRESHOLD, offline.COCO_INPUT_SIZE)]
    analyze(img, analyzer="offline", config={"detector_threshold": 0.5, "detector_input_size": 416})
    assert calls[1:] == [(0.5, 416)]


def test_threshold_and_input_size_are_honoured():
    img = Image.open(COCO / "train2017" / "000000000061.jpg")  # elephants and a crowd of small people

    def detected(config):
        a = analyze(img, analyzer="offline", config=config)
        return [o for o in a.objects if o.source == "offline:yolo-fastest-1.1-xl"]

    default, strict = detected({}), detected({"detector_threshold": 0.5})
    assert strict and all(o.score > 0.5 for o in strict)
    assert min(o.score for o in default) < 0.3 and len(default) > len(strict)
    assert [o.box for o in detected({"detector_input_size": 416})] != [o.box for o in default]


def test_saliency_only_when_the_detector_finds_nothing():
    rng = np.random.default_rng(0)
    arr = rng.normal(128, 6, size=(240, 320, 3)).clip(0, 255).astype(np.uint8)
    arr[140:190, 200:260] = (200, 30, 30)  # a red block: no COCO object, but salient
    blank = analyze(Image.fromarray(arr), analyzer="offline")
    assert blank.analyzer == "offline(yolo-fastest-1.1-xl+haar+ppocr+saliency)/box/heuristic"
    assert any(o.label == "salient region" for o in blank.objects)
    off = analyze(Image.fromarray(arr), analyzer="offline", config={"offline_saliency": "off"})
    assert off.analyzer == NAME and not off.objects
    img = Image.open(COCO / "train2017" / "000000000034.jpg")
    assert analyze(img, analyzer="offline").analyzer == NAME
    always = analyze(img, analyzer="offline", config={"offline_saliency": "always"})
    assert "+saliency)" in always.analyzer and any(o.label == "salient region" for o in always.objects)


def test_grabcut_masks_on_request():
    a = analyze(Image.open(COCO / "train2017" / "000000000036.jpg"), analyzer="offline",
                config={"masks": "grabcut"})
    assert a.analyzer.endswith("/grabcut/heuristic")
    assert any(o.mask is not None for o in a.objects if o.label == "person")


# --------------------------------------------------------------- margin
def test_grow_box_adds_a_fraction_of_each_side_with_a_pixel_minimum_and_clips():
    assert grow_box((100, 100, 200, 150), 0.1, 0, 640, 480) == (90, 95, 210, 155)
    assert grow_box((100, 100, 200, 150), 0.1, 8, 640, 480) == (90, 92, 210, 158)
    assert grow_box((5, 100, 200, 475), 0.1, 0, 640, 480) == (0, 62.5, 219.5, 480)
    assert grow_box((1, 2, 3, 4), 0.0, 0.0, 640, 480) == (1, 2, 3, 4)


def test_box_margin_grows_every_object_in_analyze():
    img = Image.open(COCO / "train2017" / "000000000086.jpg")
    W, H = img.size
    plain = analyze(img, analyzer="offline")
    grown = analyze(img, analyzer="offline", config={"box_margin": 0.2, "box_margin_px": 12})
    assert [o.label for o in grown.objects] == [o.label for o in plain.objects]
    clipped = 0
    for p, g in zip(plain.objects, grown.objects):
        x0, y0, x1, y1 = p.box
        dx, dy = max(0.2 * (x1 - x0), 12), max(0.2 * (y1 - y0), 12)
        want = (max(0, x0 - dx), max(0, y0 - dy), min(W, x1 + dx), min(H, y1 + dy))
        assert g.box == pytest.approx(want)
        clipped += want[0] == 0 or want[1] == 0 or want[2] == W or want[3] == H
    assert clipped  # the person on the motorcycle reaches the image's edge once grown
    assert grown.coverage().sum() > plain.coverage().sum()


@pytest.mark.parametrize("bad", [{"box_margin": -0.1}, {"box_margin_px": "wide"}, {"detector_threshold": 1.5},
                                 {"detector_input_size": 300}, {"offline_saliency": "sometimes"}])
def test_bad_offline_settings_are_usage_errors(bad):
    with pytest.raises(UsageError, match=next(iter(bad))):
        resolve_config(bad, read_file=False)


def test_settings_defaults():
    cfg = resolve_config(read_file=False)
    assert cfg["detector_threshold"] is None and cfg["detector_input_size"] == 320
    assert (cfg["box_margin"], cfg["box_margin_px"], cfg["offline_saliency"]) == (0.0, 0.0, "fallback")
