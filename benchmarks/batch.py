"""Images per second of a batch `sdc encode`: --jobs 1, --jobs 2 and --ray local, as whole CLI processes.

    python benchmarks/batch.py [--images 32] [--runs 3]

What a user pays for a folder of photos: `sdc encode IMG... -o DIR/ --quiet`
at the default quality and analyzer on the first N coco128 train images
(640 px JPEGs), each mode as one whole process, start-up included (Ray's too:
`--ray local` starts a Ray instance and one worker per core). One warm-up
round (every mode on 4 images: page cache, .pyc files), then `runs` rounds
with the modes taking turns; per mode the median wall time. Reported:
images per second, jobs2/jobs1 and ray/jobs2.

Also measured, to estimate scaling (below): the seconds per image of
analysis, codec and container (in process, on one thread, after a warm-up), the
bytes read and written per image, each mode's seconds for a single image
(its fixed cost), and how many items per second the driver of a Ray batch
can hand out and take back at most (the real dispatch loop, workers that do
nothing).

Paper estimate for M machines of C cores, from results/batch.json (2-core
AMD EPYC, default analyzer "offline", on CPU):

* Measured here on 128 images: --jobs 1 4.3 images/s, --jobs 2 5.2 (1.22x:
  --jobs 1 already runs ONNX Runtime and OpenCV on both cores, 1.4 cores
  busy on average), --ray local 4.5 (0.86x --jobs 2). Ray's deficit is its
  start-up, not its throughput: one image takes 7.8 s with --ray local
  against 1.3 s with --jobs 2; joining a running cluster costs ~1-2 s.
* Per image, one thread: analysis 0.12 s, codec 0.21 s, container ~0 s: a
  core codes ~3 images/s, and M*C cores ~3*M*C images/s while nothing else
  saturates (16 machines of 32 cores: ~1,500 images/s).
* Analysis on GPU actors would take its 0.12 s off the CPUs (`sdc analyze`
  with a model analyzer gets GPU workers; `sdc encode` still analyses inside
  its CPU workers): the codec alone runs ~4.8 images/s per core (1.6x), and a
  detector on a GPU typically runs hundreds of images/s, so one GPU would
  keep a few dozen codec cores fed.
* Storage: per image ~200 KB read (a 640x480 JPEG) and ~27 KB written (the
  .sdc): ~230 KB, so 1,500 images/s is ~350 MB/s on the shared file system,
  about what one NFS server gives; one 10 Gb/s link carries ~4,500 images/s.
* The driver: one process submits, waits for and reports every item and
  appends its manifest line. Its ceiling ("driver_items_per_s", workers that
  do nothing) is ~1,500 items/s here, with those workers on the same two
  cores; a head node with a free core does somewhat better.
* So throughput grows linearly up to ~500 cores (~15 machines of 32), where
  the driver and one NFS server both saturate at ~1,500 images/s. Beyond
  that: several drivers on disjoint input lists (--from-list), each with its
  share of the cluster, and storage spread over several servers or an object
  store. Fixed costs (Ray start-up, ~1 s of model loading per worker) are
  paid once per batch and vanish on a large one.

Writes results/batch.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, RESULTS, SHARED, git_commit, machine_info, table, write_json  # noqa: E402

OUT = RESULTS / "batch.json"
COCO = SHARED / "data" / "coco128" / "train2017"
MODES = {"jobs1": ["-j", "1"], "jobs2": ["-j", "2"], "ray": ["--ray", "local"]}
WARM_UP_IMAGES = 4


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CODE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def encode(images: list[Path], mode: str, out: Path) -> float:
    """Wall seconds of one `sdc encode` process over `images` in `mode`, into a fresh `out`."""
    cmd = [sys.executable, "-m", "sdc", "encode", *map(str, images), "-o", f"{out}/", "--quiet", *MODES[mode]]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{mode} failed: {done.stderr[-400:]}")
    return wall


def per_image_costs(images: list[Path]) -> dict:
    """Mean seconds per image of analysis, codec and container on one thread, and bytes in and out."""
    os.environ["SDC_THREADS"] = "1"
    import cv2

    from sdc import api

    cv2.setNumThreads(1)
    settings = api.encode_settings()
    api.encode_result(str(images[0]), settings)  # warm-up: models loaded
    parts: dict[str, list[float]] = {"analysis": [], "codec": [], "container": []}
    written = []
    for path in images:
        result = api.encode_result(str(path), settings)
        for k in parts:
            parts[k].append(result.timings[k])
        written.append(len(result.data))
    return {**{f"{k}_s": round(statistics.mean(v), 4) for k, v in parts.items()},
            "input_bytes": round(statistics.mean(p.stat().st_size for p in images)),
            "output_bytes": round(statistics.mean(written))}


class _Idle:
    """A worker that does nothing: what is left is the driver's own cost per item."""

    def run(self, task):
        return {"row": {}, "warnings": [], "seconds": 0.0}, None


def driver_ceiling(images: list[Path], items: int = 4000) -> float:
    """Items per second the Ray dispatch loop hands out and reports with workers that do nothing."""
    import ray

    from sdc import api
    from sdc.batch import Task
    from sdc.batch.pool import available_cores
    from sdc.batch.ray_runner import _dispatch

    options = {"settings": api.encode_settings(), "regions": None, "force": False, "max_pixels": None}
    tasks = (Task("encode", str(images[i % len(images)]), f"/nonexistent/{i}.sdc", options) for i in range(items))
    ray.init(address="local", num_cpus=available_cores(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    try:
        workers = [ray.remote(_Idle).options(num_cpus=1).remote() for _ in range(available_cores())]
        ray.get([w.run.remote(None) for w in workers])  # started
        t0 = time.perf_counter()
        n = sum(1 for _ in _dispatch(ray, workers, tasks))
        return n / (time.perf_counter() - t0)
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    images = sorted(COCO.glob("*.jpg"))[:args.images]
    if len(images) < args.images:
        raise SystemExit(f"only {len(images)} images in {COCO} (set SDC_SHARED)")
    machine = machine_info()
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    one_image: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for mode in MODES:
            encode(images[:WARM_UP_IMAGES], mode, work / f"warm-{mode}")
        for r in range(args.runs):
            for mode in MODES:
                walls[mode].append(encode(images, mode, work / f"{mode}-{r}"))
        for mode in MODES:
            one_image[mode] = encode(images[:1], mode, work / f"one-{mode}")
        same = all((work / "jobs1-0" / p.with_suffix(".sdc").name).read_bytes()
                   == (work / f"{mode}-0" / p.with_suffix(".sdc").name).read_bytes()
                   for mode in MODES for p in images)
    loadavg_after_batches = list(os.getloadavg())
    rate = {m: len(images) / statistics.median(w) for m, w in walls.items()}
    result = {
        "git": git_commit(), "machine": machine, "loadavg_after_batches": loadavg_after_batches,
        "images": len(images), "source": "coco128 train2017, first N by name", "runs": args.runs,
        "command": "sdc encode IMG... -o DIR/ --quiet (default quality and analyzer) + the mode's option",
        "modes": {m: {"option": " ".join(MODES[m]), "wall_s": [round(w, 3) for w in walls[m]],
                      "images_per_s": round(rate[m], 3), "one_image_s": round(one_image[m], 3)} for m in MODES},
        "ratios": {"jobs2/jobs1": round(rate["jobs2"] / rate["jobs1"], 3),
                   "ray/jobs2": round(rate["ray"] / rate["jobs2"], 3)},
        "same_bytes_in_every_mode": same,
        "per_image": per_image_costs(images),
        "driver_items_per_s": round(driver_ceiling(images)),
        "loadavg_at_end": list(os.getloadavg()),
    }
    write_json(args.out, result)
    print(report(result))
    print(f"wrote {args.out}")


def report(result: dict) -> str:
    rows = [[m, s["option"], f"{statistics.median(s['wall_s']):.2f}", f"{s['images_per_s']:.2f}",
             f"{s['one_image_s']:.2f}"] for m, s in result["modes"].items()]
    p = result["per_image"]
    load = result["machine"]["loadavg_at_start"][0]
    return "\n".join([
        table(rows, ["mode", "option", f"wall s ({result['images']} images)", "images/s", "one image s"]),
        f"jobs2/jobs1 {result['ratios']['jobs2/jobs1']:.2f}x, ray/jobs2 {result['ratios']['ray/jobs2']:.2f}x; "
        f"same bytes in every mode: {result['same_bytes_in_every_mode']}",
        f"per image, one thread: analysis {p['analysis_s']:.3f} s, codec {p['codec_s']:.3f} s, container "
        f"{p['container_s']:.3f} s; {p['input_bytes'] / 1e3:.0f} KB read, {p['output_bytes'] / 1e3:.1f} KB written",
        f"Ray driver ceiling: {result['driver_items_per_s']} items/s; load average at start {load:.2f}, "
        f"after the batches {result['loadavg_after_batches'][0]:.2f}"])


if __name__ == "__main__":
    main()
