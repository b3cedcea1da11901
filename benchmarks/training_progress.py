"""Codec training progress: validation rate and PSNR against CPU time, across training runs.

    python benchmarks/training_progress.py [--log runs/main/log.jsonl]
        [--stage NAME --cpu-offset-hours H]

Training logs (runs/*/log.jsonl) are not committed and a new machine starts
without them, so this script folds the validation records of a log into
results/training_progress.json, which is committed and keeps the history: an
entry is keyed by its step, and the entries already in the JSON stay. Each
entry has the step, the process CPU hours the run had spent by then (from the
nearest training record before it) and the validation of sdc.training.train (the
likelihood bpp and PSNR-RGB of q1, q4 and q8 on the val images; real
bitstreams are measured by the export and benchmarks/rd.py).

A *stage* is a stretch of one lineage with one quality ladder and one
architecture (a run started with --init from the previous stage's weights
starts its step count again): entries are keyed by (stage, step), and
--cpu-offset-hours adds the CPU hours of the stages before, so the x axis is
the lineage's total training time.

Writes results/training_progress.json and results/training_progress.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, read_json, table, write_json  # noqa: E402

OUT = RESULTS / "training_progress.json"


FIRST_STAGE = "v2: λ 0.0016·1.7^k"  # entries written before stages existed


def val_records(log: Path, stage: str, cpu_offset_hours: float = 0.0) -> list[dict]:
    """Validation entries of a sdc.training.train log, each with the CPU hours spent when it was taken."""
    cpu, out = 0.0, []
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "cpu_seconds" in rec:
            cpu = rec["cpu_seconds"]
        if "val" in rec:
            out.append({"stage": stage, "step": rec["step"], "cpu_hours": round(cpu_offset_hours + cpu / 3600, 3),
                        "val": {q: {k: round(v, 4) for k, v in m.items()} for q, m in rec["val"].items()}})
    return out


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    key = lambda e: (e.get("stage", FIRST_STAGE), e["step"])  # noqa: E731
    by_key = {key(e): dict(e, stage=key(e)[0]) for e in old}
    by_key.update({key(e): e for e in new})
    return sorted(by_key.values(), key=lambda e: (e["cpu_hours"], e["step"]))


def plot(entries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    stages = list(dict.fromkeys(e["stage"] for e in entries))
    # One colour per quality and one segment per stage (a stage restarts its
    # steps and may change the quality ladder, so stages are not joined); a
    # legend entry per stage and quality would outgrow the axes after a few
    # stages, so stage starts are faint vertical lines, named in the JSON.
    for si, stage in enumerate(stages):
        part = [e for e in entries if e["stage"] == stage]
        hours = [e["cpu_hours"] for e in part]
        for qi, q in enumerate(("q1", "q4", "q8")):
            style = dict(marker="o", ms=3, color=f"C{qi}", label=q if si == 0 else None)
            a1.plot(hours, [e["val"][q]["psnr"] for e in part], **style)
            a2.plot(hours, [e["val"][q]["bpp"] for e in part], **style)
        for a in (a1, a2):
            a.axvline(hours[0], color="0.6", lw=0.5, ls=":")
    a1.set(xlabel="training CPU hours (lineage)", ylabel="val PSNR-RGB (dB)",
           title=f"distortion ({len(stages)} stages, dotted: stage starts)")
    a2.set(xlabel="training CPU hours (lineage)", ylabel="val bpp (likelihoods)", title="rate")
    a2.set_yscale("log")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", type=Path, default=Path("runs/main/log.jsonl"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--stage", default=FIRST_STAGE, help="name of the log's stage (quality ladder, architecture)")
    ap.add_argument("--cpu-offset-hours", type=float, default=0.0, help="CPU hours of the stages before this log")
    args = ap.parse_args(argv)
    old = read_json(args.out)["entries"] if args.out.exists() else []
    new = val_records(args.log, args.stage, args.cpu_offset_hours) if args.log.exists() else []
    if not old and not new:
        print(f"no training log at {args.log} and no {args.out}", file=sys.stderr)
        return 1
    entries = merge(old, new)
    write_json(args.out, {"benchmark": "codec training progress (sdc.training.train validation)",
                          "command": f"python benchmarks/training_progress.py --log {args.log} --stage '{args.stage}' "
                                     f"--cpu-offset-hours {args.cpu_offset_hours}",
                          "entries": entries})
    try:
        plot(entries, args.out.with_suffix(".png"))
    except ImportError:
        print("matplotlib missing (pip install 'sdc[bench]'): no plot", file=sys.stderr)
    rows = [[e["stage"], e["step"], f"{e['cpu_hours']:.2f}",
             *(f"{e['val'][q]['bpp']:.3f} / {e['val'][q]['psnr']:.2f}" for q in ("q1", "q4", "q8"))]
            for e in entries]
    print(table(rows, ["stage", "step", "CPU h", "q1 bpp / dB", "q4 bpp / dB", "q8 bpp / dB"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
