"""Run every benchmark, then refresh the tables in benchmarks/README.md.

    nice -n 10 python benchmarks/run_all.py            # rd (baselines from cache), refined rd, region fidelity, speed
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
# Effort 3 runs 40 refinement steps per encode (about 20 s per val image), so
# its sweep takes four qualities: enough for a BD-rate, half the CPU time.
SCRIPTS = {"rd": ["rd.py"], "rd2": ["rd.py", "--effort", "2"], "rd3": ["rd.py", "--effort", "3", "--qualities", "1,3,5,8"],
           "region": ["region_fidelity.py"], "speed": ["speed.py"], "startup": ["startup.py"],
           "parity": ["runtime_parity.py"]}
# What each refined sweep did (sdc.training.refine.EFFORT_STEPS).
EFFORT_TEXT = {2: "the latent refined by 20 steps of gradient descent before coding",
               3: "ẑ and y refined together for 20 steps, then y alone for 20, before coding"}


def results_markdown() -> str:
    sys.path.insert(0, str(BENCH))
    import rd  # benchmarks/rd.py: its report() prints the tables

    parts = []
    rd_path, rf_path, sp_path = RESULTS / "rd.json", RESULTS / "region_fidelity.json", RESULTS / "speed.json"
    refined = {e: json.loads(p.read_text()) for e in EFFORT_TEXT
               if (p := RESULTS / f"rd_effort{e}.json").exists()}
    targets = targets_table(*(json.loads(p.read_text()) if p.exists() else None
                              for p in (rd_path, rf_path, sp_path)), refined)
    targets += runtime_targets(*(json.loads(p.read_text()) if p.exists() else None
                                 for p in (RESULTS / "startup.json", RESULTS / "runtime_parity.json")))
    if targets:
        parts.append("### Targets\n\n" + targets + "\n")
    if rd_path.exists():
        res = json.loads(rd_path.read_text())
        w = res["weights"]
        parts.append(f"### Rate-distortion ({res['machine']['date']}, weights `{(w['sha256'] or '')[:12]}` exported {w['exported']})\n")
        parts.append("```\n" + rd.report(res) + "\n```\n")
        parts.append("![RD curves](results/rd.png)\n")
        tools = "; ".join(f"{k}: {v['version']}" for k, v in res["tools"].items())
        parts.append(f"Tools: {tools}.\n")
    for effort, res in refined.items():
        w = res["weights"]
        parts.append(f"### Rate-distortion at `sdc encode --effort {effort}` ({res['machine']['date']}, weights "
                     f"`{(w['sha256'] or '')[:12]}`)\n")
        parts.append(f"The same sweep with {EFFORT_TEXT[effort]} (`sdc/training/refine.py`); the decoder is "
                     "unchanged. 'effort 1' is the sweep above when its weights are the same.\n")
        parts.append("```\n" + rd.report(res) + "\n```\n")
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
    for name, title in (("startup", "Start-up and install"), ("runtime_parity", "The ONNX runtime against torch")):
        path = RESULTS / f"{name}.json"
        if path.exists():
            module = __import__(name)
            res = json.loads(path.read_text())
            parts.append(f"### {title} (`{name}.py`, code {res['git']})\n")
            parts.append("```\n" + module.report(res) + "\n```\n")
    return "\n".join(parts)


def targets_table(rd, rf, sp, refined=None) -> str:
    """refined: {effort: rd_effortN.json} of refined sweeps (rows only when their weights are rd's)."""
    rows = []
    yes = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    if rd:
        for anchor, goal in (("webp", -10.0), ("hevc", None)):
            v = (rd["bd"].get(anchor) or {}).get("bd_rate_psnr_file")
            if v is None:
                rows.append([f"BD-rate (PSNR) vs {anchor}, whole file", "n/a", "", ""])
            elif goal is None:
                rows.append([f"BD-rate (PSNR) vs {anchor}, whole file", f"{v:+.1f}%", "as close as training allows", ""])
            else:
                rows.append([f"BD-rate (PSNR) vs {anchor}, whole file", f"{v:+.1f}%", f"< {goal:+.0f}%", yes(v < goal)])
            goal_text = rows[-1][2]
            v8 = ((rd.get("bd_q1_8") or {}).get(anchor) or {}).get("bd_rate_psnr_file")
            if v8 is not None:
                rows.append(["same, qualities 1..8 only", f"{v8:+.1f}%", goal_text, yes(v8 < goal) if goal else ""])
            for effort, res in (refined or {}).items():
                v2 = (res.get("bd", {}).get(anchor) or {}).get("bd_rate_psnr_file")
                if v2 is not None and res["weights"]["sha256"] == rd["weights"]["sha256"]:
                    rows.append([f"same, sdc encode --effort {effort}", f"{v2:+.1f}%", goal_text,
                                 yes(v2 < goal) if goal else ""])
        rates = [p["bpp"] for p in rd["curves"].get("sdc", [])]
        if rates:  # "about 0.1 to 1.5 bpp": within a quarter of either end
            rows.append([f"qualities 1..{len(rates)} span (mean val bpp)", f"{min(rates):.2f}..{max(rates):.2f} bpp",
                         "about 0.1..1.5 bpp", yes(min(rates) <= 0.125 and max(rates) >= 1.2)])
    if rf:
        worst = max(rf["summary"], key=lambda s: s["box_delta_db"])
        ring = max(rf["summary"], key=lambda s: s["dilated_delta_db"])
        rows.append(["L1-only PSNR loss inside L1 (worst quality, mean over images)",
                     f"{worst['box_delta_db']:.2f} dB (q{worst['quality']})", "< 1 dB", yes(worst["box_delta_db"] < 1)])
        rows.append(["same, L1 grown by a 1-cell ring", f"{ring['dilated_delta_db']:.2f} dB (q{ring['quality']})",
                     "< 1 dB", yes(ring["dilated_delta_db"] < 1)])
    if sp:
        s = sp["summary"]
        for k, label in (("sdc_encode", "encode"), ("sdc_decode", "decode")):
            v = s[k]["wall_median_s"]
            rows.append([f"768x512 {label} seconds (median wall)", f"{v:.3f} s", "<= 0.3 s", yes(v <= 0.3)])
        for k in ("encode", "decode"):
            v = sp["speedup_vs_compressai"][k]
            rows.append([f"{k} speed-up vs compressai MSH(128,192)", f"{v:.2f}x", ">= 2x", yes(v >= 2)])
    if not rows:
        return ""
    sys.path.insert(0, str(BENCH))
    from common import table

    return table(rows, ["target", "measured", "goal", ""])


def runtime_targets(startup, parity) -> str:
    """The light runtime's targets (issue 39), as more rows of the targets table."""
    rows = []
    yes = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    if startup:
        for name, goal in (("sdc decode", 5.0), ("sdc encode", 8.0)):
            v = startup["summary"][name]["wall_ratio_to_cjxl"]
            rows.append([f"whole-process `{name}` / `cjxl -e 7` (768x512, median)", f"{v:.2f}x", f"<= {goal:.0f}x",
                         yes(v <= goal)])
        imported = sorted(set(startup["heavy_imports"]["sdc decode"]) | set(startup["heavy_imports"]["sdc encode"]))
        rows.append(["torch imported by sdc encode / decode", ", ".join(imported) or "no", "no", yes(not imported)])
        mb = startup["install"]["total_mb"]
        rows.append(["runtime install (default dependencies + weights)", f"{mb:.0f} MB", "<= 600 MB", yes(mb <= 600)])
    if parity:
        s = parity["summary"]
        v = s["bd_rate_onnx_vs_torch_percent"]
        rows.append(["BD-rate, onnx runtime vs torch", f"{v:+.3f}%", "within 0.1%", yes(abs(v) <= 0.1)])
        rows.append(["symbols identical, pixels within 1, across runtimes",
                     f"{s['symbols_identical']}, {s['max_pixel_diff']}", "True, <= 1",
                     yes(s["symbols_identical"] and s["max_pixel_diff"] <= 1)])
    if not rows:
        return ""
    sys.path.insert(0, str(BENCH))
    from common import table

    return "\n\n" + table(rows, ["runtime target", "measured", "goal", ""])


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
            script, *options = SCRIPTS[key]
            name = " ".join([script, *options])
            print(f"=== {name} ===", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call([sys.executable, str(BENCH / script), *options, *extra])
            print(f"=== {name}: exit {rc}, {time.perf_counter() - t0:.0f} s ===", flush=True)
            if rc:
                failed.append(name)
    update_readme()
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
