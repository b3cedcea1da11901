"""Batches of many inputs: --jobs, --skip-existing, --from-list, order, errors and Ctrl-C."""
from __future__ import annotations

import doctest
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdc import batch

from conftest import COCO, REPO, coco_photos, sdc_cli


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return coco_photos(tmp_path_factory.mktemp("photos"), 6)


def test_two_jobs_write_the_same_files_and_report_them_in_input_order(photos, tmp_path):
    names = [p.name for p in reversed(photos)]  # not sorted: the order is the command line's
    one = sdc_cli("encode", *names, "-o", f"{tmp_path}/one/", "-q", "3", "-j", "1", cwd=photos[0].parent)
    two = sdc_cli("encode", *names, "-o", f"{tmp_path}/two/", "-q", "3", "-j", "2", cwd=photos[0].parent)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    for photo in photos:
        name = photo.with_suffix(".sdc").name
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    listed = [line.split("│")[1].strip() for line in two.stderr.splitlines() if line.startswith("│")]
    assert listed[:len(names)] == names  # the table, in input order
    decoded = sdc_cli("decode", *sorted(map(str, (tmp_path / "two").glob("*.sdc"))), "-o", f"{tmp_path}/png/",
                      "-j", "2", "--quiet")
    assert decoded.returncode == 0, decoded.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(p.with_suffix(".png").name for p in photos)


def test_skip_existing_redoes_only_what_is_missing(photos, tmp_path):
    out = tmp_path / "out"
    assert sdc_cli("encode", *map(str, photos), "-o", f"{out}/", "-q", "2", "--quiet").returncode == 0
    kept = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    for lost in sorted(kept)[1::3]:  # a batch cut short: two outputs missing
        lost.unlink()
        del kept[lost]
    refused = sdc_cli("encode", *map(str, photos), "-o", f"{out}/", "-q", "2")
    assert refused.returncode == 1 and "--skip-existing" in refused.stderr
    again = sdc_cli("encode", *map(str, photos), "-o", f"{out}/", "-q", "2", "-j", "2", "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert f"skipped {len(kept)} input(s)" in again.stderr
    assert len(list(out.iterdir())) == len(photos)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing written twice


def test_inputs_from_a_list_file_or_stdin(photos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the photos\n{photos[0]}\n\n  {photos[1]}  \n")
    done = sdc_cli("analyze", "--from-list", str(listing), "-o", f"{tmp_path}/an/")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "an").iterdir()) == [photos[0].stem + ".json", photos[1].stem + ".json"]
    done = sdc_cli("encode", "--from-list", "-", str(photos[2]), "-o", f"{tmp_path}/enc/", "-q", "1", "--quiet",
                   stdin=f"{photos[3]}\n")
    assert done.returncode == 0, done.stderr
    assert sorted(p.stem for p in (tmp_path / "enc").iterdir()) == sorted([photos[2].stem, photos[3].stem])


def test_a_bad_input_is_reported_in_its_place_and_the_batch_goes_on(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:300])
    order = [photos[0], broken, photos[1]]
    done = sdc_cli("encode", *map(str, order), "-o", f"{tmp_path}/out/", "-q", "2", "-j", "2")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("sdc: error:")]
    assert len(errors) == 1 and str(broken) in errors[0]
    assert sorted(p.stem for p in (tmp_path / "out").iterdir()) == sorted([photos[0].stem, photos[1].stem])


def test_a_manifest_records_every_input_in_order_when_asked(photos, tmp_path):
    import json

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:300])
    order = [photos[0], broken, photos[1]]
    done = sdc_cli("encode", *map(str, order), "-o", f"{tmp_path}/out/", "-q", "1", "-j", "2", "--quiet",
                   "--manifest", f"{tmp_path}/done.jsonl")
    assert done.returncode == 2
    lines = [json.loads(line) for line in (tmp_path / "done.jsonl").read_text().splitlines()]
    assert [(line["src"], line["status"]) for line in lines] == [(str(photos[0]), "done"), (str(broken), "failed"),
                                                               (str(photos[1]), "done")]
    assert lines[1]["error"].startswith(str(broken)) and lines[0]["error"] is None
    assert all(line["seconds"] > 0 for line in lines)
    assert not (tmp_path / "out" / "sdc-batch-manifest.jsonl").exists()  # none by default without --ray
    clash = sdc_cli("encode", str(photos[0]), "-o", f"{tmp_path}/x.sdc", "--manifest", f"{tmp_path}/x.sdc")
    assert clash.returncode == 1 and "also an input or an output" in clash.stderr


def test_what_jobs_cannot_take_is_refused_before_any_work(photos, tmp_path):
    done = sdc_cli("encode", "-", "-o", f"{tmp_path}/x.sdc", "-j", "2", stdin="")
    assert done.returncode == 1 and "name files instead of '-'" in done.stderr
    done = sdc_cli("decode", "-j", "2")
    assert done.returncode == 1 and "no inputs" in done.stderr
    done = sdc_cli("encode", str(photos[0]), "-j", "0")
    assert done.returncode == 1 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_batch_leaves_only_complete_outputs_and_no_workers(tmp_path, stop):
    """Ctrl-C in a terminal signals the whole process group; SIGTERM (kill) only the batch's
    process, which then stops its workers itself."""
    inputs = sorted((COCO / "train2017").glob("*.jpg"))[:60]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sdc", "encode", *map(str, inputs), "-o", f"{out}/", "-q", "2",
                             "-j", "2", "--quiet"], start_new_session=True, stderr=subprocess.PIPE, text=True,
                            # as in a terminal: a shell that runs the tests in the background (`&`)
                            # hands its children SIGINT ignored, and Python then keeps it ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.sdc"))) < 3:  # the workers are running
        time.sleep(0.2)
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    written = list(out.iterdir())
    assert 3 <= len(written) < len(inputs)
    assert all(p.suffix == ".sdc" and not p.name.startswith(".") for p in written)  # no temporary files
    for p in written:
        assert sdc_cli("inspect", str(p)).returncode == 0, p  # each one complete
    deadline = time.time() + 10
    while time.time() < deadline:  # the pool's helper processes may take a moment to exit
        left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"workers still running: {left}"


def test_the_batch_api_example_runs(monkeypatch):
    monkeypatch.chdir(REPO)
    (test,) = [t for t in doctest.DocTestFinder().find(batch, globs={}) if t.examples]
    out = io.StringIO()
    assert doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=out.write).failed == 0, out.getvalue()
