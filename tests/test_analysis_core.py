"""Analysis data model: RLE, JSON round trip, metadata, group map, load_regions, draw, config, tasks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdc.analysis import Analysis, DetectedObject, load_regions
from sdc.analysis import rle
from sdc.analysis.config import model_available, resolve_config
from sdc.analysis.ranking import heuristic_rank
from sdc.analysis import tasks
from sdc.errors import BadInputError, UsageError
from sdc.levels import LEVEL_INDEX

from conftest import COCO  # noqa: E402  (honours SDC_SHARED, like every other test)

ANN = COCO / "annotations" / "instances_train2017.json"


def obj(i, box, level, mask=None, label="thing", score=0.9):
    return DetectedObject(id=i, label=label, box=box, score=score, level=level, mask=mask)


# ------------------------------------------------------------------ RLE
def test_rle_matches_pycocotools_string():
    m = np.zeros((7, 9), bool)
    m[1:5, 2:6] = True
    m[6, 8] = True
    m[0, 0] = True
    # reference from pycocotools.mask.encode(np.asfortranarray(m))
    assert rle.encode(m) == {"size": [7, 9], "counts": "01>3E00000c0M"}
    assert np.array_equal(rle.decode({"size": [7, 9], "counts": "01>3E00000c0M"}), m)


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, size=2)
    m = rng.random((h, w)) < rng.random()
    assert np.array_equal(rle.decode(rle.encode(m)), m)
    # list counts too (COCO iscrowd form)
    assert np.array_equal(rle.decode({"size": [int(h), int(w)], "counts": rle.mask_to_counts(m)}), m)


def test_rle_rejects_garbage():
    with pytest.raises(ValueError):
        rle.decode({"size": [2, 2], "counts": [1, 1]})  # runs do not fill 4 pixels
    with pytest.raises(ValueError):
        rle.decode({"size": [2, 2], "counts": "\x7f\x7f"})
    with pytest.raises(ValueError):
        rle.decode({"counts": "0"})


# ------------------------------------------------------------ group map
def test_group_map_cells_and_priorities():
    a = Analysis(width=64, height=48, objects=[
        obj(0, (0, 0, 20, 10), "L3"),  # pixels x 0..19, y 0..9 -> cells (0, 0..1)
        obj(1, (16, 0, 17, 1), "L1"),  # one pixel in cell (0, 1)
        obj(2, (40, 40, 48, 48), "L2"),  # cell (2, 2)
    ])
    gm = a.group_map(3, 4, dilation=0)
    assert gm.dtype == np.uint8 and gm.shape == (3, 4)
    expect = np.full((3, 4), LEVEL_INDEX["other"], np.uint8)
    expect[0, 0] = LEVEL_INDEX["L3"]
    expect[0, 1] = LEVEL_INDEX["L1"]
    expect[2, 2] = LEVEL_INDEX["L2"]
    assert np.array_equal(gm, expect)


def test_group_map_mask_and_dilation():
    m = np.zeros((64, 64), bool)
    m[35, 35] = True  # cell (2, 2) only
    a = Analysis(width=64, height=64, objects=[obj(0, (0, 0, 64, 64), "L2", mask=m),
                                               obj(1, (0, 0, 16, 16), "L3")])
    g0 = a.group_map(4, 4, dilation=0)
    assert g0[2, 2] == 1 and g0[0, 0] == 2 and (g0 == 3).sum() == 14
    g1 = a.group_map(4, 4, dilation=1)
    # L2 grows to the 3x3 around (2, 2) and wins over L3's dilation; L3 keeps (0, 0) and its ring
    assert (g1[1:4, 1:4] == 1).all()
    assert g1[0, 0] == 2 and g1[0, 1] == 2 and g1[1, 0] == 2
    assert g1[0, 3] == 3 and g1[3, 0] == 3


def test_group_map_cells_beyond_image_are_other():
    a = Analysis(width=40, height=20, objects=[obj(0, (0, 0, 40, 20), "L1")])
    gm = a.group_map(4, 6, dilation=2)
    assert (gm[:2, :3] == 0).all()
    assert (gm[2:, :] == 3).all() and (gm[:, 3:] == 3).all()


# ----------------------------------------------------------------- JSON
def test_json_round_trip_and_metadata():
    m = np.zeros((30, 40), bool)
    m[5:20, 10:30] = True
    a = Analysis(width=40, height=30, objects=[
        obj(0, (10, 5, 30, 20), "L1", mask=m, label="dog", score=0.87),
        obj(1, (1.5, 2.25, 8, 9), "L3", label="text", score=0.5)],
        caption_short="a dog", caption_long="a dog on grass", analyzer="x/y/z", task="pets",
        labels=["dog", "cat"], warnings=["w"])
    a.objects[0].reason = "the subject"
    j = json.loads(json.dumps(a.to_json()))
    assert j["format"] == "sdc-analysis" and j["version"] == 1
    b = Analysis.from_json(j)
    assert b.to_json() == j
    assert np.array_equal(b.objects[0].mask, m) and b.objects[1].mask is None
    md = a.metadata()
    assert md["analyzer"] == "x/y/z" and md["task"] == "pets" and md["caption_short"] == "a dog"
    assert md["objects"][0] == {"id": 0, "label": "dog", "box": [10, 5, 30, 20], "score": 0.87,
                                "level": "L1", "reason": "the subject"}
    assert "mask" not in json.dumps(md)


@pytest.mark.parametrize("bad", [
    [], {"format": "other"}, {"width": 0, "height": 5, "objects": []},
    {"width": 5, "height": 5, "objects": [{"id": 0, "box": [0, 0, 1], "level": "L1"}]},
    {"width": 5, "height": 5, "objects": [{"id": 0, "box": [0, 0, 1, 1], "level": "L9"}]},
    {"width": 5, "height": 5, "objects": [{"id": 0, "box": [0, 0, 1, 1], "level": "L1",
                                           "mask": {"size": [5, 5], "counts": [3]}}]},
    {"width": 5, "height": 5, "objects": [{"id": 0, "box": [0, 0, 1, 1]}, {"id": 0, "box": [0, 0, 1, 1]}]},
])
def test_from_json_rejects(bad):
    with pytest.raises(BadInputError):
        Analysis.from_json(bad)


# --------------------------------------------------------- load_regions
def test_load_regions_sdc_json(tmp_path):
    a = Analysis(width=20, height=10, objects=[obj(0, (1, 1, 5, 5), "L2")])
    p = tmp_path / "r.json"
    p.write_text(json.dumps(a.to_json()))
    assert load_regions(str(p), 20, 10).objects[0].level == "L2"
    with pytest.raises(BadInputError, match="20x10"):
        load_regions(str(p), 30, 10)


def test_load_regions_coco_real_annotations():
    d = json.loads(ANN.read_text())
    im = next(i for i in d["images"] if i["file_name"] == "000000000009.jpg")
    n = sum(1 for x in d["annotations"] if x["image_id"] == im["id"])
    a = load_regions(str(ANN), im["width"], im["height"], file_name="000000000009.jpg")
    assert len(a.objects) == n > 0
    assert {o.label for o in a.objects} >= {"bowl", "broccoli"}
    assert all(o.mask is not None and o.mask.shape == (480, 640) for o in a.objects)
    assert all(o.level in ("L1", "L2", "L3") for o in a.objects)
    # many coco128 images are 640x480: without a file name the entry is ambiguous
    with pytest.raises(BadInputError, match="cannot tell"):
        load_regions(str(ANN), 640, 480)
    # a single-image COCO file needs no name; crowd RLE (list counts) decodes
    crowd = next(x for x in d["annotations"] if x["iscrowd"])
    cim = next(i for i in d["images"] if i["id"] == crowd["image_id"])
    one = {"images": [cim], "annotations": [x for x in d["annotations"] if x["image_id"] == cim["id"]],
           "categories": d["categories"]}
    b = load_regions(one, cim["width"], cim["height"])
    crowd_obj = [o for o in b.objects if abs(o.area - crowd["bbox"][2] * crowd["bbox"][3]) < 1]
    # the foreground is the sum of the odd runs (pycocotools decodes the same pixels)
    assert crowd_obj and crowd_obj[0].mask.sum() == sum(crowd["segmentation"]["counts"][1::2])


def test_load_regions_bare_annotation_list_with_levels():
    anns = [{"bbox": [10, 10, 20, 20], "category_id": 1, "level": "L1"},
            {"bbox": [0, 0, 5, 5], "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]], "score": 0.3, "level": "L3"}]
    a = load_regions(anns, 50, 40)
    assert [o.level for o in a.objects] == ["L1", "L3"]
    assert a.objects[1].mask.sum() >= 25
    assert a.analyzer == "regions(coco)/given"


@pytest.mark.parametrize("bad", ['{"foo": 1}', "not json", '{"annotations": [{"bbox": "x"}]}',
                                 '{"annotations": [{"bbox": [0, 0, 1, 1], "level": "L7"}]}'])
def test_load_regions_rejects(tmp_path, bad):
    p = tmp_path / "bad.json"
    p.write_text(bad)
    with pytest.raises(BadInputError):
        load_regions(str(p), 10, 10)
    with pytest.raises(BadInputError, match="cannot read"):
        load_regions(str(tmp_path / "missing.json"), 10, 10)


# ----------------------------------------------------------------- draw
def test_draw_colours_by_level():
    img = Image.new("RGB", (60, 40), (0, 0, 0))
    a = Analysis(width=60, height=40, objects=[obj(0, (30, 20, 60, 40), "L1"),
                                               obj(1, (0, 20, 20, 40), "L3")])
    out = np.asarray(a.draw(img)).astype(int)
    assert out.shape == (40, 60, 3)
    assert out[35, 45, 0] > 80 and out[35, 45, 2] < 40  # L1 tinted red
    assert out[35, 10, 2] > 80 and out[35, 10, 0] < 60  # L3 tinted blue
    assert out[5, 50].sum() == 0  # background untouched


# ------------------------------------------------------------- ranking
def test_heuristic_ranker_orders_people_over_regions():
    objs = [obj(0, (200, 100, 440, 400), "L3", label="person", score=0.9),
            obj(1, (0, 0, 30, 30), "L3", label="salient region", score=0.4),
            obj(2, (300, 200, 360, 260), "L3", label="cup", score=0.6)]
    heuristic_rank(objs, 640, 480)
    assert [o.level for o in objs] == ["L1", "L3", "L2"]
    assert all(o.reason.startswith("heuristic:") for o in objs)
    # a task that wants cups lifts the cup and lowers the person
    heuristic_rank(objs, 640, 480, task_labels=["cup"])
    assert objs[2].level == "L1" and objs[0].level != "L1"


def test_heuristic_ranker_keeps_l1_for_people_text_vehicles_and_animals():
    big = (120, 90, 520, 390)  # large and central: only the label decides
    labels = ["person", "face", "text", "car", "dog", "dining table", "chair", "salient region"]
    objs = [obj(i, big, "L3", label=lab, score=0.9) for i, lab in enumerate(labels)]
    heuristic_rank(objs, 640, 480)
    assert [o.level for o in objs] == ["L1"] * 5 + ["L2"] * 3
    # a small, doubtful car stays below L1
    faint = [obj(0, (600, 10, 630, 30), "L3", label="car", score=0.2)]
    heuristic_rank(faint, 640, 480)
    assert faint[0].level == "L3"
    # the COCO task ("object detection") lifts the chair; a face is not a COCO class
    heuristic_rank(objs, 640, 480, task_labels=tasks.BUILTIN_TASKS["coco"])
    assert objs[6].level == "L1" and objs[1].level == "L2" and objs[7].level == "L2"


# -------------------------------------------------------------- config
def test_config_file_env_and_argument(tmp_path, monkeypatch):
    p = tmp_path / "c.toml"
    p.write_text('[analysis]\nanalyzer = "offline"\nlmm_timeout = 5\nmasks = "box"\n')
    monkeypatch.setenv("SDC_CONFIG", str(p))
    monkeypatch.setenv("SDC_LMM_MODEL", "m-env")
    cfg = resolve_config({"masks": "grabcut"})
    assert cfg["analyzer"] == "offline" and cfg["lmm_timeout"] == 5.0
    assert cfg["lmm_model"] == "m-env" and cfg["masks"] == "grabcut"
    p.write_text("analyzer = [")
    with pytest.raises(UsageError):
        resolve_config()
    monkeypatch.setenv("SDC_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(UsageError):
        resolve_config()


def test_model_available_checks_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert not model_available("IDEA-Research/grounding-dino-tiny")
    snap = tmp_path / "hub" / "models--IDEA-Research--grounding-dino-tiny" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert not model_available("IDEA-Research/grounding-dino-tiny")  # no weights yet
    (snap / "model.safetensors").write_bytes(b"x")
    assert model_available("IDEA-Research/grounding-dino-tiny")
    local = tmp_path / "local"
    local.mkdir()
    assert not model_available(str(local))
    (local / "config.json").write_text("{}")
    assert model_available(str(local))


# --------------------------------------------------------------- tasks
def test_builtin_tasks_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    labels, src = tasks.resolve_task("COCO detection")
    assert src == "builtin:coco" and len(labels) == 80 and "person" in labels
    assert tasks.resolve_task("people and faces")[1] == "builtin:people"

    class FakeLMM:
        name = "fake"
        calls = 0

        def discover(self, task):
            FakeLMM.calls += 1
            return ["Forklift", "pallet", "worker", "helmet", "forklift"]

    task = "count forklifts in a warehouse"
    labels, src = tasks.resolve_task(task, FakeLMM())
    assert src == "lmm:fake" and labels == ["forklift", "pallet", "worker", "helmet"]
    f = tasks.cache_path(task)
    assert f.parent == tmp_path / "sdc" / "tasks" and f.is_file()
    labels2, src2 = tasks.resolve_task(task, FakeLMM())
    assert (labels2, src2, FakeLMM.calls) == (labels, "cache", 1)
    warn: list[str] = []
    labels3, src3 = tasks.resolve_task("find cars and trucks on the road", None, warn)
    assert src3 == "guess:vehicles" and "truck" in labels3 and warn


def test_importing_the_package_loads_no_heavy_backend():
    import subprocess
    import sys

    code = ("import sys, sdc.analysis; "
            "print(sorted(m for m in ('torch', 'cv2', 'transformers', 'segment_anything', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
