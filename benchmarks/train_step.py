"""Seconds per training step of `python -m sdc.training.train` under each speed option.

    python benchmarks/train_step.py                 # 1 and 2 threads, 6 rounds (about 8 min)
    python benchmarks/train_step.py --rounds 3 --threads 2

Measures the real training step (`sdc.training.optim.training_step`: forward, rate-
distortion loss, backward, clipping, Adam, aux step) on the shipped weights'
architecture, batch 4 of 256-pixel crops from the val images, for each
combination of Adam's fused CPU kernel or its per-tensor loop and the forward
through torch.compile or eager. All four share one process and one network
and take turns, `--steps` steps each per round, so that drift in the
machine's speed (other jobs, a noisy VM neighbour) falls on all of them
alike; the first steps (compile, allocator warm-up) are timed apart.
channels_last is measured in a second process the same way against eager.
Run it on an idle machine: it answers "which options pay", and the
training defaults follow it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from time import perf_counter

from common import RESULTS, REPO, git_commit, machine_info, table, write_json

VARIANTS = ("eager", "fused", "compile", "fused+compile")
LAYOUT_VARIANTS = ("eager", "fused+channels_last")


def measure(threads: int, rounds: int, steps: int, layout: bool) -> list[dict]:
    """In a child process: every variant (or eager against channels_last), interleaved."""
    import copy
    import random

    import torch

    from common import VAL_DIR
    from sdc.training.network import SDCNet
    from sdc.models.weights import default_weights_dir
    from sdc.training.data import load_images, random_batch, random_quality_maps
    from sdc.training.optim import CompiledForward, adam, parameter_groups, training_step
    from sdc.training.warm_start import init_weights

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    weights = default_weights_dir()
    net = SDCNet.from_config(json.loads((weights / "manifest.json").read_text())["architecture"])
    images = load_images(VAL_DIR, 256)
    rng = random.Random(0)
    init_weights(net, str(weights / "sdc.safetensors"), random_batch(images, 16, 256, rng))
    net.train()

    def setup(variant: str) -> dict:
        options = set(variant.split("+"))
        model = net
        if "channels_last" in options:
            model = copy.deepcopy(net).to(memory_format=torch.channels_last)
        main, fast, aux_params = parameter_groups(model)
        params, fused = main + fast, "fused" in options
        return {"net": model, "params": params, "channels_last": "channels_last" in options,
                "opt": adam(params, 1e-6, fused), "aux_opt": adam(aux_params, 1e-3, fused),
                "forward": CompiledForward(model) if "compile" in options else model, "times": []}

    def step(v: dict) -> float:
        x = random_batch(images, 4, 256, rng)
        if v["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        qmap = random_quality_maps(4, 16, v["net"].num_qualities, rng, 0.3)
        t0 = perf_counter()
        training_step(v["forward"], v["net"], v["opt"], v["aux_opt"], v["params"], x, qmap)
        return perf_counter() - t0

    variants = {name: setup(name) for name in (LAYOUT_VARIANTS if layout else VARIANTS)}
    warm = {name: sum(step(v) for _ in range(3)) for name, v in variants.items()}
    for _ in range(rounds):
        for v in variants.values():
            v["times"] += [step(v) for _ in range(steps)]
    out = []
    for name, v in variants.items():
        t = sorted(v["times"])
        out.append({"variant": name, "threads": threads, "steps": len(t), "warmup_s": warm[name],
                    "median_s": t[len(t) // 2], "mean_s": sum(t) / len(t)})
    return out


def report(res: dict) -> str:
    rows = []
    base = {(r["threads"], r.get("group")): r["median_s"] for r in res["runs"] if r["variant"] == "eager"}
    for r in res["runs"]:
        ref = base.get((r["threads"], r.get("group")))
        rows.append([r["variant"], str(r["threads"]), f"{r['median_s']:.3f}", f"{r['mean_s']:.3f}",
                     f"{100 * (r['median_s'] / ref - 1):+.1f}%" if ref else "-", f"{r['warmup_s']:.0f}"])
    return table(rows, ["variant", "threads", "median s/step", "mean s/step", "vs eager", "first 3 steps s"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", type=Path, default=RESULTS / "train_step.json")
    ap.add_argument("--child", nargs=2, metavar=("THREADS", "LAYOUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.rounds, args.steps, args.child[1] == "1")))
        return 0
    runs = []
    for threads in (int(t) for t in args.threads.split(",")):
        for layout in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--child", str(threads), layout, "--rounds",
                                  str(args.rounds), "--steps", str(args.steps)], capture_output=True, text=True, cwd=REPO)
            if out.returncode:
                raise SystemExit(f"{threads} threads failed: {out.stderr.strip().splitlines()[-1:]}")
            part = json.loads(out.stdout.strip().splitlines()[-1])
            for r in part:
                r["group"] = "layout" if layout == "1" else "options"
                print(f"{r['variant']:22s} {threads} threads: {r['median_s']:.3f} s/step", flush=True)
            runs += part
    res = {"git_commit": git_commit(), "machine": machine_info(), "batch": 4, "crop": 256,
           "protocol": f"{args.rounds} rounds x {args.steps} steps per variant, interleaved in one process",
           "runs": runs}
    print(report(res))
    write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
