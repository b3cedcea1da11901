"""Whole-process seconds of `sdc encode` and `sdc decode` against `cjxl -e 7`, and the runtime's install size.

    python benchmarks/startup.py [--runs 7] [--venv DIR]

What a shell pipeline pays per image: each command runs as its own process on
one 768x512 image (wiki_006 of the val set), the way a script calls it. The
commands take turns (sdc decode, cjxl, sdc encode, cjxl, ...) after one
warm-up round, so that all see the same background load; the ratio to cjxl
is taken pair by pair, then the median. Wall seconds, the children's CPU
seconds and peak RSS (getrusage) are recorded.

    sdc decode    sdc decode IMG.sdc -o OUT.png --quiet (all levels, PNG out)
    sdc encode    sdc encode IMG.png -o OUT.sdc --quiet (default analyzer and quality)
    cjxl -e 7     cjxl -e 7 -d 1 IMG.png OUT.jxl --quiet (libjxl's default effort)
    djxl          djxl OUT.jxl OUT.png --quiet (for reference)

Also checked: which heavy modules a decode and an encode import (torch must
not be among them), and the install size: the bytes of every distribution in
a virtual environment where `pip install .` (the default dependencies) was
run, with the shipped weights the runtime reads. --venv names such an
environment, and sdc's commands then run on its interpreter and packages
(the code is this checkout's, or $SDC_CODE); without it, they run on this
interpreter and an environment is made in a temporary directory to measure
the install (PyPI is read).

Targets (issue 39): decode <= 5x cjxl -e 7, encode <= 8x, no torch, install <= 600 MB.

Writes results/startup.json.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CODE, RESULTS, git_commit, table, val_paths, write_json  # noqa: E402

OUT = RESULTS / "startup.json"
IMAGE = "wiki_006.png"  # 768x512
HEAVY = ("torch", "torchvision", "compressai", "transformers", "diffusers")
# Runs sdc's CLI in-process and prints which HEAVY modules it imported.
PROBE = ("import sys\nfrom sdc.cli.main import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         f"print('IMPORTED', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")


def run_once(cmd: list[str]) -> dict:
    """Wall and CPU seconds and peak RSS of one run of `cmd` (output discarded), from the
    kernel's accounting of that process (wait4)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace')[-300:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


PYCACHE = Path(tempfile.gettempdir()) / "sdc-startup-pycache"


def child_env() -> dict:
    env = dict(os.environ)
    # As on a user's machine, compiled modules are cached (here outside the checkout), so
    # a run pays for compiling sdc's sources only in the warm-up.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = os.pathsep.join([str(CODE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


PYTHON = [sys.executable]  # the interpreter sdc runs on: a --venv's, so that its packages are timed


def sdc_command() -> list[str]:
    return [PYTHON[0], "-m", "sdc"]


def commands(work: Path, image: Path) -> dict[str, list[str]]:
    sdc = sdc_command()
    return {
        "sdc decode": sdc + ["decode", str(work / "img.sdc"), "-o", str(work / "dec.png"), "-f", "--quiet"],
        "sdc encode": sdc + ["encode", str(image), "-o", str(work / "enc.sdc"), "-f", "--quiet"],
        "cjxl -e 7": ["cjxl", "-e", "7", "-d", "1", str(image), str(work / "img.jxl"), "--quiet"],
        "djxl": ["djxl", str(work / "img.jxl"), str(work / "djxl.png"), "--quiet"],
    }


def imported_modules(cmd: list[str]) -> list[str]:
    """The HEAVY modules a run of the sdc CLI arguments in `cmd` imports."""
    done = subprocess.run([PYTHON[0], "-c", PROBE, *cmd[3:]], capture_output=True, text=True, env=child_env())
    line = next((l for l in done.stderr.splitlines() if l.startswith("IMPORTED")), None)
    if line is None:
        raise SystemExit(f"import probe failed: {done.stderr[-300:]}")
    return json.loads(line.split(" ", 1)[1].replace("'", '"'))


def timings(cmds: dict[str, list[str]], runs: int) -> dict[str, list[dict]]:
    for cmd in cmds.values():  # warm-up: page cache, pyc files
        run_once(cmd)
    out: dict[str, list[dict]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            out[name].append(run_once(cmd))
    return out


def install_size(venv: Path | None) -> dict:
    """Bytes of every distribution installed in a venv with sdc's default dependencies."""
    made = venv is None
    if made:
        venv = Path(tempfile.mkdtemp(prefix="sdc-runtime-")) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(CODE)],
                       check=True)
    try:
        script = ("import json, importlib.metadata as md\n"
                  "sizes = {}\n"
                  "for d in md.distributions():\n"
                  "    n = 0\n"
                  "    for f in d.files or ():\n"
                  "        p = f.locate()\n"
                  "        n += p.stat().st_size if p.is_file() else 0\n"
                  "    sizes[d.metadata['Name']] = n\n"
                  "print(json.dumps(sizes))")
        sizes = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", script], check=True,
                                          capture_output=True, text=True).stdout)
    finally:
        if made:
            shutil.rmtree(venv.parent, ignore_errors=True)
    weights = CODE / "weights"
    manifest = json.loads((weights / "manifest.json").read_text())
    # What the runtime reads: the manifest and the files its runtime entry lists.
    read = [weights / "manifest.json"] + [weights / e["file"] for e in manifest["runtime"]["files"].values()]
    weight_bytes = sum(p.stat().st_size for p in read)
    total = sum(sizes.values()) + weight_bytes
    return {"total_mb": round(total / 1e6, 1), "weights_mb": round(weight_bytes / 1e6, 1),
            "torch_installed": any(n.lower() == "torch" for n in sizes),
            "largest_mb": {k: round(v / 1e6, 1) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]}}


def summary(times: dict[str, list[dict]]) -> dict:
    out = {}
    ref = times["cjxl -e 7"]
    for name, runs in times.items():
        out[name] = {
            "wall_median_s": round(statistics.median(r["wall"] for r in runs), 3),
            "cpu_median_s": round(statistics.median(r["cpu"] for r in runs), 3),
            "wall_ratio_to_cjxl": round(statistics.median(r["wall"] / c["wall"] for r, c in zip(runs, ref)), 2),
            "peak_mib": round(max(r["peak_mib"] for r in runs), 1),
        }
    return out


def report(result: dict) -> str:
    """The table and lines printed, and written into benchmarks/README.md by run_all.py."""
    rows = [[name, f"{s['wall_median_s']:.3f}", f"{s['cpu_median_s']:.3f}", f"{s['wall_ratio_to_cjxl']:.2f}x",
             f"{s['peak_mib']:.0f}"] for name, s in result["summary"].items()]
    imports = result["heavy_imports"]
    inst = result["install"]
    largest = ", ".join(f"{k} {v}" for k, v in inst["largest_mb"].items())
    return "\n".join([
        table(rows, ["768x512, whole process", "wall s (median)", "CPU s (median)", "wall / cjxl -e 7", "peak MiB"]),
        f"heavy modules imported: sdc decode {imports['sdc decode'] or 'none'}, sdc encode {imports['sdc encode'] or 'none'}",
        f"runtime install (pip install .): {inst['total_mb']} MB, of which weights {inst['weights_mb']} MB; "
        f"torch installed: {inst['torch_installed']}",
        f"largest distributions (MB): {largest}",
        f"{result['runs']} runs each, interleaved; load average at the end {result['loadavg_at_end'][0]:.2f}"])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--venv", type=Path, help="a venv where `pip install .` was run (default: make one)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.venv:
        PYTHON[0] = str(args.venv / "bin" / "python")
    image = next(p for p in val_paths() if p.name == IMAGE)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(sdc_command() + ["encode", str(image), "-o", str(work / "img.sdc"), "--quiet"], check=True,
                       env=child_env())
        cmds = commands(work, image)
        subprocess.run(cmds["cjxl -e 7"], check=True)
        imports = {name: imported_modules(cmds[name]) for name in ("sdc decode", "sdc encode")}
        times = timings(cmds, args.runs)
    result = {"git": git_commit(), "image": IMAGE, "runs": args.runs, "loadavg_at_end": list(os.getloadavg()),
              "commands": {k: " ".join(v) for k, v in commands(Path("WORK"), image).items()},
              "summary": summary(times), "heavy_imports": imports, "install": install_size(args.venv),
              "raw": times}
    write_json(args.out, result)
    print(report(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
