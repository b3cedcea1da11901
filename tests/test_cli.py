"""The sdc command line, in process (click's CliRunner).

encode/decode run through `fake_pipeline` (same signatures as sdc.pipeline,
lossless and fast) so that these tests check the command line itself: naming,
stdin/stdout, prefixes, errors, exit codes, atomic writes. inspect, truncate,
analyze and --regions use the real code.
"""
from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import sdc
from sdc import cli as cli_module
from sdc.bitstream import DEFAULT_MAX_PIXELS, read_sdc, truncate_sdc
from sdc.cli import cli
from sdc.levels import LEVELS

import fake_pipeline
from bitstream_helpers import chunk_spans, header_length


@pytest.fixture
def pipeline(monkeypatch):
    monkeypatch.setitem(sys.modules, "sdc.pipeline", fake_pipeline)
    monkeypatch.setattr(sdc, "pipeline", fake_pipeline, raising=False)
    fake_pipeline.calls.clear()
    return fake_pipeline


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for name, (w, h) in {"a": (130, 70), "b": (64, 64), "c": (33, 200)}.items():
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def run(args, input=None, cwd=None):
    runner = CliRunner()
    if cwd is not None:
        old = os.getcwd()
        os.chdir(cwd)
    try:
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    finally:
        if cwd is not None:
            os.chdir(old)


def pixels(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("sdc: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ------------------------------------------------------------------ encode / decode
def test_encode_decode_round_trip_default_names(pipeline, images):
    a = images[0]
    r = run(["encode", a])
    assert r.exit_code == 0, r.stderr
    out = a.with_suffix(".sdc")
    f = read_sdc(out.read_bytes())
    assert (f.header.width, f.header.height) == (130, 70)
    assert f.header.qualities == {lv: 4 for lv in LEVELS}
    assert f.metadata["analyzer"] == "fake(center)"
    assert "fake(center)" in r.stderr  # which analyzer ran
    a.rename(a.with_name("orig.png"))
    r = run(["decode", out])
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(pixels(a.with_suffix(".png")), pixels(a.with_name("orig.png")))
    assert pipeline.calls[-1] == ("decode", {"levels": None, "composer": None})


@pytest.mark.parametrize("q", range(1, 9))
def test_every_quality(pipeline, images, q, tmp_path):
    out = tmp_path / f"q{q}.sdc"
    r = run(["encode", images[1], "-q", q, "-o", out])
    assert r.exit_code == 0, r.stderr
    assert read_sdc(out.read_bytes()).header.qualities == {lv: q for lv in LEVELS}
    r = run(["decode", out, "-o", tmp_path / f"q{q}.png"])
    assert r.exit_code == 0 and np.array_equal(pixels(tmp_path / f"q{q}.png"), pixels(images[1]))


def test_quality_per_level(pipeline, images, tmp_path):
    out = tmp_path / "x.sdc"
    r = run(["encode", images[0], "-q", 3, "--quality", "L1=7,other=2", "-o", out])
    assert r.exit_code == 0, r.stderr
    want = {"L1": 7, "L2": 3, "L3": 3, "other": 2}
    assert pipeline.calls[-1][1]["qualities"] == want
    assert read_sdc(out.read_bytes()).header.qualities == want


@pytest.mark.parametrize("spec, keep", [("L1", ("L1",)), ("L1,L2", ("L1", "L2")),
                                        ("other,L3", ("L3", "other")), ("all", LEVELS)])
def test_encode_levels_and_decode_levels(pipeline, images, tmp_path, spec, keep):
    out = tmp_path / "x.sdc"
    r = run(["encode", images[0], "--levels", spec, "-o", out])
    assert r.exit_code == 0, r.stderr
    f = read_sdc(out.read_bytes())
    assert tuple(f.levels) == keep
    assert f.missing_levels == tuple(lv for lv in LEVELS if lv not in keep)
    r = run(["decode", out, "--levels", spec, "-o", tmp_path / "x.png", "--composer", "blur"])
    assert r.exit_code == 0, r.stderr
    assert pipeline.calls[-1] == ("decode", {"levels": None if keep == LEVELS else keep, "composer": "blur"})
    if keep != LEVELS:
        assert "missing" in r.stderr


def test_many_inputs_to_directory_with_summary(pipeline, images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    outdir = tmp_path / "out"
    r = run(["encode", *images, bad, "-o", f"{outdir}/"])
    assert r.exit_code == 2
    assert sorted(p.name for p in outdir.iterdir()) == ["a.sdc", "b.sdc", "c.sdc"]
    line = one_error_line(r)
    assert "bad.png" in line and "not an image" in line and line.count("bad.png") == 1
    assert "3 files" in r.stderr and "bpp" in r.stderr
    for p in images:  # the table reports whole-file bpp
        size = (outdir / (p.stem + ".sdc")).stat().st_size
        f = read_sdc((outdir / (p.stem + ".sdc")).read_bytes())
        assert f"{8 * size / (f.header.width * f.header.height):.4f}" in r.stderr
    r = run(["decode", *(outdir / (p.stem + ".sdc") for p in images), "-o", f"{tmp_path}/dec/"])
    assert r.exit_code == 0, r.stderr
    for p in images:
        assert np.array_equal(pixels(tmp_path / "dec" / (p.stem + ".png")), pixels(p))


def test_stdin_stdout(pipeline, images):
    png = images[0].read_bytes()
    r = run(["encode", "-"], input=png)
    assert r.exit_code == 0, r.stderr
    data = r.stdout_bytes
    assert read_sdc(data).header.width == 130
    r = run(["decode", "-"], input=data)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"\x89PNG") and np.array_equal(pixels(r.stdout_bytes), pixels(images[0]))
    r = run(["decode", "-", "-o", "-"], input=data)
    assert np.array_equal(pixels(r.stdout_bytes), pixels(images[0]))


def test_decode_output_format_from_extension(pipeline, images, tmp_path):
    run(["encode", images[0], "-o", tmp_path / "x.sdc"])
    r = run(["decode", tmp_path / "x.sdc", "-o", tmp_path / "x.bmp"])
    assert r.exit_code == 0
    assert (tmp_path / "x.bmp").read_bytes()[:2] == b"BM"


def test_head_c_prefixes(pipeline, images, tmp_path):
    """`head -c N x.sdc | sdc decode -`: complete levels decode, the rest is reported."""
    out = tmp_path / "x.sdc"
    run(["encode", images[1], "--no-meta", "-o", out])
    data = out.read_bytes()
    spans = {name: (s, e) for name, s, e in chunk_spans(data)}
    for n in sorted({header_length(data) - 1, spans["HYPR"][1] - 1, spans["HYPR"][1],
                     spans["L1"][1], spans["L2"][1] + 1, spans["L3"][1], len(data) - 1, len(data)}):
        r = run(["decode", "-", "-o", "-"], input=data[:n])
        if n < spans["HYPR"][1]:
            assert r.exit_code == 2
            line = one_error_line(r)
            assert "truncated header" in line or "no level can be decoded" in line
            assert r.stdout_bytes == b""
        else:
            assert r.exit_code == 0, r.stderr
            complete = [lv for lv in LEVELS if spans[lv][1] <= n]
            call = pipeline.calls[-1]
            assert call[0] == "decode"
            missing = [lv for lv in LEVELS if lv not in complete]
            if missing:
                assert f"levels {', '.join(missing)} missing" in r.stderr
            assert np.array_equal(pixels(r.stdout_bytes), pixels(images[1]))


@pytest.mark.parametrize("case", ["flip-L2", "flip-header", "not-sdc", "empty", "trailing", "png-as-sdc"])
def test_damaged_inputs_one_line_exit_2(pipeline, images, tmp_path, case):
    out = tmp_path / "x.sdc"
    run(["encode", images[0], "-o", out])
    data = bytearray(out.read_bytes())
    spans = {name: (s, e) for name, s, e in chunk_spans(bytes(data))}
    expect = {"flip-L2": "chunk L2", "flip-header": "header", "not-sdc": "not an sdc file",
              "empty": "empty", "trailing": "trailing data", "png-as-sdc": "looks like a PNG"}[case]
    if case == "flip-L2":
        data[spans["L2"][0] + 1] ^= 0x10
    elif case == "flip-header":
        data[14] ^= 1
    elif case == "not-sdc":
        data = bytearray(b"hello, world\n" * 10)
    elif case == "empty":
        data = bytearray()
    elif case == "trailing":
        data += b"\x00"
    else:
        data = bytearray(images[0].read_bytes())
    bad = tmp_path / "bad.sdc"
    bad.write_bytes(bytes(data))
    for cmd in (["decode", bad, "-o", tmp_path / "o.png"], ["inspect", bad],
                ["truncate", bad, "--levels", "L1", "-o", tmp_path / "t.sdc"]):
        r = run(cmd)
        assert r.exit_code == 2, (cmd, r.stderr)
        assert expect in one_error_line(r)
        assert "bad.sdc" in one_error_line(r)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "t.sdc").exists()


def test_codec_mismatch_is_bad_input(pipeline, images, tmp_path, monkeypatch):
    run(["encode", images[0], "-o", tmp_path / "x.sdc"])
    monkeypatch.setattr(fake_pipeline, "CODEC_ID", b"othercdc")
    r = run(["decode", tmp_path / "x.sdc", "-o", tmp_path / "x.png"])
    assert r.exit_code == 2 and "other codec weights" in one_error_line(r)


def test_no_meta(pipeline, images, tmp_path):
    run(["encode", images[0], "--no-meta", "-o", tmp_path / "x.sdc"])
    assert read_sdc((tmp_path / "x.sdc").read_bytes()).metadata is None
    assert pipeline.calls[-1][1]["include_meta"] is False
    r = run(["inspect", tmp_path / "x.sdc"])
    assert r.exit_code == 0 and "--no-meta" in r.stdout


def test_task_and_analyzer_passed(pipeline, images, tmp_path):
    r = run(["encode", images[0], "--task", "find the cat", "--analyzer", "offline", "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 0, r.stderr
    assert pipeline.calls[-1][1]["task"] == "find the cat"
    assert pipeline.calls[-1][1]["analyzer"] == "offline"
    r = run(["encode", images[0], "--analyzer", "nonsense", "-o", tmp_path / "y.sdc"])
    assert r.exit_code == 1 and "unknown analyzer" in one_error_line(r)
    assert not (tmp_path / "y.sdc").exists()


# ------------------------------------------------------------------ outputs
def test_never_overwrites_without_force(pipeline, images, tmp_path):
    out = tmp_path / "x.sdc"
    out.write_bytes(b"precious")
    r = run(["encode", images[0], "-o", out])
    assert r.exit_code == 1 and "--force" in one_error_line(r)
    assert out.read_bytes() == b"precious"
    assert pipeline.calls == []  # checked before any work
    r = run(["encode", images[0], "-o", out, "--force"])
    assert r.exit_code == 0 and read_sdc(out.read_bytes())
    r = run(["truncate", out, "--levels", "L1", "-o", out])
    assert r.exit_code == 1 and "own input" in one_error_line(r)


def test_ctrl_c_leaves_no_partial_output(pipeline, images, tmp_path, monkeypatch):
    real = fake_pipeline.encode_image
    n = {"calls": 0}

    def interrupted(*a, **kw):
        n["calls"] += 1
        if n["calls"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(fake_pipeline, "encode_image", interrupted)
    out = tmp_path / "out"
    r = run(["encode", *images, "-o", f"{out}/"])
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert sorted(os.listdir(out)) == ["a.sdc"]  # complete first file, nothing else, no temp files
    assert read_sdc((out / "a.sdc").read_bytes())


def test_interrupt_while_writing_removes_temp(tmp_path, monkeypatch):
    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        cli_module._write_output(str(tmp_path / "x.sdc"), b"data", force=False)
    assert os.listdir(tmp_path) == []


def test_refuses_binary_to_terminal(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", TTY())
    with pytest.raises(sdc.errors.UsageError, match="terminal"):
        cli_module._plan_outputs(("a.png",), "-", ".sdc", False)
    assert cli_module._plan_outputs(("a.png",), "-", ".json", False, binary=False) == ["-"]


@pytest.mark.parametrize("args, what", [
    (["encode", "a.png", "b.png", "-o", "one.sdc"], "must be a directory"),
    (["encode", "-", "-"], "only once"),
    (["encode", "a.png", "b.png", "-o", "-"], "single input"),
    (["encode", "a.png", "-q", "0"], "at least 1"),
    (["encode", "a.png", "-q", "9"], "out of range"),
    (["encode", "a.png", "--quality", "L1:3"], "LEVEL=N"),
    (["encode", "a.png", "--quality", "L9=3"], "unknown level"),
    (["encode", "a.png", "--quality", "L1=x"], "not an integer"),
    (["encode", "a.png", "--levels", "L1,L7"], "unknown level"),
    (["decode", "x.sdc", "--levels", "nope"], "unknown level"),
    (["encode", "a.png", "--bogus"], "No such option"),
    (["encode"], "Missing argument"),
    (["frobnicate"], "No such command"),
    (["truncate", "x.sdc", "--levels", "L1"], "-o OUT"),
    (["truncate", "x.sdc", "-o", "y.sdc"], "--levels"),
    (["decode", "x.sdc", "--max-pixels", "0"], "max-pixels"),
])
def test_usage_errors_exit_1(pipeline, images, tmp_path, args, what):
    r = run(args, cwd=images[0].parent)
    assert r.exit_code == 1, r.stderr
    assert what in one_error_line(r)


def test_missing_input_is_bad_input(pipeline, tmp_path):
    r = run(["decode", tmp_path / "nope.sdc", "-o", tmp_path / "x.png"])
    assert r.exit_code == 2 and "no such file" in one_error_line(r)
    r = run(["inspect", tmp_path])
    assert r.exit_code == 2 and "is a directory" in one_error_line(r)


def test_internal_error_one_line_and_debug_traceback(pipeline, images, tmp_path, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(fake_pipeline, "encode_image", broken)
    r = run(["encode", images[0], "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 1
    assert "kaboom" in one_error_line(r) and "--debug" in one_error_line(r)
    r = run(["--debug", "encode", images[0], "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 1 and "Traceback" in r.stderr and "kaboom" in r.stderr


def test_huge_image_header_rejected(pipeline, images, tmp_path):
    import struct

    from bitstream_helpers import refresh_header_crc

    run(["encode", images[0], "-o", tmp_path / "x.sdc"])
    data = bytearray((tmp_path / "x.sdc").read_bytes())
    struct.pack_into(">II", data, 12, 100_000, 100_000)
    (tmp_path / "huge.sdc").write_bytes(refresh_header_crc(data))
    for cmd in (["decode", tmp_path / "huge.sdc", "-o", tmp_path / "h.png"], ["inspect", tmp_path / "huge.sdc"]):
        r = run(cmd)
        assert r.exit_code == 2 and "--max-pixels" in one_error_line(r)
    assert pipeline.calls[-1][0] == "encode"  # the decoder was never called
    r = run(["encode", images[0], "--max-pixels", 100, "-o", tmp_path / "y.sdc"])
    assert r.exit_code == 2 and "over the limit" in one_error_line(r)
    assert cli_module.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------ inspect / truncate
def test_inspect_tables_and_json(pipeline, images, tmp_path):
    from bitstream_helpers import META, sample_bytes

    p = tmp_path / "s.sdc"
    p.write_bytes(sample_bytes())
    r = run(["inspect", p])
    assert r.exit_code == 0, r.stderr
    for text in ("150x70", "RMAP", "HYPR", "dog", "ball", "tree", "a dog on grass", "find the dog",
                 "test(fixed)", "matches the task", "bpp"):
        assert text in r.stdout, text
    r = run(["inspect", p, "--json"])
    info = json.loads(r.stdout)
    assert info["file_bytes"] == len(p.read_bytes())
    assert [o["label"] for o in info["metadata"]["objects"]] == [o["label"] for o in META["objects"]]
    r = run(["inspect", "-", "--json"], input=p.read_bytes())
    assert json.loads(r.stdout)["file"] == "<stdin>"


def test_inspect_damaged_shows_table_then_error(tmp_path):
    from bitstream_helpers import sample_bytes

    data = bytearray(sample_bytes())
    s, e = [(s, e) for n, s, e in chunk_spans(bytes(data)) if n == "L3"][0]
    data[s] ^= 0xFF
    p = tmp_path / "d.sdc"
    p.write_bytes(bytes(data))
    r = run(["inspect", p])
    assert r.exit_code == 2
    assert "CRC mismatch" in r.stdout and "chunk L3" in one_error_line(r)
    cut = tmp_path / "cut.sdc"
    cut.write_bytes(sample_bytes()[:s + 2])
    r = run(["inspect", cut])
    assert r.exit_code == 0 and "truncated (2 of" in r.stdout and "missing levels: L3, other" in r.stdout


def test_truncate_cli(tmp_path):
    from bitstream_helpers import sample_bytes

    src = tmp_path / "s.sdc"
    src.write_bytes(sample_bytes())
    r = run(["truncate", src, "--levels", "L1,L2", "-o", tmp_path / "t.sdc"])
    assert r.exit_code == 0, r.stderr
    out = (tmp_path / "t.sdc").read_bytes()
    assert out == truncate_sdc(src.read_bytes(), ("L1", "L2"))
    f = read_sdc(out)
    assert tuple(f.levels) == ("L1", "L2") and f.missing_levels == ("L3", "other")
    assert f"-> {len(out):,} bytes" in r.stderr
    r = run(["truncate", "-", "--levels", "L2"], input=out)
    assert r.exit_code == 0 and tuple(read_sdc(r.stdout_bytes).levels) == ("L2",)
    # asking for a level the file no longer has: kept what is there, with a warning
    r = run(["truncate", tmp_path / "t.sdc", "--levels", "L1,other", "-o", tmp_path / "u.sdc"])
    assert r.exit_code == 0 and "no complete other" in r.stderr
    assert tuple(read_sdc((tmp_path / "u.sdc").read_bytes()).levels) == ("L1",)
    r = run(["inspect", tmp_path / "u.sdc"])
    assert "dropped" in r.stdout


# ------------------------------------------------------------------ analysis and --regions
def test_regions_sdc_analysis_and_coco(pipeline, images, tmp_path):
    from sdc.analysis import Analysis

    a = images[0]  # 130 x 70
    analysis = {"format": "sdc-analysis", "version": 1, "width": 130, "height": 70, "analyzer": "mine",
                "objects": [{"id": 0, "label": "cat", "box": [0, 0, 40, 30], "score": 0.9, "level": "L1"}]}
    from sdc.analysis.core import FORMAT_NAME, FORMAT_VERSION
    analysis.update(format=FORMAT_NAME, version=FORMAT_VERSION)
    (tmp_path / "r.json").write_text(json.dumps(analysis))
    r = run(["encode", a, "--regions", tmp_path / "r.json", "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 0, r.stderr
    used = pipeline.calls[-1][1]["analysis"]
    assert isinstance(used, Analysis) and [o.label for o in used.objects] == ["cat"]
    f = read_sdc((tmp_path / "x.sdc").read_bytes())
    assert f.region_map[0, 0] == 0 and f.metadata["objects"][0]["label"] == "cat"

    coco = {"images": [{"id": 7, "file_name": "a.png", "width": 130, "height": 70},
                       {"id": 8, "file_name": "b.png", "width": 64, "height": 64}],
            "categories": [{"id": 1, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [60, 20, 30, 30],
                             "segmentation": [[60, 20, 90, 20, 90, 50]], "area": 450, "iscrowd": 0},
                            {"id": 2, "image_id": 8, "category_id": 1, "bbox": [0, 0, 10, 10],
                             "area": 100, "iscrowd": 0}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    r = run(["encode", images[0], images[1], "--regions", tmp_path / "coco.json", "-o", f"{tmp_path}/c/"])
    assert r.exit_code == 0, r.stderr
    encs = [c[1]["analysis"] for c in pipeline.calls if c[0] == "encode"][-2:]
    assert [[o.label for o in e.objects] for e in encs] == [["dog"], ["dog"]]
    assert encs[0].objects[0].box[0] == pytest.approx(60) and encs[1].objects[0].box[0] == pytest.approx(0)
    (tmp_path / "junk.json").write_text("{not json")
    r = run(["encode", a, "--regions", tmp_path / "junk.json", "-o", tmp_path / "j.sdc"])
    assert r.exit_code == 2 and "not JSON" in one_error_line(r)


def test_analyze_then_encode_with_regions(pipeline, tmp_path):
    from bitstream_helpers import sample_bytes  # noqa: F401  (keeps helpers importable)

    img = np.full((96, 128, 3), 90, np.uint8)
    img[30:70, 40:90] = (250, 240, 30)  # a salient block
    Image.fromarray(img).save(tmp_path / "s.png")
    r = run(["analyze", tmp_path / "s.png", "-o", tmp_path / "s.json", "--analyzer", "offline",
             "--draw", tmp_path / "s_regions.png"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["width"] == 128 and doc["height"] == 96 and doc["analyzer"] in r.stderr
    assert pixels(tmp_path / "s_regions.png").shape == (96, 128, 3)
    r = run(["analyze", tmp_path / "s.png", "--analyzer", "offline"])
    assert r.exit_code == 0 and json.loads(r.stdout)["width"] == 128
    r = run(["encode", tmp_path / "s.png", "--regions", tmp_path / "s.json"])
    assert r.exit_code == 0, r.stderr
    used = pipeline.calls[-1][1]["analysis"]
    assert [o.label for o in used.objects] == [o["label"] for o in doc["objects"]]


# ------------------------------------------------------------------ Pillow plugin
def test_pillow_plugin_opens_sdc(pipeline, images, tmp_path):
    run(["encode", images[0], "-o", tmp_path / "x.sdc"])
    with Image.open(tmp_path / "x.sdc") as im:
        assert im.format == "SDC" and im.size == (130, 70) and im.mode == "RGB"
        assert im.info["sdc"]["levels"] == LEVELS
        assert np.array_equal(np.asarray(im), pixels(images[0]))
    data = (tmp_path / "x.sdc").read_bytes()
    with Image.open(io.BytesIO(truncate_sdc(data, ("L1",)))) as im:
        assert im.info["sdc"]["missing_levels"] == ("L2", "L3", "other")
        assert im.convert("L").size == (130, 70)
    bad = bytearray(data)
    bad[20] ^= 1
    with pytest.raises(OSError, match="header"):
        Image.open(io.BytesIO(bytes(bad)))
    from sdc import pillow_plugin
    from sdc.bitstream import MAGIC

    assert pillow_plugin.MAGIC == MAGIC
