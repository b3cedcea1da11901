"""The Python API (sdc.api): its docstring examples run as tests, and it maps its
arguments to sdc.pipeline exactly as `sdc encode` / `sdc decode` do."""
from __future__ import annotations

import doctest
import io

import numpy as np
import pytest
from PIL import Image

import sdc
from sdc import api
from sdc.bitstream import DEFAULT_MAX_PIXELS, read_sdc
from sdc.errors import BadInputError, FormatError, SdcError, UsageError
from sdc.levels import DEFAULT_QUALITY, LEVELS

from conftest import REPO, SAMPLE

DOCTESTS = [t for module in (api, api.inputs, api.reader)
            for t in doctest.DocTestFinder().find(module, globs={}) if t.examples]
NO_OBJECTS = {"width": 96, "height": 64, "objects": []}


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test, monkeypatch):
    """Run as a user would, from the checkout (the examples read samples/astronaut.png)."""
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=out.write)
    assert result.failed == 0, out.getvalue()


def test_docstrings_cover_the_api():
    """Every public function of sdc.api (and so of sdc) has an example that runs."""
    import inspect

    names = {t.name.split(".")[-1] for t in DOCTESTS}
    functions = {n for n in api.__all__ if inspect.isfunction(getattr(api, n))}
    assert {"encode", "decode", "decode_array", "open", "read_image"} <= functions
    assert functions | {"api", "SdcImage"} <= names, functions - names
    assert set(sdc.__all__) <= set(api.__all__) | {"SdcError", "UsageError", "BadInputError", "FormatError",
                                                    "CodecMismatchError"}


def rgb_image(w: int = 96, h: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1).astype(np.uint8)


@pytest.mark.parametrize("kwargs, expect", [
    ({}, {"qualities": {lv: DEFAULT_QUALITY for lv in LEVELS}}),
    ({"quality": 3}, {"qualities": {lv: 3 for lv in LEVELS}}),  # sdc encode -q 3
    ({"quality": 3, "task": "object detection"}, {"q": 3}),  # -q 3 --task ...: the preset spreads it
    ({"task": "classification"}, {"q": DEFAULT_QUALITY}),
    ({"quality": {"l1": 7, "other": 2}, "task": "segmentation"},  # --quality: by hand, preset off
     {"qualities": {"L1": 7, "L2": DEFAULT_QUALITY, "L3": DEFAULT_QUALITY, "other": 2}}),
])
def test_quality_maps_as_the_cli_does(spy, kwargs, expect):
    sdc.encode(rgb_image(), regions=NO_OBJECTS, **kwargs)
    kw = spy[-1][1]
    assert {k: kw[k] for k in ("q", "qualities") if k in kw} == expect
    assert kw["task"] == kwargs.get("task") and kw["keep_levels"] == LEVELS and kw["include_meta"] is True


def test_other_arguments_reach_the_pipeline(spy, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(rgb_image()).save(path)
    regions = tmp_path / "r.json"
    regions.write_text('{"width": 96, "height": 64, "objects": [{"label": "cat", "box": [0, 0, 40, 30], '
                       '"score": 0.9, "level": "L1"}]}')
    data = sdc.encode(str(path), levels=["other", "L1"], regions=regions, metadata=False, effort=1)
    kw = spy[-1][1]
    assert kw["keep_levels"] == ("L1", "other") and kw["include_meta"] is False and kw["effort"] == 1
    assert [o.label for o in kw["analysis"].objects] == ["cat"]
    f = read_sdc(data)
    assert tuple(f.levels) == ("L1", "other") and f.metadata is None
    # every image form gives the same file
    pil = Image.open(path)
    assert sdc.encode(pil, levels="L1,other", regions=regions, metadata=False) == data
    assert sdc.encode(path.read_bytes(), levels="L1,other", regions=regions, metadata=False) == data
    sdc.decode(data, levels="L1", composer="none")
    assert spy[-1] == ("decode", {"levels": ("L1",), "composer": "none", "max_pixels": DEFAULT_MAX_PIXELS})
    sdc.decode_array(data)
    assert spy[-1] == ("decode", {"levels": None, "composer": None, "max_pixels": DEFAULT_MAX_PIXELS})


@pytest.mark.parametrize("kwargs, error, what", [
    ({"quality": 0}, UsageError, "out of range"),
    ({"quality": 99}, UsageError, "out of range"),
    ({"quality": "5"}, UsageError, "must be an integer"),
    ({"quality": True}, UsageError, "must be an integer"),
    ({"quality": {"L9": 3}}, UsageError, "unknown level 'L9'"),
    ({"quality": {"other": 99}}, UsageError, "quality 99 for other is out of range"),
    ({"levels": "L1,L7"}, UsageError, "unknown level"),
    ({"analyzer": "nonsense"}, UsageError, "unknown analyzer"),
    ({"effort": 9}, UsageError, "effort must be"),
    ({"max_pixels": 100}, BadInputError, "over the limit"),
    ({"regions": "/nonexistent/r.json"}, BadInputError, "no such file"),
    ({"regions": {"width": 10, "height": 10, "objects": []}}, BadInputError, "10x10 image"),
])
def test_encode_errors_are_one_line(spy, kwargs, error, what):
    with pytest.raises(error, match=what) as e:
        sdc.encode(rgb_image(), **kwargs)
    assert "\n" not in str(e.value)
    assert spy == []


@pytest.mark.parametrize("image, error, what", [
    (np.zeros((64, 96), np.uint8), BadInputError, r"\(H, W, 3\) uint8"),
    (np.zeros((64, 96, 3), np.float32), BadInputError, r"\(H, W, 3\) uint8"),
    (12, UsageError, "not int"),
    ("/nonexistent/x.png", BadInputError, "no such file"),
    (b"not an image", BadInputError, "not an image file"),
])
def test_bad_images(image, error, what):
    with pytest.raises(error, match=what):
        sdc.encode(image, regions=NO_OBJECTS)


def test_open_decode_truncate(tmp_path):
    boxes = {"width": 96, "height": 64, "objects": [
        {"label": "cat", "box": [0, 0, 40, 30], "score": 0.9, "level": "L1"},
        {"label": "mat", "box": [50, 30, 90, 60], "score": 0.5, "level": "L2", "reason": "under the cat"}]}
    data = sdc.encode(rgb_image(), regions=boxes, quality={"L1": 6})
    (tmp_path / "x.sdc").write_bytes(data)
    img = sdc.open(tmp_path / "x.sdc")
    assert isinstance(img, sdc.SdcImage) and img.data == data
    assert (img.width, img.height, img.size) == (96, 64, (96, 64))
    assert img.levels == ("L1", "L2", "other") and img.missing_levels == ()
    assert img.qualities == {"L1": 6, "L2": DEFAULT_QUALITY, "L3": DEFAULT_QUALITY, "other": DEFAULT_QUALITY}
    assert [(o.label, o.level) for o in img.objects] == [("cat", "L1"), ("mat", "L2")]
    assert img.objects[1].reason == "under the cat" and img.objects[0].box == (0.0, 0.0, 40.0, 30.0)
    full = img.decode_array()
    assert np.array_equal(full, sdc.decode_array(str(tmp_path / "x.sdc")))
    assert np.array_equal(np.asarray(img.decode()), full)
    small = sdc.open(img.truncate(["L1"]))
    assert small.levels == ("L1",) and small.missing_levels == ("L2", "other")
    # without L2 and other the decode changes there, much less inside L1's cells
    diff = np.abs(small.decode_array().astype(int) - full)
    assert diff[:16, :32].mean() < diff[32:, 56:].mean()
    assert repr(small) == "<SdcImage 96x64, levels L1, missing L2,other>"
    assert sdc.open(sdc.encode(rgb_image(), regions=NO_OBJECTS, metadata=False)).objects == ()


@pytest.mark.parametrize("data, error, what", [
    (b"", FormatError, "empty"),
    (b"GIF89a" + bytes(30), FormatError, "looks like a GIF"),
    ("/nonexistent/x.sdc", BadInputError, "no such file"),
    (42, UsageError, "not int"),
])
def test_open_and_decode_errors(spy, data, error, what):
    for call in (sdc.open, sdc.decode, sdc.decode_array):
        with pytest.raises(error, match=what):
            call(data)
    assert spy == []


def test_decode_argument_errors(spy):
    data = sdc.encode(rgb_image(), regions=NO_OBJECTS)
    spy.clear()
    with pytest.raises(UsageError, match="unknown level"):
        sdc.decode(data, levels="L5")
    with pytest.raises(UsageError, match="unknown composer"):
        sdc.decode(data, composer="paint")
    with pytest.raises(FormatError, match="over the limit"):
        sdc.decode(data, max_pixels=100)
    with pytest.raises(UsageError, match="unknown level"):
        sdc.open(data).truncate("L0")
    assert spy == []
    with pytest.raises(BadInputError, match="already an .sdc file"):
        sdc.encode(data)


def test_exports():
    assert set(sdc.__all__) >= {"encode", "decode", "decode_array", "open", "SdcImage"}
    for name in sdc.__all__:
        assert getattr(sdc, name) is not None
    assert issubclass(sdc.UsageError, SdcError) and sdc.open is api.open
    assert api.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
    with pytest.raises(AttributeError):
        sdc.no_such_name  # noqa: B018


def test_sample_exists():
    assert SAMPLE.is_file()  # the module docstring's tour reads it
