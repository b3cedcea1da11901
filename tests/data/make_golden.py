"""Makes tests/data/golden.sdc and golden.json, and checks them without torch.

Why: the entropy coder picks each symbol's table from integers that the
decoder recomputes (integer h_s, channel context, gains). If any machine, BLAS,
thread count or runtime (torch, numpy, ONNX Runtime, a port to another
language) computed one of them differently, the range decoder would desync and
decode garbage. So a small committed file pins the symbols its substreams must
decode to, everywhere; tests/test_golden.py checks them in this process and,
with ``--check``, in a fresh process where torch cannot be imported and BLAS
runs on one thread.

The decoded pixels come from the float synthesis transform, which is
reproducible only for the same runtime on the same kind of CPU; their digest
pins the decoder as built here (torch g_s).

Made with (from the repository root, shipped weights)::

    python tests/data/make_golden.py --source ../shared/data/val/wiki_016.png

golden.sdc: a 96x64 crop of that val image, four levels in a fixed region map
(L1 q8, L2 q5, L3 q3, other q1), no metadata; golden.json: sha256 of the file,
of each substream's decoded symbols (int64, little-endian, C order) and of the
decoded RGB pixels (uint8, H x W x 3).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository's sdc, also when run as a script
GOLDEN_SDC = HERE / "golden.sdc"
GOLDEN_JSON = HERE / "golden.json"
CROP = (208, 224, 96, 64)  # x, y, width, height in the source image
QUALITIES = {"L1": 8, "L2": 5, "L3": 3, "other": 1}
# (4, 8) latent cells: L1 a 2x3 block, L2 beside it, L3 a row below, other the rest.
REGION_MAP = np.array([[3, 0, 0, 0, 1, 1, 3, 3],
                       [3, 0, 0, 0, 1, 1, 3, 3],
                       [2, 2, 2, 2, 2, 2, 3, 3],
                       [3, 3, 3, 3, 3, 3, 3, 3]], dtype=np.uint8)


def array_digest(a: np.ndarray, dtype: str) -> dict:
    """Shape and sha256 of an array's bytes in a fixed dtype and C order."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def symbol_digests(symbols: dict[str, np.ndarray]) -> dict[str, dict]:
    return {name: array_digest(sym, "<i8") for name, sym in sorted(symbols.items())}


def numpy_symbols(data: bytes) -> dict[str, np.ndarray]:
    """The file's symbols through the latent codec alone: numpy, no torch, no synthesis."""
    from safetensors.numpy import load_file

    from sdc.bitstream import read_sdc
    from sdc.levels import LEVELS
    from sdc.models.latent_codec import GroupedLatentCodec
    from sdc.models.weights import MANIFEST_FILE, WEIGHTS_FILE, default_weights_dir, sha256_file

    weights = default_weights_dir()
    manifest = json.loads((weights / MANIFEST_FILE).read_text())
    path = weights / manifest.get("file", WEIGHTS_FILE)
    if sha256_file(path) != manifest["sha256"]:
        raise SystemExit(f"{path} does not match its manifest")
    arch = manifest["architecture"]
    latent = GroupedLatentCodec(load_file(str(path)), int(arch.get("context_slices", 0)))
    sdc = read_sdc(data)
    gmap = sdc.region_map.astype(np.int64)
    qmap = np.array([sdc.header.qualities[lv] for lv in LEVELS])[gmap] - 1
    h, w = gmap.shape
    z = latent.decode_z(sdc.hyperprior, (arch["N"], h // 4, w // 4))
    hp = latent.hyper_params(z, int(qmap.max()), qmap)
    _, symbols = latent.decode_groups(sdc.levels, hp, gmap)
    return {"hyperprior": z, **symbols}


def make(source: Path) -> dict:
    """Encode the crop, write golden.sdc and golden.json, return the JSON."""
    from PIL import Image

    from sdc import pipeline
    from sdc.bitstream import SdcFile, SdcHeader, write_sdc

    x, y, w, h = CROP
    rgb = np.ascontiguousarray(np.asarray(Image.open(source).convert("RGB"))[y:y + h, x:x + w])
    codec = pipeline._codec()
    coded = codec.encode(rgb, REGION_MAP, QUALITIES)
    data = write_sdc(SdcFile(SdcHeader(width=w, height=h, codec_id=codec.codec_id, qualities=QUALITIES),
                             coded.group_map, coded.hyperprior, dict(coded.groups)))
    record = {
        "source": f"{source.name}, crop x={x} y={y} {w}x{h}",
        "qualities": QUALITIES,
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "symbols": symbol_digests(pipeline.decode_symbols(data)),
        "pixels": array_digest(pipeline.decode_sdc(data).rgb, "u1"),
    }
    if symbol_digests(numpy_symbols(data)) != record["symbols"]:
        raise SystemExit("the latent codec alone decodes other symbols than the codec")
    GOLDEN_SDC.write_bytes(data)
    GOLDEN_JSON.write_text(json.dumps(record, indent=1) + "\n")
    return record


def check() -> int:
    """Exit status 0 when golden.sdc decodes to golden.json's symbols without torch."""
    sys.modules["torch"] = None  # any import of torch now fails
    expected = json.loads(GOLDEN_JSON.read_text())["symbols"]
    got = symbol_digests(numpy_symbols(GOLDEN_SDC.read_bytes()))
    if got != expected:
        print(json.dumps({"expected": expected, "got": got}, indent=1))
        return 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="image to crop (makes the files)")
    ap.add_argument("--check", action="store_true", help="decode golden.sdc's symbols without torch and compare")
    args = ap.parse_args(argv)
    if args.check:
        return check()
    if not args.source:
        ap.error("give --source to make the files, or --check")
    record = make(args.source)
    print(f"{GOLDEN_SDC.stat().st_size} bytes, {len(record['symbols'])} substreams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
