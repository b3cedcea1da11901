"""The sdc command line, in process (click's CliRunner), with the real codec.

Images are small synthetic ones so that the whole file runs in seconds; the
codec is loaded once per process. `spy` records what the CLI passes to
sdc.pipeline; failures (Ctrl-C, internal errors) are injected by patching it.
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
from sdc.cli import io as cli_io
from sdc.cli import options as cli_options
from sdc import pipeline as real_pipeline
from sdc.bitstream import DEFAULT_MAX_PIXELS, read_sdc, truncate_sdc
from sdc.cli import cli
from sdc.levels import DEFAULT_QUALITY, LEVELS
from sdc.models.weights import manifest_num_qualities

from bitstream_helpers import chunk_spans, header_length, patch_header

SUBSETS = [tuple(lv for k, lv in enumerate(LEVELS) if m >> k & 1) for m in range(1, 16)]


def smooth_image(w: int, h: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / (9 + seed) + seed), 128 + 90 * np.cos(y / 11 - seed),
                    128 + 60 * np.sin((x + y) / 17)], axis=-1)
    img[h // 4: h // 2, w // 3: 2 * w // 3] = (230, 40, 40)  # a flat red block
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    paths = []
    for k, (name, (w, h)) in enumerate({"a": (130, 70), "b": (64, 64), "c": (40, 90)}.items()):
        p = tmp_path / f"{name}.png"
        Image.fromarray(smooth_image(w, h, k)).save(p)
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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("sdc: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ------------------------------------------------------------------ encode / decode
def test_encode_decode_round_trip_default_names(spy, images):
    a = images[0]
    r = run(["encode", a])
    assert r.exit_code == 0, r.stderr
    out = a.with_suffix(".sdc")
    data = out.read_bytes()
    f = read_sdc(data)
    assert (f.header.width, f.header.height) == (130, 70)
    assert f.header.qualities == {lv: DEFAULT_QUALITY for lv in LEVELS}
    analyzer = f.metadata["analyzer"]
    assert analyzer and analyzer in r.stderr  # which analyzer ran
    assert f"{8 * len(data) / (130 * 70):.4f}" in r.stderr  # whole-file bpp in the table
    original = pixels(a)
    a.unlink()
    r = run(["decode", out])
    assert r.exit_code == 0, r.stderr
    decoded = pixels(a.with_suffix(".png"))
    assert decoded.shape == original.shape and psnr(decoded, original) > 18
    assert spy[-1] == ("decode", {"levels": None, "composer": None, "max_pixels": DEFAULT_MAX_PIXELS})


def test_task_file_decodes_at_the_original_size(tmp_path):
    """--task codes a half-size picture; decode writes, and its table reports, the original size."""
    src = tmp_path / "wide.png"
    Image.fromarray(smooth_image(260, 140, 7)).save(src)
    r = run(["encode", src, "--task", "object detection", "-q", "2"])
    assert r.exit_code == 0, r.stderr
    f = read_sdc(src.with_suffix(".sdc").read_bytes())
    assert (f.header.width, f.header.height, f.display_size) == (130, 70, (260, 140))
    src.unlink()
    r = run(["decode", src.with_suffix(".sdc")])
    assert r.exit_code == 0, r.stderr
    assert pixels(src.with_suffix(".png")).shape == (140, 260, 3) and "260x140" in r.stderr


def test_every_quality(spy, images, tmp_path):
    sizes, quality = [], []
    for q in range(1, manifest_num_qualities() + 1):
        out = tmp_path / f"q{q}.sdc"
        r = run(["encode", images[1], "-q", q, "-o", out, "--regions", _regions(tmp_path, 64, 64)])
        assert r.exit_code == 0, r.stderr
        assert read_sdc(out.read_bytes()).header.qualities == {lv: q for lv in LEVELS}
        r = run(["decode", out, "-o", tmp_path / f"q{q}.png"])
        assert r.exit_code == 0, r.stderr
        sizes.append(out.stat().st_size)
        quality.append(psnr(pixels(tmp_path / f"q{q}.png"), pixels(images[1])))
    # more quality costs more bits and gives a closer image
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0], sizes
    assert quality[-1] > quality[0] + 1, quality


def _regions(tmp_path, w, h):
    """An sdc analysis JSON with one object per level, to skip the analyzer (fast, deterministic)."""
    from sdc.analysis.core import FORMAT_NAME, FORMAT_VERSION

    p = tmp_path / f"regions_{w}x{h}.json"
    if not p.exists():
        objs = [{"id": i, "label": f"obj{i}", "box": box, "score": 0.9, "level": lv}
                for i, (box, lv) in enumerate([([0, 0, w // 2, h // 2], "L1"), ([w // 2, 0, w, h // 2], "L2"),
                                               ([0, h // 2, w // 2, h], "L3")])]
        p.write_text(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "width": w, "height": h,
                                 "analyzer": "test-regions", "objects": objs}))
    return p


def test_quality_per_level(spy, images, tmp_path):
    out = tmp_path / "x.sdc"
    r = run(["encode", images[0], "-q", 3, "--quality", "L1=7,other=2", "-o", out,
             "--regions", _regions(tmp_path, 130, 70)])
    assert r.exit_code == 0, r.stderr
    want = {"L1": 7, "L2": 3, "L3": 3, "other": 2}
    assert spy[-1][1]["qualities"] == want
    assert read_sdc(out.read_bytes()).header.qualities == want


@pytest.mark.parametrize("spec, keep", [("L1", ("L1",)), ("other,L3", ("L3", "other")), ("all", LEVELS)])
def test_encode_levels_and_decode_levels(spy, images, tmp_path, spec, keep):
    out = tmp_path / "x.sdc"
    r = run(["encode", images[0], "--levels", spec, "-o", out, "--regions", _regions(tmp_path, 130, 70)])
    assert r.exit_code == 0, r.stderr
    assert spy[-1][1]["keep_levels"] == keep
    f = read_sdc(out.read_bytes())
    assert tuple(f.levels) == keep
    r = run(["decode", out, "--levels", spec, "-o", tmp_path / "x.png", "--composer", "none"])
    assert r.exit_code == 0, r.stderr
    assert spy[-1] == ("decode", {"levels": None if keep == LEVELS else keep, "composer": "none",
                                  "max_pixels": DEFAULT_MAX_PIXELS})
    assert pixels(tmp_path / "x.png").shape == (70, 130, 3)


def test_every_level_subset_decodes(spy, images, tmp_path):
    """Encode once; `sdc truncate` to each of the 15 non-empty level subsets; decode each."""
    src = tmp_path / "full.sdc"
    assert run(["encode", images[0], "-o", src, "--regions", _regions(tmp_path, 130, 70)]).exit_code == 0
    original = pixels(images[0])
    full = None
    for keep in SUBSETS:
        name = "_".join(keep)
        r = run(["truncate", src, "--levels", ",".join(keep), "-o", tmp_path / f"{name}.sdc"])
        assert r.exit_code == 0, r.stderr
        r = run(["decode", tmp_path / f"{name}.sdc", "-o", tmp_path / f"{name}.png"])
        assert r.exit_code == 0, r.stderr
        missing = [lv for lv in LEVELS if lv not in keep]
        assert (f"levels {', '.join(missing)} missing" in r.stderr) == bool(missing)
        img = pixels(tmp_path / f"{name}.png")
        assert img.shape == original.shape
        if keep == LEVELS:
            full = img
    assert psnr(full, original) > 18
    # dropping levels changes the image only where those levels are
    l1_only = pixels(tmp_path / "L1.png")
    assert psnr(l1_only, original) < psnr(full, original)


def test_many_inputs_to_directory_with_summary(spy, images, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    outdir = tmp_path / "out"
    r = run(["encode", *images, bad, "-o", f"{outdir}/", "--analyzer", "offline"])
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
        assert pixels(tmp_path / "dec" / (p.stem + ".png")).shape == pixels(p).shape


def test_stdin_stdout(spy, images, tmp_path):
    png = images[1].read_bytes()
    r = run(["encode", "-", "--regions", _regions(tmp_path, 64, 64)], input=png)
    assert r.exit_code == 0, r.stderr
    data = r.stdout_bytes
    assert read_sdc(data).header.width == 64
    r = run(["decode", "-"], input=data)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"\x89PNG")
    assert psnr(pixels(r.stdout_bytes), pixels(images[1])) > 18
    r = run(["decode", "-", "-o", "-"], input=data)
    assert r.stdout_bytes.startswith(b"\x89PNG")


def test_decode_output_format_from_extension(spy, images, tmp_path):
    run(["encode", images[1], "-o", tmp_path / "x.sdc", "--regions", _regions(tmp_path, 64, 64)])
    r = run(["decode", "x.sdc", "-o", "[/]x.bmp"], cwd=tmp_path)  # names are not rich markup
    assert r.exit_code == 0, r.stderr
    assert "[/]x.bmp" in r.stderr
    assert (tmp_path / "[/]x.bmp").read_bytes()[:2] == b"BM"


def test_head_c_prefixes(spy, images, tmp_path):
    """`head -c N x.sdc | sdc decode -`: complete levels decode, the rest is reported."""
    out = tmp_path / "x.sdc"
    run(["encode", images[1], "--no-meta", "-o", out, "--regions", _regions(tmp_path, 64, 64)])
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
            missing = [lv for lv in LEVELS if spans[lv][1] > n]
            if missing:
                assert f"levels {', '.join(missing)} missing" in r.stderr
            assert pixels(r.stdout_bytes).shape == (64, 64, 3)


@pytest.mark.parametrize("case", ["flip-L2", "flip-header", "not-sdc", "empty", "trailing", "png-as-sdc"])
def test_damaged_inputs_one_line_exit_2(images, tmp_path, case):
    from bitstream_helpers import sample_bytes

    data = bytearray(sample_bytes())
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


def test_codec_mismatch_is_bad_input(spy, images, tmp_path):
    run(["encode", images[1], "-o", tmp_path / "x.sdc", "--regions", _regions(tmp_path, 64, 64)])
    data = (tmp_path / "x.sdc").read_bytes()
    (tmp_path / "y.sdc").write_bytes(patch_header(data, codec_id=b"othr"))
    r = run(["decode", tmp_path / "y.sdc", "-o", tmp_path / "y.png"])
    assert r.exit_code == 2 and "made with codec" in one_error_line(r) and "y.sdc" in one_error_line(r)
    assert not (tmp_path / "y.png").exists()


def test_no_meta(spy, images, tmp_path):
    run(["encode", images[1], "--no-meta", "-o", tmp_path / "x.sdc", "--regions", _regions(tmp_path, 64, 64)])
    assert read_sdc((tmp_path / "x.sdc").read_bytes()).metadata is None
    assert spy[-1][1]["include_meta"] is False
    r = run(["inspect", tmp_path / "x.sdc"])
    assert r.exit_code == 0 and "--no-meta" in r.stdout


def test_task_and_analyzer_passed(spy, images, tmp_path):
    r = run(["encode", images[1], "--task", "find the red block", "--analyzer", "offline", "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 0, r.stderr
    assert spy[-1][1]["task"] == "find the red block" and spy[-1][1]["analyzer"] == "offline"
    assert read_sdc((tmp_path / "x.sdc").read_bytes()).metadata["task"] == "find the red block"
    r = run(["encode", images[1], "--analyzer", "nonsense", "-o", tmp_path / "y.sdc"])
    assert r.exit_code == 1 and "unknown analyzer" in one_error_line(r)
    assert not (tmp_path / "y.sdc").exists()


# ------------------------------------------------------------------ outputs
def test_never_overwrites_without_force(spy, images, tmp_path):
    out = tmp_path / "x.sdc"
    out.write_bytes(b"precious")
    r = run(["encode", images[1], "-o", out])
    assert r.exit_code == 1 and "--force" in one_error_line(r)
    assert out.read_bytes() == b"precious"
    assert spy == []  # checked before any work
    r = run(["encode", images[1], "-o", out, "--force", "--regions", _regions(tmp_path, 64, 64)])
    assert r.exit_code == 0 and read_sdc(out.read_bytes())
    r = run(["truncate", out, "--levels", "L1", "-o", out])
    assert r.exit_code == 1 and "own input" in one_error_line(r)


def test_ctrl_c_leaves_no_partial_output(spy, images, tmp_path, monkeypatch):
    real = real_pipeline.encode_image
    n = {"calls": 0}

    def interrupted(*a, **kw):
        n["calls"] += 1
        if n["calls"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(real_pipeline, "encode_image", interrupted)
    out = tmp_path / "out"
    r = run(["encode", *images, "-o", f"{out}/", "--analyzer", "offline"])
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert sorted(os.listdir(out)) == ["a.sdc"]  # complete first file, nothing else, no temp files
    assert read_sdc((out / "a.sdc").read_bytes())


def test_interrupt_while_writing_removes_temp(tmp_path, monkeypatch):
    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        cli_io.write_output(str(tmp_path / "x.sdc"), b"data", force=False)
    assert os.listdir(tmp_path) == []


def test_refuses_binary_to_terminal(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", TTY())
    with pytest.raises(sdc.errors.UsageError, match="terminal"):
        cli_io.plan_outputs(("a.png",), "-", ".sdc", False)
    assert cli_io.plan_outputs(("a.png",), "-", ".json", False, binary=False) == ["-"]


@pytest.mark.parametrize("args, what", [
    (["encode", "a.png", "b.png", "-o", "one.sdc"], "must be a directory"),
    (["encode", "-", "-"], "only once"),
    (["encode", "a.png", "b.png", "-o", "-"], "single input"),
    (["encode", "a.png", "-q", "0"], "at least 1"),
    (["encode", "a.png", "-q", "99"], "out of range"),
    (["encode", "a.png", "--quality", "L1:3"], "LEVEL=N"),
    (["encode", "a.png", "--quality", "L9=3"], "unknown level"),
    (["encode", "a.png", "--quality", "L1=x"], "not an integer"),
    (["encode", "a.png", "--levels", "L1,L7"], "unknown level"),
    (["decode", "x.sdc", "--levels", "nope"], "unknown level"),
    (["encode", "a.png", "--bogus"], "No such option"),
    (["encode"], "no inputs: name files, or list them with --from-list"),
    (["frobnicate"], "No such command"),
    (["truncate", "x.sdc", "--levels", "L1"], "-o OUT"),
    (["truncate", "x.sdc", "-o", "y.sdc"], "--levels"),
    (["decode", "x.sdc", "--max-pixels", "0"], "max-pixels"),
])
def test_usage_errors_exit_1(spy, images, tmp_path, args, what):
    r = run(args, cwd=images[0].parent)
    assert r.exit_code == 1, r.stderr
    assert what in one_error_line(r)
    assert spy == []


def test_missing_input_is_bad_input(tmp_path):
    r = run(["decode", tmp_path / "nope.sdc", "-o", tmp_path / "x.png"])
    assert r.exit_code == 2 and "no such file" in one_error_line(r)
    r = run(["inspect", tmp_path])
    assert r.exit_code == 2 and "is a directory" in one_error_line(r)


def test_decode_of_a_non_sdc_file_says_so(spy, images, tmp_path):
    """The input's magic bytes are read first: a PNG given to decode is reported as not an
    .sdc file, not as an output (a.png) that would overwrite it."""
    a = images[0]
    before = a.read_bytes()
    r = run(["decode", a])
    assert r.exit_code == 2, r.stderr
    line = one_error_line(r)
    assert "not an sdc file" in line and "PNG" in line and line.count(str(a)) == 1
    assert "own input" not in line and a.read_bytes() == before and spy == []
    # in a batch the other inputs still decode
    run(["encode", images[1], "-o", tmp_path / "b.sdc", "--regions", _regions(tmp_path, 64, 64)])
    r = run(["decode", a, tmp_path / "b.sdc", "-o", f"{tmp_path}/dec/"])
    assert r.exit_code == 2 and "not an sdc file" in one_error_line(r)
    assert os.listdir(tmp_path / "dec") == ["b.png"]
    r = run(["truncate", a, "--levels", "L1", "-o", a])
    assert r.exit_code == 2 and "not an sdc file" in one_error_line(r) and a.read_bytes() == before


def test_encode_of_an_sdc_file_says_so(spy, images, tmp_path):
    run(["encode", images[1], "-o", tmp_path / "b.sdc", "--regions", _regions(tmp_path, 64, 64)])
    spy.clear()
    r = run(["encode", tmp_path / "b.sdc"])
    assert r.exit_code == 2 and "already an .sdc file" in one_error_line(r) and spy == []


@pytest.mark.parametrize("args, what", [
    (["encode", "a.png", "-q", "99"], "out of range"),
    (["encode", "a.png", "--quality", "other=99"], "out of range"),
    (["encode", "a.png", "-e", "9"], "effort must be"),
    (["encode", "a.png", "--analyzer", "nonsense"], "unknown analyzer"),
    (["encode", "a.png", "--regions", "missing.json"], "no such file"),
    (["decode", "a.sdc", "--composer", "paint"], "unknown composer"),
    (["analyze", "a.png", "-o", "a.sdc", "--analyzer", "nonsense"], "unknown analyzer"),
])
def test_arguments_are_checked_before_outputs(spy, images, tmp_path, args, what):
    """Every argument is checked before any output is planned: a bad one is reported even
    when the output already exists (without --force)."""
    (tmp_path / "a.sdc").write_bytes(b"precious")
    (tmp_path / "a.png").write_bytes(b"precious")
    r = run(args, cwd=tmp_path)
    assert r.exit_code in (1, 2), r.stderr
    assert what in one_error_line(r) and "exists" not in one_error_line(r)
    assert (tmp_path / "a.sdc").read_bytes() == b"precious" and spy == []


def test_analyzer_help_lists_the_analyzers():
    from sdc.analysis import ANALYZERS

    assert tuple(ANALYZERS) == cli_options.ANALYZERS
    for cmd in ("encode", "analyze"):
        r = run([cmd, "--help"])
        assert r.exit_code == 0 and ", ".join(ANALYZERS) in " ".join(r.stdout.split())


def test_every_command_documents_an_example():
    for name, command in cli.commands.items():
        assert "Examples:" in command.help and f"sdc {name} " in command.help, name


def test_internal_error_one_line_and_debug_traceback(images, tmp_path, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(real_pipeline, "encode_image", broken)
    r = run(["encode", images[0], "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 1
    assert "kaboom" in one_error_line(r) and "--debug" in one_error_line(r)
    r = run(["--debug", "encode", images[0], "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 1 and "Traceback" in r.stderr and "kaboom" in r.stderr


def test_huge_image_header_rejected(spy, images, tmp_path):
    from bitstream_helpers import sample_bytes

    (tmp_path / "huge.sdc").write_bytes(patch_header(sample_bytes(), width=100_000, height=100_000))
    for cmd in (["decode", tmp_path / "huge.sdc", "-o", tmp_path / "h.png"], ["inspect", tmp_path / "huge.sdc"]):
        r = run(cmd)
        assert r.exit_code == 2 and "--max-pixels" in one_error_line(r)
    assert spy == []  # the decoder was never called
    r = run(["encode", images[0], "--max-pixels", 100, "-o", tmp_path / "y.sdc"])
    assert r.exit_code == 2 and "over the limit" in one_error_line(r)
    assert cli_options.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS


# ------------------------------------------------------------------ inspect / truncate
def test_inspect_tables_and_json(tmp_path):
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


def test_inspect_shows_the_display_size(tmp_path):
    from dataclasses import replace

    from bitstream_helpers import sample_file
    from sdc.bitstream import write_sdc

    p = tmp_path / "d.sdc"
    p.write_bytes(write_sdc(replace(sample_file(), display_size=(300, 140))))
    r = run(["inspect", p])
    assert r.exit_code == 0 and "300x140 (coded at 150x70)" in r.stdout and "DISP" in r.stdout
    assert json.loads(run(["inspect", p, "--json"]).stdout)["display_size"] == [300, 140]


def test_inspect_escapes_control_characters(tmp_path):
    from bitstream_helpers import sample_bytes

    evil = {"analyzer": "x\x1b[2J", "objects": [{"label": "\x1b]0;pwned\x07cat", "level": "L1",
                                                  "reason": "line\nbreak"}]}
    p = tmp_path / "e.sdc"
    p.write_bytes(sample_bytes(meta=evil))
    r = run(["inspect", p])
    assert r.exit_code == 0
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\\x1b]0;pwned\\x07cat" in r.stdout and "line\\nbreak" in r.stdout


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
def test_regions_sdc_analysis_and_coco(spy, images, tmp_path):
    from sdc.analysis import Analysis

    a = images[0]  # 130 x 70
    from sdc.analysis.core import FORMAT_NAME, FORMAT_VERSION

    analysis = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "width": 130, "height": 70,
                "analyzer": "mine",
                "objects": [{"id": 0, "label": "cat", "box": [0, 0, 40, 30], "score": 0.9, "level": "L1"}]}
    (tmp_path / "r.json").write_text(json.dumps(analysis))
    r = run(["encode", a, "--regions", tmp_path / "r.json", "-o", tmp_path / "x.sdc"])
    assert r.exit_code == 0, r.stderr
    used = spy[-1][1]["analysis"]
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
    encs = [c[1]["analysis"] for c in spy if c[0] == "encode"][-2:]
    assert [[o.label for o in e.objects] for e in encs] == [["dog"], ["dog"]]
    assert encs[0].objects[0].box[0] == pytest.approx(60) and encs[1].objects[0].box[0] == pytest.approx(0)
    (tmp_path / "junk.json").write_text("{not json")
    r = run(["encode", a, "--regions", tmp_path / "junk.json", "-o", tmp_path / "j.sdc"])
    assert r.exit_code == 2 and "not JSON" in one_error_line(r)


def test_analyze_then_encode_with_regions(spy, tmp_path):
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
    used = spy[-1][1]["analysis"]
    assert [o.label for o in used.objects] == [o["label"] for o in doc["objects"]]


# ------------------------------------------------------------------ Pillow plugin
def test_pillow_plugin_opens_sdc(spy, images, tmp_path):
    run(["encode", images[0], "-o", tmp_path / "x.sdc", "--regions", _regions(tmp_path, 130, 70)])
    run(["decode", tmp_path / "x.sdc", "-o", tmp_path / "x.png"])
    with Image.open(tmp_path / "x.sdc") as im:
        assert im.format == "SDC" and im.size == (130, 70) and im.mode == "RGB"
        assert im.info["sdc"]["levels"] == LEVELS
        assert im.info["sdc"]["metadata"]["analyzer"]
        assert np.array_equal(np.asarray(im), pixels(tmp_path / "x.png"))  # same decoder as the CLI
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


# ------------------------------------------------------------------ layout
def test_cli_and_api_modules_stay_small():
    """One module per command, each short enough to read: at most 400 lines a module and
    80 a function."""
    import ast
    from pathlib import Path

    root = Path(sdc.__file__).parent
    for path in sorted([*(root / "cli").glob("*.py"), *(root / "api").glob("*.py")]):
        text = path.read_text()
        assert text.count("\n") <= 400, path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < 80, (path, node.name)
