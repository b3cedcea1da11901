"""benchmarks/icm.py and its helpers: metrics, curve comparison, task-model adapters, cache.

Real data from ../shared (COCO128 and the TFLite task models); needs
pycocotools, ai-edge-litert and onnxruntime.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import COCO, REPO, load_rgb

sys.path.insert(0, str(REPO / "benchmarks"))

import icm  # noqa: E402
import task_metrics as M  # noqa: E402
import task_models as TM  # noqa: E402

IMAGE = "000000000036.jpg"  # a person under an umbrella: COCO ids 1 and 28


@pytest.fixture(scope="module")
def coco() -> dict:
    return json.loads((COCO / "annotations" / "instances_train2017.json").read_text())


def image_record(coco: dict, name: str) -> tuple[dict, list[dict]]:
    im = next(i for i in coco["images"] if i["file_name"] == name)
    return im, [a for a in coco["annotations"] if a["image_id"] == im["id"]]


# ----------------------------------------------------------------------------- curves
def test_pareto_keeps_only_points_better_than_every_cheaper_one():
    curve = [(0.4, 0.50), (0.1, 0.20), (0.2, 0.35), (0.3, 0.30), (0.5, 0.50), (0.6, 0.55), (0.2, 0.10),
             (0.7, float("nan"))]
    assert M.pareto(curve) == [(0.1, 0.20), (0.2, 0.35), (0.4, 0.50), (0.6, 0.55)]


def test_bd_rate_of_a_curve_against_itself_at_a_known_rate_factor():
    rates = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    acc = [0.10, 0.22, 0.31, 0.37, 0.40, 0.41]
    cheaper = [(0.8 * r, a) for r, a in zip(rates, acc)]
    r = M.bd_rate_at_accuracy(list(zip(rates, acc)), cheaper)
    assert r["bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert r["range"] == [pytest.approx(0.10), pytest.approx(0.41)]
    # a non-monotone point of the test curve is dropped, not integrated
    noisy = cheaper + [(0.5, 0.05)]
    assert M.bd_rate_at_accuracy(list(zip(rates, acc)), noisy)["bd_rate"] == pytest.approx(-20.0, abs=1e-9)


def test_bd_rate_is_na_with_a_reason_when_curves_are_short_or_disjoint():
    good = [(0.1, 0.1), (0.2, 0.2), (0.4, 0.3), (0.8, 0.4)]
    short = M.bd_rate_at_accuracy(good, [(0.1, 0.1), (0.2, 0.3), (0.4, 0.2), (0.8, 0.25)])
    assert short["bd_rate"] is None and "test has 2 monotone points" in short["reason"]
    apart = M.bd_rate_at_accuracy(good, [(r, a + 1) for r, a in good])
    assert apart["bd_rate"] is None and "do not overlap" in apart["reason"]


# ----------------------------------------------------------------------------- metrics
def test_coco_map_is_one_for_ground_truth_and_lower_for_shifted_boxes(coco):
    gt = M.coco_gt(coco)
    ids = sorted(i["id"] for i in coco["images"])[:16]
    truth: dict[int, list] = {}
    shifted: dict[int, list] = {}
    for a in coco["annotations"]:
        if a["image_id"] in ids and not a["iscrowd"]:
            x, y, w, h = a["bbox"]
            truth.setdefault(a["image_id"], []).append((a["category_id"], [x, y, w, h], 1.0))
            shifted.setdefault(a["image_id"], []).append((a["category_id"], [x + 0.3 * w, y, w, h], 1.0))
    exact = M.coco_map(gt, truth, ids)
    assert exact == {"map": 1.0, "map50": 1.0}
    off = M.coco_map(gt, shifted, ids)
    assert off["map"] < 0.5 and off["map50"] < exact["map50"]
    assert M.coco_map(gt, {}, ids) == {"map": 0.0, "map50": 0.0}


def test_voc_ground_truth_confusion_and_miou(coco):
    im, anns = image_record(coco, IMAGE)
    gt = M.voc_ground_truth(anns, im["height"], im["width"], M.voc_index_of_coco(coco["categories"]))
    assert gt.shape == (im["height"], im["width"])
    assert set(np.unique(gt)) <= {0, 15}  # background and person; the umbrella is no VOC class
    assert (gt == 15).mean() > 0.1
    conf = M.confusion(gt, gt)
    assert M.miou(conf) == 1.0 and conf.sum() == gt.size
    # half the person predicted as background: IoU(person) 0.5, IoU(bg) = bg / (bg + person/2)
    pred = gt.copy()
    ys, xs = np.nonzero(gt == 15)
    half = ys < np.median(ys)
    pred[ys[half], xs[half]] = 0
    p, b = half.sum(), (gt == 0).sum()
    expect = ((len(ys) - p) / len(ys) + b / (b + p)) / 2
    assert M.miou(M.confusion(gt, pred)) == pytest.approx(expect)
    assert np.array_equal(M.dense(M.sparse(conf)), conf)
    ignored = gt.copy()
    ignored[:10] = M.IGNORE
    assert M.confusion(ignored, gt).sum() == gt.size - 10 * gt.shape[1]


# ----------------------------------------------------------------------------- task models
def test_ssd_finds_an_annotated_category_in_a_real_image(coco):
    im, anns = image_record(coco, IMAGE)
    det = TM.TfliteSsdDetector(coco["categories"])
    found = det.detect(load_rgb(COCO / "train2017" / IMAGE))
    present = {a["category_id"] for a in anns}
    assert found and len(found) <= TM.MAX_DETECTIONS
    best = max(found, key=lambda d: d[2])
    assert best[0] in present and best[2] > 0.5
    x, y, w, h = best[1]
    assert 0 <= x and 0 <= y and x + w <= im["width"] + 1e-6 and y + h <= im["height"] + 1e-6 and w * h > 0


def test_segmenter_and_classifier_on_a_real_image(coco):
    im, anns = image_record(coco, IMAGE)
    rgb = load_rgb(COCO / "train2017" / IMAGE)
    seg = TM.DeeplabSegmenter().segment(rgb)
    gt = M.voc_ground_truth(anns, im["height"], im["width"], M.voc_index_of_coco(coco["categories"]))
    assert seg.shape == gt.shape
    person = (seg == 15) & (gt == 15)
    assert person.sum() / ((seg == 15) | (gt == 15)).sum() > 0.5
    labels = TM.read_lines(TM.MOBILENET_PATH.parent / "imagenet_labels.txt")
    assert labels[TM.MobilenetClassifier().classify(rgb)] == "umbrella"


def _constant_onnx(path: Path, out: np.ndarray) -> None:
    """An ONNX model that ignores its 64x64 input (times zero) and returns `out`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["const", "z"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out.shape))],
        initializer=[numpy_helper.from_array(out.astype(np.float32), "const"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_detector_maps_names_to_coco_ids_in_image_pixels(tmp_path, coco):
    names = tmp_path / "names.txt"
    names.write_text("person\nmotorbike\nunicorn\n")
    # YOLOv8 layout (1, 4 + C, N): cx, cy, w, h in input pixels (64x64), then class scores
    rows = np.array([[32, 32, 16, 32, 0.9, 0.0, 0.0],   # person
                     [33, 32, 16, 32, 0.6, 0.0, 0.0],   # the same person again: NMS drops it
                     [8, 8, 8, 8, 0.0, 0.7, 0.0],       # motorbike -> COCO "motorcycle" (4)
                     [50, 50, 4, 4, 0.0, 0.0, 0.95],    # no COCO category: dropped
                     [20, 40, 8, 8, 0.005, 0.0, 0.0]],  # below the score floor
                    np.float32)
    _constant_onnx(tmp_path / "det.onnx", rows.T[None])
    det = icm.TM.make_detector(f"onnx:{tmp_path / 'det.onnx'}:{names}", coco["categories"])
    got = det.detect(np.zeros((96, 128, 3), np.uint8))  # x scale 2, y scale 1.5
    assert [(c, [round(v, 3) for v in box], round(s, 3)) for c, box, s in got] == [
        (1, [48.0, 24.0, 32.0, 48.0], 0.9), (4, [8.0, 6.0, 16.0, 12.0], 0.7)]
    assert det.fingerprint != TM.make_detector("ssd", coco["categories"]).fingerprint


# ----------------------------------------------------------------------------- the benchmark
def test_evaluate_caches_outputs_and_recomputes_for_a_new_task_model(tmp_path, monkeypatch, coco):
    monkeypatch.setenv("SDC_BENCH_CACHE", str(tmp_path))
    _, images = icm.load_dataset(1)
    judges = icm.Judges(["classification"], coco, None)
    method = icm.anchor_method("jpeg", [10], "test", cache_only=False)
    first, computed = icm.evaluate(method, 10, images[0], judges)
    assert computed and first["bytes"] > 0 and isinstance(first["tasks"]["classification"]["top1"], int)
    again, computed = icm.evaluate(method, 10, images[0], judges)
    assert not computed and again == first
    judges.classifier.fingerprint += "|changed"
    _, computed = icm.evaluate(method, 10, images[0], judges)
    assert computed
    only_cached = icm.anchor_method("jpeg", [11], "test", cache_only=True)
    assert icm.evaluate(only_cached, 11, images[0], judges) == (None, False)


def test_evaluate_keeps_what_a_run_with_other_tasks_wrote_meanwhile(tmp_path, monkeypatch, coco):
    import baselines
    import common

    monkeypatch.setenv("SDC_BENCH_CACHE", str(tmp_path))
    _, images = icm.load_dataset(1)
    judges = icm.Judges(["classification"], coco, None)
    method = icm.anchor_method("jpeg", [20], "test", cache_only=False)
    path = icm.entry_path(method, 20, images[0])
    other = {"model": "a detector", "seconds": 0.1, "detections": []}
    run = judges.run

    def run_while_another_process_writes(task, rgb, image):
        common.write_json(path, {"bytes": baselines.jpeg(image.rgb, 20)[0], "tasks": {"detection": other}})
        return run(task, rgb, image)

    monkeypatch.setattr(judges, "run", run_while_another_process_writes)
    icm.evaluate(method, 20, images[0], judges)
    assert set(common.read_json(path)["tasks"]) == {"detection", "classification"}
    assert common.read_json(path)["tasks"]["detection"] == other


@pytest.fixture
def one_torch_thread():
    """As the benchmark runs sdc: on a busy 2-core machine two threads are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sdc_modes_make_decodable_files_and_ablations_change_them(one_torch_thread):
    from sdc.bitstream import read_sdc
    from sdc.pipeline import decode_sdc

    _, images = icm.load_dataset(1)
    image = images[0]
    whole = icm.SDC_MODES["whole"](image.rgb, image, 1)
    assert decode_sdc(whole).rgb.shape == image.rgb.shape
    assert set(read_sdc(whole).levels) == {"other"}
    gt = set(read_sdc(icm.SDC_MODES["gt-detection"](image.rgb, image, 1)).levels)
    assert gt - {"other"} and "other" in gt  # the annotated objects' levels, and the background the preset codes
    hyperprior_bg = icm.task_mode("object detection", "gt", background="hyperprior")
    assert "other" not in read_sdc(hyperprior_bg(image.rgb, image, 1)).levels
    keys = {icm.sdc_method(m, [1], "w", "s").key for m in icm.SDC_MODES}
    assert len(keys) == len(icm.SDC_MODES)
    icm.SDC_MODES["ablation"] = hyperprior_bg
    try:
        assert icm.sdc_method("ablation", [1], "w", "s").key not in keys
    finally:
        del icm.SDC_MODES["ablation"]


def test_cli_limit_run_writes_json_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SDC_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "icm.json"
    assert icm.main(["--limit", "2", "--anchors", "jpeg", "--modes", "none", "--tasks", "classification",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement 1.0000" in printed  # the uncompressed reference agrees with itself
    r = json.loads(out.read_text())
    assert [p["param"] for p in r["methods"]["jpeg"]["points"]] == icm.ANCHOR_PARAMS["jpeg"]
    assert r["reference"]["top1"] == 1.0 and r["images"]["count"] == 2
    assert r["bd_rate"]["top1"]["jpeg"] == {}  # nothing to compare with
    assert out.with_suffix(".png").stat().st_size > 0


def test_rate_for_accuracy_interpolates_in_log_rate_on_the_front():
    curve = [(0.1, 0.2), (0.4, 0.4), (0.2, 0.1), (1.6, 0.5)]
    assert M.rate_for_accuracy(curve, 0.3) == {"bpp": pytest.approx(0.2), "upper_bound": False}  # sqrt(0.1*0.4)
    assert M.rate_for_accuracy(curve, 0.15) == {"bpp": 0.1, "upper_bound": True}
    assert M.rate_for_accuracy(curve, 0.6) == {"bpp": None, "upper_bound": False}
