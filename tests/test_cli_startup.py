"""`sdc --help`, `sdc inspect` and `sdc truncate` in a fresh interpreter: they must
not import torch (nor compressai, sdc.pipeline or numpy), so they start fast."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitstream_helpers import sample_bytes

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "compressai", "sdc.pipeline", "sdc.models", "sdc.analysis", "numpy", "cv2", "PIL")

PROBE = """
import sys
from sdc.cli import cli
code = cli.main(args=sys.argv[1:], prog_name="sdc", standalone_mode=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {h.split(".")[0] for h in %r}
               and any(m == h or m.startswith(h + ".") for h in %r))
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
sys.exit(code)
""" % (HEAVY, HEAVY)


def run_probe(args, tmp_path, input=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=tmp_path, env=env,
                       input=input, capture_output=True, timeout=60)
    elapsed = time.perf_counter() - t0
    heavy = [ln for ln in p.stderr.decode().splitlines() if ln.startswith("HEAVY=")]
    assert heavy, p.stderr.decode()
    return p, heavy[0][len("HEAVY="):], elapsed


def test_import_sdc_cli_is_light(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import sys, sdc, sdc.cli, sdc.bitstream; "
            "print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,))
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip() == ""


def test_import_sdc_and_its_api_is_light(tmp_path):
    """`import sdc` and looking up the API (sdc.encode, sdc.open, ...) import no codec, no
    analysis, not even numpy or PIL: those load when an image is encoded or decoded."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import sys, time; t0 = time.perf_counter(); import sdc\n"
            "api = [getattr(sdc, n) for n in sdc.__all__]\n"
            "import sdc.api\n"
            "print(','.join(m for m in %r if m in sys.modules)); print(time.perf_counter() - t0)" % (HEAVY,))
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    heavy, seconds = p.stdout.decode().split("\n")[:2]
    assert heavy == "" and float(seconds) < 1


@pytest.mark.parametrize("args", [["--help"], ["inspect", "--help"], ["--version"], ["encode", "--help"],
                                  ["decode", "--help"], ["analyze", "--help"], ["truncate", "--help"]])
def test_help_imports_nothing_heavy(tmp_path, args):
    p, heavy, elapsed = run_probe(args, tmp_path)
    assert p.returncode == 0 and heavy == ""
    assert b"sdc" in p.stdout
    assert elapsed < 5  # loose: importing torch alone takes longer on this machine


def test_inspect_and_truncate_import_nothing_heavy(tmp_path):
    (tmp_path / "x.sdc").write_bytes(sample_bytes())
    p, heavy, _ = run_probe(["inspect", "x.sdc"], tmp_path)
    assert p.returncode == 0 and heavy == "", p.stderr.decode()
    assert b"dog" in p.stdout
    p, heavy, _ = run_probe(["inspect", "--json", "-"], tmp_path, input=sample_bytes())
    assert p.returncode == 0 and heavy == "" and json.loads(p.stdout)["width"] == 150
    p, heavy, _ = run_probe(["truncate", "x.sdc", "--levels", "L1", "-o", "y.sdc"], tmp_path)
    assert p.returncode == 0 and heavy == "", p.stderr.decode()
    assert (tmp_path / "y.sdc").stat().st_size < (tmp_path / "x.sdc").stat().st_size
    p, heavy, _ = run_probe(["truncate", "-", "--levels", "L2"], tmp_path, input=sample_bytes())
    assert p.returncode == 0 and heavy == "" and p.stdout[:4] == b"\x89SDC"


def test_python_dash_m_sdc_exit_codes(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def sdc(*args, input=None):
        return subprocess.run([sys.executable, "-m", "sdc", *args], cwd=tmp_path, env=env, input=input,
                              capture_output=True, timeout=60)

    assert sdc("--help").returncode == 0
    p = sdc("inspect", "missing.sdc")
    assert p.returncode == 2 and p.stderr.decode().strip() == "sdc: error: missing.sdc: no such file"
    p = sdc("truncate", "-", "--levels", "L9")
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1
    p = sdc("inspect", "-", input=b"GIF89a" + bytes(30))
    assert p.returncode == 2 and "looks like a GIF" in p.stderr.decode()
    assert b"Traceback" not in p.stderr


@pytest.mark.parametrize("order", ["sdc-first", "pil-first"])
def test_pillow_plugin_registered_in_either_import_order(tmp_path, order):
    (tmp_path / "x.sdc").write_bytes(sample_bytes())
    first, second = ("import sdc", "from PIL import Image") if order == "sdc-first" else \
        ("from PIL import Image", "import sdc")
    code = (f"import sys\n{first}\n"
            "assert ('PIL.Image' in sys.modules) == " + repr(order == "pil-first") + "\n"
            f"{second}\nfrom PIL import Image\n"
            "im = Image.open('x.sdc')\n"
            "print(im.format, im.size, im.info['sdc']['metadata']['analyzer'])\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().split() == ["SDC", "(150,", "70)", "test(fixed)"]
