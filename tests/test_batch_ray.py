"""Batches on Ray (--ray): the same files as --jobs 1, the manifest, resuming, a worker killed mid-run,
and an encode's model analysis on the GPU workers.

One real Ray cluster (2 CPUs and a GPU, declared: Ray counts what it is told,
and torch, seeing none, runs the models on the CPU) serves the module: this
process starts it and the CLI processes join it by its address (starting Ray
takes seconds). One test starts its own instance, without a GPU, through
`--ray local`.
"""
from __future__ import annotations

import doctest
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from conftest import COCO, coco_photos, sdc_cli


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray cluster of 2 CPUs and 1 GPU (declared) on this machine, stopped after the module."""
    context = ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR",
                       log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    return coco_photos(tmp_path_factory.mktemp("photos"), 5)


def manifest_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "sdc-batch-manifest.jsonl").read_text().splitlines()]


def table_files(stderr: str) -> list[str]:
    return [line.split("│")[1].strip() for line in stderr.splitlines() if line.startswith("│")]


def test_ray_local_writes_what_one_job_writes_in_input_order_with_a_manifest(photos, tmp_path):
    broken = photos[0].parent / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:300])
    names = [p.name for p in reversed(photos)]
    names.insert(2, broken.name)  # a bad input among the others: an outcome, and the batch goes on
    one = sdc_cli("encode", *names, "-o", f"{tmp_path}/one/", "-j", "1", cwd=photos[0].parent)
    on_ray = sdc_cli("encode", *names, "-o", f"{tmp_path}/ray/", "--ray", "local", cwd=photos[0].parent)
    assert one.returncode == 2 and on_ray.returncode == 2, on_ray.stderr
    errors = [line for line in on_ray.stderr.splitlines() if line.startswith("sdc: error:")]
    assert errors == [line for line in one.stderr.splitlines() if line.startswith("sdc: error:")]
    assert len(errors) == 1 and broken.name in errors[0]
    for photo in photos:
        name = photo.with_suffix(".sdc").name
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    good = [n for n in names if n != broken.name]
    assert table_files(on_ray.stderr)[:len(good)] == good  # the table, in input order
    lines = manifest_lines(tmp_path / "ray")
    assert [(line["src"], line["status"]) for line in lines] == [(n, "failed" if n == broken.name else "done")
                                                                   for n in names]
    for line in lines:
        if line["status"] == "done":
            assert line["dst"] == f"{tmp_path}/ray/{Path(line['src']).stem}.sdc"
            assert line["error"] is None and line["seconds"] > 0
        else:
            assert broken.name in line["error"] and "\n" not in line["error"]
    assert not (tmp_path / "one" / "sdc-batch-manifest.jsonl").exists()  # the local pool: only with --manifest


def test_skip_existing_on_ray_redoes_only_what_is_missing(cluster, photos, tmp_path):
    out = tmp_path / "out"
    first = sdc_cli("encode", *map(str, photos), "-o", f"{out}/", "--ray", cluster, "--quiet")
    assert first.returncode == 0, first.stderr
    assert len(manifest_lines(out)) == len(photos)
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*.sdc")}
    lost = sorted(kept)[1::3]  # a batch cut short: two outputs missing
    for p in lost:
        p.unlink()
        del kept[p]
    again = sdc_cli("encode", *map(str, photos), "-o", f"{out}/", "--ray", cluster, "--skip-existing", "--quiet")
    assert again.returncode == 0, again.stderr
    assert f"skipped {len(kept)} input(s)" in again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing written twice
    redone = manifest_lines(out)[len(photos):]  # the manifest is appended to
    assert [line["dst"] for line in redone] == [str(p) for p in lost]
    assert {line["status"] for line in redone} == {"done"}


def sdc_workers_of_this_cluster() -> dict[int, str]:
    """{pid: process title} of the SdcWorker actors whose raylet this process started."""
    def parent(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode()
            if title.startswith("ray::SdcWorker") and parent(parent(int(entry))) == os.getpid():
                found[int(entry)] = title
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def test_a_worker_killed_mid_run_loses_no_image_and_writes_none_twice(cluster, tmp_path):
    inputs = sorted((COCO / "train2017").glob("*.jpg"))[:12]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sdc", "encode", *map(str, inputs), "-o", f"{out}/",
                             "--ray", cluster, "--quiet"], stderr=subprocess.PIPE, text=True)
    killed, deadline = None, time.time() + 120
    while killed is None and time.time() < deadline and proc.poll() is None:
        if len(list(out.glob("*.sdc"))) >= 2:  # the workers have their models and are coding
            running = [pid for pid, title in sdc_workers_of_this_cluster().items() if title.endswith(".run")]
            if running:
                os.kill(running[0], signal.SIGKILL)
                killed = running[0]
                done_when_killed = len(list(out.glob("*.sdc")))
        time.sleep(0.02)
    _, err = proc.communicate(timeout=180)
    assert killed is not None and done_when_killed < len(inputs), "no worker was killed while coding"
    assert proc.returncode == 0, err
    deadline = time.time() + 30
    while sdc_workers_of_this_cluster() and time.time() < deadline:  # the batch's workers end with it
        time.sleep(0.2)
    assert not sdc_workers_of_this_cluster()
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".sdc")
    assert written == sorted(p.with_suffix(".sdc").name for p in inputs)  # every image
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    for name in written:
        assert sdc_cli("inspect", str(out / name)).returncode == 0, name  # each one complete
    lines = manifest_lines(out)
    assert sorted(line["src"] for line in lines) == sorted(map(str, inputs))  # one line per input
    assert {line["status"] for line in lines} == {"done"}


def test_what_ray_cannot_take_is_refused_on_one_line_before_any_work(photos, tmp_path):
    both = sdc_cli("encode", str(photos[0]), "-o", f"{tmp_path}/x/", "--ray", "local", "-j", "2")
    assert both.returncode == 1 and both.stderr.count("\n") == 1 and "exclude each other" in both.stderr
    stdin = sdc_cli("decode", "-", "-o", f"{tmp_path}/x.png", "--ray", "local")
    assert stdin.returncode == 1 and "name files instead of '-'" in stdin.stderr
    nobody = sdc_cli("analyze", str(photos[0]), "-o", f"{tmp_path}/x/", "--ray", "127.0.0.1:1")
    assert nobody.returncode == 1 and nobody.stderr.count("\n") == 1 and "cannot connect" in nobody.stderr
    # Ray missing: a package that fails to import stands in for it
    (tmp_path / "no_ray" / "ray").mkdir(parents=True)
    (tmp_path / "no_ray" / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "no_ray"), os.environ.get("PYTHONPATH", "")]))
    missing = sdc_cli("encode", str(photos[0]), "-o", f"{tmp_path}/x/", "--ray", "local", env=env)
    assert missing.returncode == 1 and missing.stderr == 'sdc: error: --ray needs Ray: pip install "sdc[dist]"\n'
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.png").exists()


def test_a_retry_keeps_the_output_its_lost_attempt_wrote_and_refuses_any_other(tmp_path):
    from sdc import api
    from sdc.batch import Task, run_task
    from sdc.cli.io import remove_temporaries
    from sdc.errors import UsageError

    from conftest import SAMPLE

    options = {"settings": api.encode_settings(quality=2), "force": False, "max_pixels": None,
               "regions": {"width": 512, "height": 512, "objects": []}}  # no analyzer: fast
    dst = tmp_path / "astronaut.sdc"
    task = Task("encode", str(SAMPLE), str(dst), options)
    first = run_task(task)  # the attempt whose worker is lost after writing its output
    stale = tmp_path / f".{dst.name}.12345.678.tmp"  # what a worker killed while writing leaves
    stale.write_bytes(b"partial")
    remove_temporaries(str(dst))
    assert not stale.exists()
    written = dst.stat()
    again = run_task(task, retry=True)
    untimed = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    assert untimed(again["row"]) == untimed(first["row"])  # reported with this run's row
    assert (dst.stat().st_ino, dst.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # not written twice
    with pytest.raises(UsageError, match="exists"):
        run_task(task)  # not a retry: an existing output is refused as always
    dst.write_bytes(dst.read_bytes()[:-1])  # someone else's file
    with pytest.raises(UsageError, match="exists"):
        run_task(task, retry=True)


@pytest.fixture(scope="module")
def tiny_grounding_dino(tmp_path_factory, one_thread) -> Path:
    import analysis_tiny_models as tiny

    return tiny.grounding_dino(tmp_path_factory.mktemp("tiny") / "gdino")


def planned_encode(photos: list[Path], out: Path, options: dict, skip_existing: bool = False):
    """The tasks `sdc encode PHOTOS -o OUT/ --ray ...` runs (with --skip-existing: none whose output
    exists), planned by the CLI's own functions, and how many were skipped."""
    from sdc.cli.io import plan_outputs, plan_tasks

    inputs = [str(p) for p in photos]
    outs = plan_outputs(inputs, f"{out}/", ".sdc", False, skip_existing=skip_existing)
    planned, skipped = plan_tasks("encode", inputs, outs, {}, options, ray="cluster")
    return [task for _, task in planned], skipped


def test_a_model_analyzer_runs_on_the_gpu_workers_and_the_files_are_those_of_one_job(
        cluster, photos, tiny_grounding_dino, tmp_path):
    from sdc import api
    from sdc.batch import run_tasks, run_tasks_on_ray

    # A config in the settings, not in the environment: the workers do not share the driver's.
    config = {"grounding_model": str(tiny_grounding_dino), "box_threshold": 0.0, "text_threshold": 0.0,
              "masks": "box", "ranker": "heuristic", "max_objects": 5}
    settings = api.encode_settings(quality=3, task="count the people", analyzer="grounding-dino",
                                   analysis_config=config)
    options = {"settings": settings, "regions": None, "force": False, "max_pixels": None}
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:300])
    inputs = [*photos[:2], broken, *photos[2:]]  # a bad input among the others: an outcome in its place
    one = list(run_tasks(planned_encode(inputs, tmp_path / "one", options)[0], 1))  # analysis in the codec call
    out = tmp_path / "ray"
    on_ray = list(run_tasks_on_ray(planned_encode(inputs, out, options)[0], cluster, manifest=out / "manifest"))
    assert [task.src for task, _, _ in on_ray] == [str(p) for p in inputs]  # input order
    assert [str(error) if error else None for _, _, error in on_ray] == \
        [str(error) if error else None for _, _, error in one]
    assert [error is None for _, _, error in on_ray] == [p != broken for p in inputs]
    done = [(a, b) for (_, a, _), (_, b, _) in zip(one, on_ray) if b is not None]
    # Analysed in the pool of GPU workers (the one GPU: one analyst), apart from the codec workers
    # (which ask for no GPU), on the CPU since torch sees no GPU here.
    analysts = {json.dumps(b["analysed_by"], sort_keys=True) for _, b in done}
    assert len(analysts) == 1
    where = json.loads(analysts.pop())
    assert where["gpus"] == ["0"] and where["device"] == "cpu" and where["pid"] != os.getpid()
    untimed = lambda row: {k: v for k, v in row.items() if k not in ("seconds", "output")}  # noqa: E731
    for a, b in done:
        assert untimed(b["row"]) == untimed(a["row"]) and b["warnings"] == a["warnings"]
        assert b["row"]["analyzer"] == "grounding-dino(gdino)/box/heuristic"
    assert sum(b["row"]["objects"] for _, b in done) > 0  # the regions come from the model
    for photo in photos:
        name = photo.with_suffix(".sdc").name
        assert (out / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    lines = [json.loads(line) for line in (out / "manifest").read_text().splitlines()]
    assert [(line["src"], line["status"]) for line in lines] == \
        [(str(p), "failed" if p == broken else "done") for p in inputs]

    lost = out / photos[1].with_suffix(".sdc").name  # a batch cut short: one output missing
    lost.unlink()
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.sdc")}
    tasks, skipped = planned_encode(photos, out, options, skip_existing=True)
    assert skipped == len(kept) and [task.dst for task in tasks] == [str(lost)]
    again = list(run_tasks_on_ray(tasks, cluster, manifest=out / "manifest"))
    assert [(task.dst, error) for task, _, error in again] == [(str(lost), None)]
    assert lost.read_bytes() == (tmp_path / "one" / lost.name).read_bytes()
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == k for p, k in kept.items())  # nothing written twice
    assert planned_encode(photos, out, options, skip_existing=True) == ([], len(photos))  # nothing left to redo
    assert len((out / "manifest").read_text().splitlines()) == len(inputs) + 1


def test_the_ray_runner_examples_run():
    from sdc.batch import ray_runner

    out = io.StringIO()
    for test in doctest.DocTestFinder().find(ray_runner, globs={}):
        assert doctest.DocTestRunner().run(test, out=out.write).failed == 0, out.getvalue()
