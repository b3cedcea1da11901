"""tests/data/golden.sdc decodes to the symbols and pixels tests/data/golden.json pins.

The symbols must be the same on any machine, thread count and runtime (see
tests/data/make_golden.py); the pixel digest pins this decoder's float g_s.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_file_decodes_to_its_symbols_and_pixels():
    from sdc import pipeline

    golden = _make_golden()
    data = golden.GOLDEN_SDC.read_bytes()
    record = json.loads(golden.GOLDEN_JSON.read_text())
    assert len(data) < 2048
    assert golden.symbol_digests(pipeline.decode_symbols(data)) == record["symbols"]
    assert golden.array_digest(pipeline.decode_sdc(data).rgb, "u1") == record["pixels"]


def test_golden_symbols_without_torch_on_one_thread():
    """A fresh process in which importing torch fails and BLAS has one thread decodes the same symbols."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(DATA / "make_golden.py"), "--check"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
