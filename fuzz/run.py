"""Fuzz sdc's container reader or decoder front end; results into benchmarks/results/fuzz.json.

    nice -n 10 python fuzz/run.py reader --inputs 1000000
    nice -n 10 python fuzz/run.py frontend --inputs 250000
    nice -n 10 python fuzz/run.py decoder --inputs 30000
    nice -n 10 python fuzz/run.py reader --engine atheris --inputs 200000

Engines:
  random   (default) every input is made by one of fuzz/sdcfuzz.py's strategies
           from random.Random(seed * 2**32 + index): reproducible, input i of a
           run is `python fuzz/run.py TARGET --seed S --replay i`.
  atheris  coverage-guided (libFuzzer through atheris, sdc's modules
           instrumented); its mutator mixes libFuzzer's own byte mutations with
           the same strategies, applied to the corpus entries it keeps.

Per input: CPU seconds of the fuzzing thread (time.thread_time) and wall
seconds. A failure is any exception other than sdc.errors.SdcError, a wrong
result (see sdcfuzz.py), an input over --time-limit CPU seconds, or RSS growing
more than --rss-growth-mb above its level after the warm-up inputs. A
watchdog ends the run if one input runs for --hang-seconds (wall). Failing
inputs are written to fuzz/crashes/. torch runs on 1 thread (the machine is
shared; see fuzz/README.md).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO / "benchmarks"))
import sdcfuzz  # noqa: E402
from common import git_commit  # noqa: E402  (benchmarks/common.py)

RESULTS = REPO / "benchmarks" / "results" / "fuzz.json"
CRASHES = HERE / "crashes"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stats:
    def __init__(self, args, engine: str):
        self.args = args
        self.engine = engine
        self.inputs = 0
        self.failures = 0
        self.failure_examples: list[dict] = []
        self.outcomes: collections.Counter = collections.Counter()
        self.strategies: collections.Counter = collections.Counter()
        self.max_cpu = self.max_wall = 0.0
        self.slowest: dict = {}
        self.over_cpu = self.over_wall = 0
        self.bytes_total = 0
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.rss_start = rss_mb()
        self.rss_warm = None
        self.rss_max = self.rss_start
        self.current_start = None  # wall time the current input started (watchdog)
        self.current = b""
        self.last_write = time.monotonic()
        self.git = git_commit(("sdc", "weights", "fuzz"))  # the code the run started with

    def fail(self, kind: str, data: bytes, detail: str, strategy: str | None, index: int | None) -> None:
        self.failures += 1
        CRASHES.mkdir(exist_ok=True)
        import hashlib

        name = f"{self.args.target}-{kind}-{hashlib.sha1(data).hexdigest()[:12]}.sdc"
        (CRASHES / name).write_bytes(data)
        if len(self.failure_examples) < 50:
            self.failure_examples.append({"kind": kind, "strategy": strategy, "index": index,
                                          "file": f"fuzz/crashes/{name}", "detail": detail[-2000:]})
        print(f"FAILURE {kind} ({strategy}, input {index}): {detail.splitlines()[-1] if detail else ''}",
              file=sys.stderr, flush=True)

    def run_one(self, target, data: bytes, strategy: str | None = None, index: int | None = None) -> None:
        self.current = data
        self.current_start = time.monotonic()
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            outcome = target(data)
        except Exception as e:  # noqa: BLE001 - that is what we are looking for
            outcome = "FAILURE"
            self.fail("exception", data, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", strategy, index)
        cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
        self.current_start = None
        self.inputs += 1
        self.bytes_total += len(data)
        self.outcomes[outcome] += 1
        if strategy:
            self.strategies[strategy] += 1
        if cpu > self.max_cpu:
            self.max_cpu = cpu
            self.slowest = {"cpu_s": round(cpu, 4), "wall_s": round(wall, 4), "strategy": strategy,
                            "index": index, "bytes": len(data)}
        self.max_wall = max(self.max_wall, wall)
        if cpu > self.args.time_limit:
            self.over_cpu += 1
            self.fail("slow", data, f"{cpu:.3f} CPU s", strategy, index)
        if wall > self.args.time_limit:
            self.over_wall += 1  # reported, not a failure: wall time on a loaded machine
        if self.inputs % 1000 == 0:
            r = rss_mb()
            self.rss_max = max(self.rss_max, r)
            if self.inputs == self.args.warmup:
                self.rss_warm = r
            elif self.rss_warm is not None and r > self.rss_warm + self.args.rss_growth_mb:
                self.fail("memory", data, f"RSS {r:.0f} MB, {r - self.rss_warm:.0f} MB above the "
                          f"{self.rss_warm:.0f} MB after warm-up", strategy, index)
                self.rss_warm = r  # report each further growth once
            if time.monotonic() - self.last_write > 60:
                self.write(final=False)

    def summary(self, final: bool) -> dict:
        return {
            "target": self.args.target,
            "engine": self.engine,
            "complete": final,
            "inputs": self.inputs,
            "failures": self.failures,
            "failure_examples": self.failure_examples,
            "max_cpu_seconds_per_input": round(self.max_cpu, 4),
            "max_wall_seconds_per_input": round(self.max_wall, 4),
            "inputs_over_time_limit_cpu": self.over_cpu,
            "inputs_over_time_limit_wall": self.over_wall,
            "time_limit_s": self.args.time_limit,
            "slowest_input": self.slowest,
            "seconds": round(time.perf_counter() - self.t0, 1),
            "cpu_seconds": round(time.process_time() - self.c0, 1),
            "peak_rss_mb": round(max(peak_rss_mb(), self.rss_max), 1),
            "rss_mb_after_warmup": None if self.rss_warm is None else round(self.rss_warm, 1),
            "rss_mb_max_sampled": round(self.rss_max, 1),
            "rss_growth_limit_mb": self.args.rss_growth_mb,
            "mean_input_bytes": round(self.bytes_total / max(1, self.inputs), 1),
            "outcomes": dict(self.outcomes.most_common()),
            "strategies": dict(sorted(self.strategies.items())),
            "seed": self.args.seed,
            "seed_files": {k: len(v) for k, v in SEEDS.files.items()},
            "command": "python fuzz/run.py " + " ".join(sys.argv[1:]),
            "git": self.git,
            "loadavg_at_end": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def write(self, final: bool) -> None:
        self.last_write = time.monotonic()
        key = self.args.name or (self.args.target if self.engine == "random" else f"{self.args.target}-{self.engine}")
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # several runs (processes) write into one file: merge under a lock
        import fcntl

        with open(out.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = json.loads(out.read_text())
            except (OSError, ValueError):
                doc = {}
            runs = doc.get("runs", {})
            runs[key] = self.summary(final)
            doc = {
                "benchmark": "fuzz",
                "what": "fuzz/README.md: targets, strategies and failure criteria",
                "total_inputs": sum(r["inputs"] for r in runs.values()),
                "total_failures": sum(r["failures"] for r in runs.values()),
                "max_cpu_seconds_per_input": max(r["max_cpu_seconds_per_input"] for r in runs.values()),
                "max_wall_seconds_per_input": max(r["max_wall_seconds_per_input"] for r in runs.values()),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs.values()),
                "runs": runs,
            }
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            tmp.replace(out)


def watchdog(stats: Stats, hang: float) -> None:
    while True:
        time.sleep(1.0)
        start = stats.current_start
        if start is not None and time.monotonic() - start > hang:
            stats.fail("hang", stats.current, f"input still running after {hang} s (wall)", None, stats.inputs)
            stats.write(final=False)
            os._exit(3)


def rng_for(seed: int, index: int) -> random.Random:
    return random.Random(seed * 2**32 + index)


def run_random(args, stats: Stats) -> None:
    target = sdcfuzz.TARGETS[args.target]
    for i in range(args.inputs):
        strategy, data = sdcfuzz.generate(rng_for(args.seed, i), SEEDS, args.target)
        stats.run_one(target, data, strategy, i)
    stats.write(final=True)


def run_atheris(args, stats: Stats) -> None:
    import atheris

    target = sdcfuzz.TARGETS[args.target]
    corpus = Path(args.corpus or (HERE / "corpus" / args.target))
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS.files.items():
        (corpus / f"seed-{name}.sdc").write_bytes(data)

    def test_one(data: bytes) -> None:
        stats.run_one(target, data, None, stats.inputs)
        if stats.inputs >= args.inputs:
            stats.write(final=True)
            os._exit(0)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.3:
            return atheris.Mutate(data, max_size)
        pool = SEEDS
        try:
            sdcfuzz.split(data)
            if rng.random() < 0.7 and len(data) > 40:
                pool = sdcfuzz.Seeds({"current": data})
        except Exception:  # noqa: BLE001 - not a well-formed file: mutate a seed instead
            pass
        try:
            return sdcfuzz.generate(rng, pool, args.target)[1][:max_size]
        except Exception:  # noqa: BLE001
            return atheris.Mutate(data, max_size)

    argv = [sys.argv[0], f"-runs={args.inputs + 1000}", f"-timeout={int(args.hang_seconds)}",
            f"-rss_limit_mb={args.rss_limit_mb}", "-max_len=4096", f"-seed={args.seed or 1}",
            "-print_final_stats=1", str(corpus)]
    atheris.Setup(argv, test_one, custom_mutator=mutator)
    atheris.Fuzz()


def main(argv=None) -> int:
    global SEEDS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=sorted(sdcfuzz.TARGETS))
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--engine", choices=("random", "atheris"), default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", help="key of this run in the results file (default: target[-engine])")
    ap.add_argument("--time-limit", type=float, default=1.0, help="CPU seconds per input (failure above)")
    ap.add_argument("--hang-seconds", type=float, default=30.0, help="wall seconds: the watchdog ends the run")
    ap.add_argument("--warmup", type=int, default=5000, help="inputs before the RSS baseline is taken")
    ap.add_argument("--rss-growth-mb", type=float, default=200.0)
    ap.add_argument("--rss-limit-mb", type=int, default=3000, help="atheris: libFuzzer's RSS limit")
    ap.add_argument("--corpus", help="atheris: corpus directory (default fuzz/corpus/TARGET)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--replay", type=int, metavar="I", help="run input I of the random engine and show it")
    args = ap.parse_args(argv)

    if args.engine == "atheris":  # coverage: instrument sdc's modules before anything imports them
        import atheris

        with atheris.instrument_imports(include=["sdc"]):
            import sdc.bitstream  # noqa: F401
            import sdc.errors  # noqa: F401
            if args.target in ("frontend", "decoder"):
                import sdc.models.codec  # noqa: F401
                import sdc.models.entropy_coder  # noqa: F401
                import sdc.models.integer_hyper  # noqa: F401
                import sdc.models.latent_codec  # noqa: F401
                import sdc.pipeline  # noqa: F401
    import torch

    torch.set_num_threads(1)
    SEEDS = sdcfuzz.Seeds(sdcfuzz.make_seeds())
    if args.replay is not None:
        strategy, data = sdcfuzz.generate(rng_for(args.seed, args.replay), SEEDS, args.target)
        print(f"input {args.replay}: strategy {strategy}, {len(data)} bytes: {data.hex()}")
        print("outcome:", sdcfuzz.TARGETS[args.target](data))
        return 0
    stats = Stats(args, args.engine)
    threading.Thread(target=watchdog, args=(stats, args.hang_seconds), daemon=True).start()
    if args.engine == "atheris":
        run_atheris(args, stats)
    else:
        run_random(args, stats)
    s = stats.summary(True)
    print(json.dumps({k: s[k] for k in ("target", "inputs", "failures", "max_cpu_seconds_per_input",
                                        "max_wall_seconds_per_input", "peak_rss_mb", "seconds", "outcomes")}))
    return 1 if stats.failures else 0


SEEDS: sdcfuzz.Seeds

if __name__ == "__main__":
    raise SystemExit(main())
