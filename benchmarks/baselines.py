"""Conventional codecs for the rate-distortion comparison.

Every codec is ``encode_decode(rgb, param) -> (nbytes, decoded_rgb)`` where
nbytes is the size of what a decoder needs (the whole file / raw bitstream).

    jpeg  Pillow (libjpeg-turbo), 4:2:0, optimize=True; param = quality
    webp  Pillow (libwebp), method=6 (same as cwebp -m 6); param = quality
    avif  Pillow (libavif + aom), 4:4:4, speed 4, full range; param = quality
    jxl   cjxl/djxl (libjxl), effort 7 (default); param = butteraugli distance
    vvc   VVenC 1.9.1 (../shared/tools/vvenc/vvencFFapp) all-intra, preset medium,
          constant QP, 8-bit 4:2:0; param = QP. RGB -> YCbCr 4:2:0 here (the same
          full-range matrix; chroma by 2x2 means, back by bilinear upsampling),
          the frame padded to multiples of 8 by edge copies. VVenC writes its
          own reconstruction, so no VVC decoder is needed. The count is the
          .266 bitstream.
    hevc  ffmpeg + libx265 intra, main 4:4:4 8-bit, preset veryslow, tune psnr,
          constant QP; param = QP. RGB -> YCbCr is done here (BT.601 full
          range, the JFIF matrix) so that both directions use the same exact
          matrix; the count is the raw .hevc Annex-B stream (VPS/SPS/PPS +
          slice), without x265's informational SEI (info=0).

All external tools run single-threaded-ish and under the caller's nice level.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# Sweeps wide enough to bracket the sdc curve (about 0.08 .. 1.2 bpp on val; WebP
# cannot go below ~0.14 bpp there, so its BD-rates cover the overlap only).
PARAMS: dict[str, list] = {
    "jpeg": [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "webp": [0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95],
    "avif": [2, 5, 10, 20, 30, 40, 50, 60, 70, 80],
    "jxl": [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 25.0],
    "hevc": [20, 23, 26, 29, 32, 35, 38, 41, 44, 47, 50],
    "vvc": [27, 32, 37, 42, 47, 52],
}

LABELS = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL", "hevc": "HEVC intra (x265 4:4:4)",
          "vvc": "VVC intra (VVenC medium 4:2:0)"}

# What each codec's numbers depend on besides the tool version; part of the cache key.
CONFIG = {
    "jpeg": "pillow jpeg subsampling=4:2:0 optimize=True",
    "webp": "pillow webp method=6",
    "avif": "pillow avif subsampling=4:4:4 speed=4 range=full max_threads=1",
    "jxl": "cjxl -e 7 -d <param>; djxl to png",
    "vvc": "vvencFFapp 1.9.1 preset=medium IntraPeriod=1 qp=<param> yuv420p bt601-full(numpy) pad8-edge bilinear-chroma Threads=1; .266",
    "hevc": "ffmpeg libx265 yuv444p bt601-full(numpy) preset=veryslow tune=psnr qp=<param> keyint=1 info=0 pools=1 frame-threads=1; raw .hevc",
}


def _pil_roundtrip(rgb: np.ndarray, fmt: str, **kw) -> tuple[int, np.ndarray]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        out = np.asarray(im.convert("RGB")).copy()
    return len(data), out


def jpeg(rgb, q):
    return _pil_roundtrip(rgb, "JPEG", quality=int(q), subsampling="4:2:0", optimize=True)


def webp(rgb, q):
    return _pil_roundtrip(rgb, "WEBP", quality=int(q), method=6)


def avif(rgb, q):
    return _pil_roundtrip(rgb, "AVIF", quality=int(q), subsampling="4:4:4", speed=4, range="full", max_threads=1)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()[-500:]}")
    return p


def jxl(rgb, d):
    from PIL import Image

    with tempfile.TemporaryDirectory() as t:
        src, enc, dec = Path(t, "in.png"), Path(t, "out.jxl"), Path(t, "out.png")
        Image.fromarray(rgb).save(src)
        _run(["cjxl", str(src), str(enc), "-d", str(d), "-e", "7", "--num_threads=1"])
        _run(["djxl", str(enc), str(dec), "--num_threads=1"])
        with Image.open(dec) as im:
            out = np.asarray(im.convert("RGB")).copy()
        return enc.stat().st_size, out


# BT.601 full range (JFIF) RGB <-> YCbCr
_M = np.array([[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]])
_MI = np.linalg.inv(_M)


def rgb_to_yuv444p(rgb: np.ndarray) -> bytes:
    ycc = rgb.astype(np.float64) @ _M.T + np.array([0, 128, 128])
    ycc = np.clip(np.round(ycc), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(ycc.transpose(2, 0, 1)).tobytes()  # planar Y, Cb, Cr


def yuv444p_to_rgb(data: bytes, h: int, w: int) -> np.ndarray:
    if len(data) != 3 * h * w:
        raise RuntimeError(f"decoded {len(data)} bytes, expected {3 * h * w} for {w}x{h} yuv444p")
    ycc = np.frombuffer(data, np.uint8).reshape(3, h, w).transpose(1, 2, 0).astype(np.float64)
    rgb = (ycc - np.array([0, 128, 128])) @ _MI.T
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def hevc(rgb, qp):
    h, w = rgb.shape[:2]
    params = f"qp={int(qp)}:keyint=1:info=0:pools=1:frame-threads=1:log-level=error"
    with tempfile.TemporaryDirectory() as t:
        src, enc, dec = Path(t, "in.yuv"), Path(t, "out.hevc"), Path(t, "out.yuv")
        src.write_bytes(rgb_to_yuv444p(rgb))
        _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv444p",
              "-s", f"{w}x{h}", "-i", str(src), "-frames:v", "1", "-c:v", "libx265", "-preset", "veryslow",
              "-tune", "psnr", "-x265-params", params, "-f", "hevc", str(enc)])
        _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-threads", "1", "-i", str(enc),
              "-f", "rawvideo", "-pix_fmt", "yuv444p", str(dec)])
        out = yuv444p_to_rgb(dec.read_bytes(), h, w)
        return enc.stat().st_size, out


def vvenc_path() -> Path:
    from common import SHARED

    return SHARED / "tools" / "vvenc" / "vvencFFapp"


def rgb_to_yuv420p(rgb: np.ndarray) -> bytes:
    """Planar 8-bit Y, Cb, Cr (JFIF matrix), chroma as the mean of each 2x2 block; even sides."""
    h, w = rgb.shape[:2]
    ycc = rgb.astype(np.float64) @ _M.T + np.array([0, 128, 128])
    c = ycc[:, :, 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    planes = [ycc[:, :, 0], c[:, :, 0], c[:, :, 1]]
    return b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def _upsample2(c: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling with sample centres at (2i + 0.5): the inverse siting of 2x2 means."""
    p = np.pad(c, 1, mode="edge")
    out = np.empty((2 * c.shape[0], 2 * c.shape[1]))
    for dy in (0, 1):
        for dx in (0, 1):
            ny, nx = (0, 2)[dy], (0, 2)[dx]  # the neighbour row/column on this phase's side
            a = p[1:-1, 1:-1]
            v = p[ny:ny + c.shape[0], 1:-1]
            hz = p[1:-1, nx:nx + c.shape[1]]
            d = p[ny:ny + c.shape[0], nx:nx + c.shape[1]]
            out[dy::2, dx::2] = (9 * a + 3 * v + 3 * hz + d) / 16
    return out


def yuv420p_to_rgb(data: bytes, h: int, w: int) -> np.ndarray:
    n, hc, wc = h * w, h // 2, w // 2
    if len(data) != n + 2 * hc * wc:
        raise RuntimeError(f"reconstruction is {len(data)} bytes, expected {n + 2 * hc * wc} for {w}x{h} yuv420p")
    a = np.frombuffer(data, np.uint8).astype(np.float64)
    y = a[:n].reshape(h, w)
    cb = _upsample2(a[n:n + hc * wc].reshape(hc, wc))
    cr = _upsample2(a[n + hc * wc:].reshape(hc, wc))
    rgb = (np.stack([y, cb, cr], -1) - np.array([0, 128, 128])) @ _MI.T
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def vvc(rgb, qp):
    h, w = rgb.shape[:2]
    h8, w8 = -(-h // 8) * 8, -(-w // 8) * 8
    padded = np.pad(rgb, ((0, h8 - h), (0, w8 - w), (0, 0)), mode="edge")
    with tempfile.TemporaryDirectory() as t:
        src, enc, rec = Path(t, "in.yuv"), Path(t, "out.266"), Path(t, "rec.yuv")
        src.write_bytes(rgb_to_yuv420p(padded))
        _run([str(vvenc_path()), "-i", str(src), "--SourceWidth", str(w8), "--SourceHeight", str(h8), "-fr", "1",
              "-f", "1", "--IntraPeriod", "1", "--InputBitDepth", "8", "--InternalBitDepth", "8",
              "--OutputBitDepth", "8", "--preset", "medium", "-q", str(int(qp)), "-b", str(enc), "-o", str(rec),
              "--Threads", "1", "--verbosity", "0"])
        out = yuv420p_to_rgb(rec.read_bytes(), h8, w8)[:h, :w]
        return enc.stat().st_size, np.ascontiguousarray(out)


CODECS = {"jpeg": jpeg, "webp": webp, "avif": avif, "jxl": jxl, "hevc": hevc, "vvc": vvc}


def available(name: str) -> str | None:
    """None when the codec can run here, else why not."""
    from PIL import features

    if name == "webp" and not features.check("webp"):
        return "Pillow built without WebP"
    if name == "avif" and not features.check("avif"):
        return "Pillow built without AVIF (Pillow >= 11.3 wheels have it)"
    if name == "jxl":
        missing = [t for t in ("cjxl", "djxl") if not shutil.which(t)]
        if missing:
            return f"{', '.join(missing)} not found (apt-get install libjxl-tools)"
    if name == "vvc" and not vvenc_path().is_file():
        return f"{vvenc_path()} not found (set SDC_SHARED)"
    if name == "hevc":
        if not shutil.which("ffmpeg"):
            return "ffmpeg not found (apt-get install ffmpeg)"
        enc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
        if "libx265" not in enc:
            return "ffmpeg has no libx265"
    return None


def tool_version(name: str) -> str:
    from PIL import __version__ as pil, features

    if name == "jpeg":
        return f"Pillow {pil}, libjpeg-turbo {features.version('libjpeg_turbo')}"
    if name == "webp":
        return f"Pillow {pil}, libwebp {features.version('webp')}"
    if name == "avif":
        from PIL import AvifImagePlugin

        return f"Pillow {pil}, libavif {features.version('avif')} ({AvifImagePlugin._avif.codec_versions()})"
    if name == "jxl":
        return _run(["cjxl", "--version"]).stdout.splitlines()[0].strip()
    if name == "vvc":
        p = subprocess.run([str(vvenc_path()), "--version"], capture_output=True, text=True)
        m = re.search(r"version (\d+\.\d+\.\d+)", p.stdout + p.stderr)
        return f"VVenC {m.group(1) if m else 'unknown'}"
    if name == "hevc":
        ff = " ".join(_run(["ffmpeg", "-version"]).stdout.split()[:3])  # "ffmpeg version X"
        x265 = ""
        with tempfile.TemporaryDirectory() as t:
            p = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-f", "lavfi", "-i", "color=size=64x64",
                                "-frames:v", "1", "-c:v", "libx265", "-f", "null", "-"],
                               capture_output=True, text=True, cwd=t)
            m = re.search(r"HEVC encoder version (\S+)", p.stderr)
            if m:
                x265 = f", x265 {m.group(1)}"
        return ff + x265
    raise KeyError(name)
