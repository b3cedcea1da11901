"""Run every benchmark, then refresh the tables in benchmarks/README.md.

    nice -n 10 python benchmarks/run_all.py            # rd (baselines from cache), region fidelity, speed
    nice -n 10 python benchmarks/run_all.py --only rd,speed
    python benchmarks/run_all.py --readme-only         # just rewrite README tables from results/*.json

Each benchmark runs in its own process; extra arguments after `--` go to all of them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
BEGIN, END = "<!-- results:begin (written by run_all.py) -->", "<!-- results:end -->"
SCRIPTS = {"rd": "rd.py", "region": "region_fidelity.py", "speed": "speed.py"}


def results_markdown() -> str:
    sys.path.insert(0, str(BENCH))
    parts = []
    rd_path, rf_path, sp_path = RESULTS / "rd.json", RESULTS / "region_fidelity.json", RESULTS / "speed.json"
    if rd_path.exists():
        import rd

        res = json.loads(rd_path.read_text())
        w = res["weights"]
        parts.append(f"### Rate-distortion ({res['machine']['date']}, weights `{(w['sha256'] or '')[:12]}` exported {w['exported']})\n")
        parts.append("```\n" + rd.report(res) + "\n```\n")
        parts.append("![RD curves](results/rd.png)\n")
        tools = "; ".join(f"{k}: {v['version']}" for k, v in res["tools"].items())
        parts.append(f"Tools: {tools}.\n")
    if rf_path.exists():
        import region_fidelity

        res = json.loads(rf_path.read_text())
        w = res["weights"]
        parts.append(f"### Region fidelity ({res['machine']['date']}, weights `{(w['sha256'] or '')[:12]}`)\n")
        parts.append("PSNR (dB) on the central box's pixels, mean over the val images; 'loss' = full decode minus "
                     "L1-only decode (target: < 1 dB).\n")
        parts.append("```\n" + region_fidelity.report(res["summary"]) + "\n```\n")
        parts.append("![region fidelity](results/region_fidelity.png)\n")
    if sp_path.exists():
        import speed

        res = json.loads(sp_path.read_text())
        w = res["weights"]
        parts.append(f"### Speed ({res['machine']['date']}, {res['machine']['cpu']}, {res['machine']['cores']} cores, "
                     f"torch threads {res['setup']['torch_threads']}, weights `{(w['sha256'] or '')[:12]}`)\n")
        parts.append("```\n" + speed.report(res) + "\n```\n")
    return "\n".join(parts)


def update_readme() -> None:
    text = README.read_text() if README.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + BEGIN + "\n" + results_markdown() + END + tail)
    print(f"updated {README}")


def main() -> int:
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SCRIPTS), help="comma list of: " + ", ".join(SCRIPTS))
    ap.add_argument("--readme-only", action="store_true")
    args = ap.parse_args(argv)
    failed = []
    if not args.readme_only:
        for key in [k.strip() for k in args.only.split(",") if k.strip()]:
            script = BENCH / SCRIPTS[key]
            print(f"=== {script.name} ===", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call([sys.executable, str(script), *extra])
            print(f"=== {script.name}: exit {rc}, {time.perf_counter() - t0:.0f} s ===", flush=True)
            if rc:
                failed.append(script.name)
    update_readme()
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
