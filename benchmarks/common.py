"""Shared helpers of the benchmark scripts: paths, images, metrics, machine facts, JSON."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SHARED = Path(os.environ.get("SDC_SHARED", REPO.parent / "shared"))
VAL_DIR = SHARED / "data" / "val"

# The sdc code benchmarked: this checkout, or $SDC_CODE (e.g. a `git archive` of a commit, to measure
# committed code while the work tree is being edited). `python benchmarks/x.py` works without installing sdc.
CODE = Path(os.environ.get("SDC_CODE", REPO)).resolve()
if str(CODE) not in sys.path:
    sys.path.insert(0, str(CODE))


def set_threads(n: int = 2) -> None:
    import torch

    torch.set_num_threads(n)


def val_paths(limit: int | None = None) -> list[Path]:
    paths = sorted(p for p in VAL_DIR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"no images in {VAL_DIR} (set SDC_SHARED)")
    return paths[:limit] if limit else paths


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def pixel_hash(rgb: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{rgb.shape}".encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()[:16]


def crop_768x512(rgb: np.ndarray) -> np.ndarray:
    """A 768x512 (W x H) centre crop, after a resize (Lanczos) when the image is smaller."""
    from PIL import Image

    W, H = 768, 512
    h, w = rgb.shape[:2]
    if w < W or h < H:
        s = max(W / w, H / h)
        im = Image.fromarray(rgb).resize((max(W, round(w * s)), max(H, round(h * s))), Image.LANCZOS)
        rgb = np.asarray(im)
        h, w = rgb.shape[:2]
    y0, x0 = (h - H) // 2, (w - W) // 2
    return np.ascontiguousarray(rgb[y0:y0 + H, x0:x0 + W])


# ----------------------------------------------------------------------------- metrics
def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        d = d[mask]
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR over all RGB samples (optionally only pixels where `mask` (H, W) is true), peak 255."""
    m = mse(a, b, mask)
    return float("inf") if m == 0 else float(10 * np.log10(255.0 ** 2 / m))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM on RGB (pytorch-msssim, default 5 scales and weights, data_range=255)."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(a).permute(2, 0, 1)[None].float()  # float32 agrees with float64 to ~1e-7
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return float(_ms_ssim(ta, tb, data_range=255.0))


def msssim_db(v: float) -> float:
    return float(-10 * np.log10(max(1e-12, 1 - v)))


# ----------------------------------------------------------------------------- facts
def machine_info() -> dict:
    import torch

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "loadavg_at_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def weights_info() -> dict:
    from sdc.models.codec import default_codec

    m = default_codec().manifest
    return {"sha256": m.get("sha256"), "exported": m.get("exported"),
            "training": {k: v for k, v in (m.get("training") or {}).items() if k in ("steps", "initialised_from")}}


def git_commit(paths: tuple[str, ...] = ("sdc", "weights")) -> str:
    """HEAD's short hash, plus the uncommitted changes under `paths` that the numbers include."""
    import subprocess

    if CODE != REPO:
        return f"sdc code from {CODE} ($SDC_CODE): " + (os.environ.get("SDC_CODE_REV") or "unknown revision")
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", *paths],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        return head + (f" + uncommitted {', '.join(dirty)}" if dirty else "")
    except Exception:  # noqa: BLE001 - informational only
        return ""


# ----------------------------------------------------------------------------- main()
def arguments(doc: str, out: Path | None, *, threads: int = 2, effort: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark's main() opens with, described by the first paragraph
    of its docstring: --threads (torch's), --out (default `out`; required when None) and,
    with `effort`, --effort N, whose default --out is NAME_effortN.json at N > 1 (see
    `start`). The benchmark adds its own options to the parser returned."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=threads, help=f"torch threads (default {threads})")
    if effort:
        ap.add_argument("--effort", type=int, default=1, help="sdc encoder effort (sdc encode --effort)")
        ap.add_argument("--out", type=Path,
                        help=f"default {out.name}, or {out.stem}_effortN{out.suffix} at effort N > 1")
    else:
        ap.add_argument("--out", type=Path, default=out, required=out is None)
    return ap


def start(args, out: Path | None = None) -> dict:
    """Open a run parsed by `arguments`: an --effort run's --out (from `out`), torch's threads,
    and the code and machine the run starts with, as {"git", "machine"}."""
    if args.out is None:
        args.out = effort_output(out, args.effort)
    set_threads(args.threads)
    return {"git": git_commit(), "machine": machine_info()}


def effort_output(default: Path, effort: int) -> Path:
    """Where a benchmark at `sdc encode --effort N` writes: the default at effort 1, else NAME_effortN.json."""
    return default if effort == 1 else default.with_name(f"{default.stem}_effort{effort}{default.suffix}")


def write_json(path: Path, obj) -> None:
    """Atomically, through a temporary file of this process's own: benchmarks run side by
    side (rd.py at two efforts) both rewrite the baseline cache, and a shared temporary
    name let one rename the other's file away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False, allow_nan=True) + "\n")
    tmp.replace(path)


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def table(rows: list[list], header: list[str]) -> str:
    """Plain aligned text table (also valid Markdown)."""
    cells = [[str(c) for c in header]] + [[c if isinstance(c, str) else f"{c}" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(cells[0]), sep] + [fmt(r) for r in cells[1:]])
