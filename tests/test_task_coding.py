"""Task presets (sdc.task_coding): what `sdc encode --task TEXT -q N` writes, on real COCO images."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sdc import pipeline
from sdc.analysis import Analysis, DetectedObject, load_regions
from sdc.bitstream import read_sdc
from sdc.levels import LEVELS, OBJECT_LEVELS
from sdc.models.codec import SDCCodec, default_codec
from sdc.task_coding import PRESETS, TaskPreset, preset_for, shape_regions

from conftest import COCO, load_rgb

NAME = "000000000042.jpg"  # a dog on a bike's basket: objects over about half of the image


@pytest.fixture(scope="module")
def coco_image():
    """(rgb, ground-truth analysis) of a real COCO image, cropped to 320x240 to keep tests fast."""
    rgb = load_rgb(COCO / "train2017" / NAME)
    h, w = rgb.shape[:2]
    full = load_regions(json.loads((COCO / "annotations" / "instances_train2017.json").read_text()), w, h,
                        file_name=NAME)
    crop = np.ascontiguousarray(rgb[:240, 160:480])
    objects = []
    for o in full.objects:
        x0, y0, x1, y1 = o.box
        box = (max(0.0, x0 - 160), max(0.0, y0), min(320.0, x1 - 160), min(240.0, y1))
        if box[2] - box[0] > 4 and box[3] - box[1] > 4:
            objects.append(DetectedObject(len(objects), o.label, box, o.score, o.level))
    assert objects, "the crop must hold an annotated object"
    return crop, Analysis(320, 240, objects)


def test_task_texts_pick_presets():
    assert preset_for(None) is None and preset_for("  ") is None
    assert preset_for("Object detection.") is PRESETS["object detection"]
    assert preset_for("image   classification") is PRESETS["classification"]
    assert preset_for("semantic segmentation") is PRESETS["segmentation"]
    # a task that names things to find is coded as for detection
    assert preset_for("count the cars") is PRESETS["object detection"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_monotone_in_q(name):
    """At one picture size, no level's quality drops as q grows; the size never shrinks."""
    preset, n = PRESETS[name], default_codec().num_qualities
    points = [preset.coding_point(q, n) for q in range(1, n + 1)]
    assert [s for s, _ in points] == sorted(s for s, _ in points)
    table = [(s, preset.qualities(q, n)) for q, (s, _) in zip(range(1, n + 1), points)]
    for scale in {s for s, _ in points}:
        for lv in LEVELS:
            column = [t[lv] for s, t in table if s == scale]
            assert column == sorted(column) and all(1 <= v <= n for v in column), (scale, lv, column)
    assert points[-1] == (1.0, n)  # the top of -q codes the original at the codec's top quality


def test_scaled_coding_points():
    p = TaskPreset("t", scale=0.5, scaled_offset=2)
    assert [p.coding_point(q, 8) for q in range(1, 9)] == [(0.5, q) for q in range(3, 9)] + [(1.0, 7), (1.0, 8)]
    assert p.qualities(1, 8)["L1"] == 3 and p.qualities(7, 8)["L1"] == 7
    with pytest.raises(ValueError):
        TaskPreset("t", scale=0.01)


def test_qualities_follow_the_offsets():
    p = TaskPreset("t", background="code", background_offset=-3, level_offsets=(0, -1, -2))
    assert p.qualities(5, 8) == {"L1": 5, "L2": 4, "L3": 3, "other": 2}
    assert p.qualities(1, 8) == {"L1": 1, "L2": 1, "L3": 1, "other": 1}
    assert p.levels() == LEVELS
    # not coded, the background takes the top object quality (ẑ's quality is the highest of any position)
    assert p.with_changes(background="hyperprior").qualities(5, 8)["other"] == 5
    assert p.with_changes(background="drop").levels() == OBJECT_LEVELS
    with pytest.raises(ValueError):
        TaskPreset("t", background="blur")


def test_regions_become_grown_boxes():
    mask = np.zeros((100, 200), bool)
    mask[40:60, 50:90] = True
    a = Analysis(200, 100, [DetectedObject(0, "dog", (50, 40, 90, 60), 0.9, "L1", mask=mask),
                            DetectedObject(1, "cat", (180, 90, 200, 100), 0.9, "L2")])
    shaped = shape_regions(a, TaskPreset("t", margin=0.25, margin_px=8))
    dog, cat = shaped.objects
    assert dog.mask is None and dog.box == (40.0, 32.0, 100.0, 68.0)  # 0.25 x 40 = 10 px; max(0.25 x 20, 8) = 8 px
    assert cat.box == (172.0, 82.0, 200.0, 100.0)  # grown by the 8 px minimum, clipped to the image
    assert a.objects[0].mask is mask and a.objects[0].box == (50, 40, 90, 60)  # the input is left as it was
    kept = shape_regions(a, TaskPreset("t", boxes=False, margin=0.0, margin_px=3)).objects[0]
    assert kept.mask.sum() == (20 + 6) * (40 + 6)  # the mask grown by 3 px on every side


def _encode(rgb, analysis, preset, q):
    return pipeline.encode_image(rgb, q=q, analysis=analysis, preset=preset).data


def test_detection_preset_is_monotone_in_rate(coco_image):
    """Half the size at q + 2 up to the top quality, then the original at q: the files grow with q."""
    rgb, gt = coco_image
    preset, n = PRESETS["object detection"], default_codec().num_qualities
    sizes = []
    for q in range(1, n + 1):
        data = _encode(rgb, gt, preset, q)
        f = read_sdc(data)
        scale, quality = preset.coding_point(q, n)
        assert f.header.qualities["L1"] == quality
        assert (f.header.width, f.header.height) == (round(320 * scale), round(240 * scale))
        assert f.display_size == (None if scale == 1 else (320, 240))
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


def test_scaled_file_decodes_at_the_original_size(coco_image):
    rgb, gt = coco_image
    data = _encode(rgb, gt, PRESETS["object detection"], 4)
    f = read_sdc(data)
    assert (f.header.width, f.header.height, f.display_size) == (160, 120, (320, 240))
    decoded = pipeline.decode_sdc(data)
    assert decoded.rgb.shape == rgb.shape and decoded.missing_levels == ()
    err = (decoded.rgb.astype(float) - rgb) ** 2
    assert 10 * np.log10(255 ** 2 / err.mean()) > 22  # a faithful, if softer, picture
    # META's boxes describe the coded picture; the API gives them in the decoded one
    import sdc

    meta_box = f.metadata["objects"][0]["box"]
    api_box = sdc.open(data).objects[0].box
    assert api_box == pytest.approx([2 * v for v in meta_box])
    assert api_box == pytest.approx(gt.objects[0].box, abs=2.5)  # quantised in META (a byte per coordinate)


def test_hyperprior_background_codes_objects_only(coco_image):
    rgb, gt = coco_image
    preset = PRESETS["object detection"].with_changes(background="hyperprior", scale=1.0)
    f = read_sdc(_encode(rgb, gt, preset, 3))
    assert "other" not in f.levels and "other" not in f.missing_levels  # not coded, so not missing either
    decoded = pipeline.decode_sdc(_encode(rgb, gt, preset, 3))
    assert decoded.missing_levels == () and decoded.rgb.shape == rgb.shape
    # the same preset coding the background costs more than leaving it to the hyperprior
    coded_bg = _encode(rgb, gt, preset.with_changes(background="code"), 3)
    assert "other" in read_sdc(coded_bg).levels and len(coded_bg) > len(_encode(rgb, gt, preset, 3))


def test_drop_flattens_the_hyperprior_outside_the_objects(coco_image):
    rgb, _ = coco_image
    one = Analysis(320, 240, [DetectedObject(0, "dog", (8, 8, 56, 56), 0.9, "L1")])  # far from most z cells
    drop = PRESETS["object detection"].with_changes(background="drop", margin=0.0, margin_px=0.0, scale=1.0)
    data = _encode(rgb, one, drop, 4)
    f = read_sdc(data)
    z = pipeline.decode_symbols(data)["hyperprior"]
    support = SDCCodec.hyperprior_support(f.region_map, OBJECT_LEVELS)
    assert 0 < support.sum() < support.size
    assert not z[:, ~support].any() and z[:, support].any()
    kept = _encode(rgb, one, drop.with_changes(background="hyperprior"), 4)
    assert len(read_sdc(data).hyperprior) < len(read_sdc(kept).hyperprior)
    # the object levels are coded from the same ẑ near them: their pixels decode alike
    a, b = pipeline.decode_sdc(data).rgb, pipeline.decode_sdc(kept).rgb
    cells = np.isin(f.region_map, [0, 1, 2])
    inner = np.repeat(np.repeat(cells, 16, 0), 16, 1)[:240, :320]
    assert np.abs(a[inner].astype(int) - b[inner]).mean() < 3


def test_no_object_found_codes_the_whole_image(coco_image):
    rgb, _ = coco_image
    data = _encode(rgb, Analysis(320, 240, []), PRESETS["object detection"], 2)
    f = read_sdc(data)
    assert list(f.levels) == ["other"] and f.header.qualities["other"] == 4  # half the size, at 2 + 2


def test_hand_qualities_turn_the_preset_off(coco_image):
    rgb, gt = coco_image
    data = pipeline.encode_image(rgb, qualities={"L1": 4, "other": 2}, analysis=gt, task="object detection").data
    f = read_sdc(data)
    assert "other" in f.levels and f.header.qualities == {"L1": 4, "L2": 5, "L3": 5, "other": 2}
