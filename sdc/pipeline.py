"""From pixels to an .sdc file and back: analysis + codec + container.

The CLI, the Pillow plugin and the benchmarks all go through these two
functions, so every tool reports the same thing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sdc.bitstream import SdcFile, SdcHeader, codec_id_matches, read_sdc, write_sdc, DEFAULT_MAX_PIXELS
from sdc.errors import CodecMismatchError, UsageError
from sdc.levels import DEFAULT_QUALITY, LEVELS, OBJECT_LEVELS


@dataclass
class EncodeResult:
    data: bytes  # the whole .sdc file
    analysis: object  # sdc.analysis.Analysis used for the region map
    seconds: float
    timings: dict = field(default_factory=dict)


@dataclass
class DecodeResult:
    rgb: np.ndarray  # (H, W, 3) uint8, at the display size when the file has one
    decoded_levels: tuple[str, ...]
    missing_levels: tuple[str, ...]  # asked for (or written) but not in these bytes
    sdc: SdcFile
    composer: str | None = None
    seconds: float = 0.0


def _codec():
    from sdc.models.codec import default_codec

    return default_codec()


def refine_steps(effort: int) -> dict[str, int | tuple[int, ...]]:
    """SDCCodec.encode's refinement arguments (joint_steps, refine_steps) for an effort."""
    from sdc.models.effort import EFFORT_STEPS

    if effort not in EFFORT_STEPS:
        raise UsageError(f"effort must be {min(EFFORT_STEPS)}..{max(EFFORT_STEPS)}, got {effort}")
    joint, latent = EFFORT_STEPS[effort]
    if joint or latent:  # refinement runs on torch: say so before any analysis or file is touched
        from importlib.util import find_spec

        from sdc.models.codec import require_torch

        if find_spec("torch") is None:
            require_torch("encoder refinement (--effort 2 and up)")
    return {"joint_steps": joint, "refine_steps": latent}


def check_qualities(qualities: dict[str, int], num_qualities: int) -> dict[str, int]:
    """Every level's quality (DEFAULT_QUALITY where none is given), each in 1..num_qualities."""
    q = {lv: int(qualities.get(lv, DEFAULT_QUALITY)) for lv in LEVELS}
    bad = {lv: v for lv, v in q.items() if not 1 <= v <= num_qualities}
    if bad:
        raise UsageError(f"quality must be 1..{num_qualities}: got {', '.join(f'{k}={v}' for k, v in bad.items())}")
    return q


def _analyze_or_fallback(image, analyzer: str, task: str | None, config: dict | None = None):
    """sdc.analysis.analyze; an unexpected failure in it (a backend's bug, a model
    crashing in a way the analysis does not catch) must not lose the encode: the
    image is then coded without regions, everything "other", with a warning.
    Errors about the request itself (SdcError: unknown analyzer, a named backend
    missing) still stop it."""
    from sdc.analysis import analyze
    from sdc.analysis.core import Analysis
    from sdc.errors import SdcError

    try:
        return analyze(image, analyzer=analyzer, task=task, config=config)
    except SdcError:
        raise
    except Exception as e:  # noqa: BLE001
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        return Analysis(width=image.width, height=image.height, objects=[], analyzer="none (analysis failed)",
                        task=task, warnings=[f"analysis failed ({msg}); coded without regions (all 'other')"])


def encode_image(rgb: np.ndarray, *, q: int | None = None, qualities: dict[str, int] | None = None,
                 keep_levels: tuple[str, ...] = LEVELS, analysis=None, analyzer: str = "auto",
                 task: str | None = None, analysis_config: dict | None = None, include_meta: bool = True,
                 effort: int = 1, preset=None) -> EncodeResult:
    """Analyse (unless `analysis` is given), code and pack one RGB uint8 image.

    q: one quality for the whole file. With a `task` (or an explicit `preset`,
    :mod:`sdc.task_coding`) the task's preset turns q into each level's quality,
    decides what becomes of the background and draws the objects' regions.
    qualities: each level's quality by hand instead (then no preset applies;
    the task still steers the analysis).
    effort: 1 codes g_a's latent as it is; 2 and 3 refine it first
    (:data:`sdc.models.effort.EFFORT_STEPS`), slower and smaller at the same quality.
    """
    from PIL import Image

    from sdc.geometry import latent_shape

    t0 = time.perf_counter()
    codec = _codec()
    if qualities is not None and q is not None:
        raise UsageError("give one quality (q) or each level's qualities, not both")
    if qualities is None:
        q = DEFAULT_QUALITY if q is None else int(q)
        check_qualities({"L1": q}, codec.num_qualities)
    preset = coding_preset(qualities, task, preset)
    steps = refine_steps(effort)
    height, width = rgb.shape[:2]
    if analysis is None:
        analysis = analyze_for_encode(rgb, analyzer, task, analysis_config, preset)
    t1 = time.perf_counter()
    display_size, coded_analysis = None, analysis
    coded_size = _coded_size(width, height, preset.coding_point(q, codec.num_qualities)[0]) if preset else None
    if coded_size is not None:
        # The preset codes a smaller picture (a task model's input is small); the
        # analysis ran on the full one, where small objects are easier to find.
        display_size = (width, height)
        width, height = coded_size
        rgb = np.asarray(Image.fromarray(rgb).resize(coded_size, Image.LANCZOS))
        coded_analysis = analysis.scaled(width, height)
    group_map, qualities, coded_levels, flat = _coding_plan(
        coded_analysis, latent_shape(height, width), q, qualities, preset, codec.num_qualities)
    keep = tuple(lv for lv in coded_levels if lv in keep_levels)
    coded = codec.encode(rgb, group_map, qualities, levels=keep, flat_hyperprior=flat, **steps)
    t2 = time.perf_counter()
    # A level without a single cell in the region map has nothing to code: it is
    # left out of the file and of levels_written (readers then neither decode nor
    # report it missing), as is a level the task's preset does not code.
    owned = levels_with_cells(coded.group_map)
    written = tuple(lv for lv in coded_levels if lv in owned)
    sdc = SdcFile(
        header=SdcHeader(width=width, height=height, codec_id=codec.codec_id, qualities=qualities),
        region_map=coded.group_map,
        hyperprior=coded.hyperprior,
        levels={lv: data for lv, data in coded.groups.items() if lv in written},
        metadata=coded_analysis.metadata() if include_meta else None,
        missing_levels=tuple(lv for lv in written if lv not in keep),
        display_size=display_size,
    )
    data = write_sdc(sdc)
    t3 = time.perf_counter()
    return EncodeResult(data, analysis, t3 - t0, {"analysis": t1 - t0, "codec": t2 - t1, "container": t3 - t2})


def coding_preset(qualities: dict[str, int] | None, task: str | None, preset=None):
    """The task preset encode_image codes with: none when each level's quality is given by hand."""
    if qualities is not None:
        return None
    if preset is not None:
        return preset
    from sdc.task_coding import preset_for

    return preset_for(task)


def analyze_for_encode(rgb: np.ndarray, analyzer: str = "auto", task: str | None = None,
                       analysis_config: dict | None = None, preset=None):
    """The analysis encode_image codes `rgb` with when it is given none (`preset`: its
    :func:`coding_preset`). A caller may run it apart, in another process (sdc.batch on
    Ray: on a GPU worker), and hand the result to encode_image as `analysis`: the same file."""
    from PIL import Image

    config = analysis_config
    if preset is not None and preset.boxes:  # the preset codes boxes: no mask worth computing
        config = {"masks": "box", **(analysis_config or {})}
    return _analyze_or_fallback(Image.fromarray(rgb), analyzer, task, config)


def _coding_plan(analysis, grid: tuple[int, int], q: int | None, qualities: dict[str, int] | None, preset,
                 num_qualities: int) -> tuple[np.ndarray, dict[str, int], tuple[str, ...], bool]:
    """(region map, each level's quality, the levels coded, flat hyperprior) of a coded
    picture: by hand (qualities, or q everywhere) without a preset, else as the preset says."""
    if preset is None:
        qualities = check_qualities(qualities if qualities is not None else {lv: q for lv in LEVELS}, num_qualities)
        return analysis.group_map(*grid), qualities, LEVELS, False
    from sdc.task_coding import shape_regions

    group_map = shape_regions(analysis, preset).group_map(*grid)
    qualities = preset.qualities(q, num_qualities)
    coded_levels, flat = preset.levels(), preset.background == "drop"
    if not levels_with_cells(group_map) & set(OBJECT_LEVELS):
        # Nothing found that the task needs: the analyzer may have missed it, so
        # the whole image is coded rather than nothing.
        qualities["other"], coded_levels, flat = max(qualities.values()), LEVELS, False
    return group_map, qualities, coded_levels, flat


# A picture is coded smaller only if it keeps at least this many pixels on each side.
MIN_CODED_SIDE = 64


def _coded_size(width: int, height: int, scale: float) -> tuple[int, int] | None:
    """(w, h) of the picture coded at `scale`, or None to code it at full size."""
    if scale >= 1:
        return None
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return size if min(size) >= MIN_CODED_SIDE else None


def levels_with_cells(region_map: np.ndarray) -> set[str]:
    """The levels that own at least one cell of a region map (bincount: O(cells), no sort)."""
    counts = np.bincount(np.asarray(region_map, np.intp).ravel(), minlength=len(LEVELS))
    return {lv for lv, n in zip(LEVELS, counts) if n}


def missing_pixel_mask(sdc: SdcFile, decoded: tuple[str, ...]) -> np.ndarray:
    """(H, W) bool: pixels whose level was not decoded (filled from the hyperprior)."""
    from sdc.geometry import cells_to_pixels
    from sdc.levels import LEVEL_INDEX

    have = np.zeros(len(LEVELS), bool)
    for lv in decoded:
        have[LEVEL_INDEX[lv]] = True
    return cells_to_pixels(~have[sdc.region_map], sdc.header.height, sdc.header.width)


def open_sdc(data: bytes, *, levels: tuple[str, ...] | None = None,
             max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Read and check an .sdc byte string against the loaded codec: the decoder's front end
    up to the entropy decoders. Returns (SdcFile, CodedImage of the wanted levels, missing levels).

    Everything a file can get wrong is a BadInputError (FormatError, CodecMismatchError).
    """
    from sdc.models.codec import CodedImage

    sdc = read_sdc(data, max_pixels=max_pixels)
    codec = _codec()
    if not codec_id_matches(sdc.header.codec_id, codec.codec_id):
        raise CodecMismatchError(
            f"file was made with codec {sdc.header.codec_id.hex()}, these weights are codec {codec.codec_id.hex()}; "
            "decode it with the sdc release (weights) that wrote it"
        )
    # The container allows qualities 1..255; these weights know 1..num_qualities.
    bad = {lv: q for lv, q in sdc.header.qualities.items() if q > codec.num_qualities}
    if bad:
        raise CodecMismatchError(
            f"file uses quality {', '.join(f'{lv}={q}' for lv, q in bad.items())}, these weights have "
            f"qualities 1..{codec.num_qualities}; decode it with the sdc release (weights) that wrote it"
        )
    wanted = tuple(levels) if levels else LEVELS
    use = {lv: sdc.levels[lv] for lv in wanted if lv in sdc.levels}
    # Missing: written but not in these bytes; or asked for by name, absent, and
    # owning cells of the map (a level with no cells was never written: nothing lacks).
    owned = levels_with_cells(sdc.region_map) if levels else set()
    missing = tuple(lv for lv in wanted if lv not in sdc.levels and (lv in sdc.missing_levels or lv in owned))
    coded = CodedImage(sdc.header.height, sdc.header.width, sdc.header.qualities, sdc.region_map, sdc.hyperprior, use)
    return sdc, coded, missing


def decode_symbols(data: bytes, *, levels: tuple[str, ...] | None = None,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict[str, np.ndarray]:
    """The entropy-decoded integer symbols of an .sdc byte string (z under "hyperprior",
    then one array per decoded level): bytes to symbols, no synthesis transform."""
    _, coded, _ = open_sdc(data, levels=levels, max_pixels=max_pixels)
    return _codec().decode_symbols(coded)


def decode_sdc(data: bytes, *, levels: tuple[str, ...] | None = None, composer: str | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodeResult:
    """Decode the requested levels (default: all the bytes hold) of an .sdc byte string."""
    t0 = time.perf_counter()
    sdc, coded, missing = open_sdc(data, levels=levels, max_pixels=max_pixels)
    rgb = _codec().decode(coded)
    decoded = tuple(coded.groups)
    if composer and composer != "none":
        from sdc.compose import compose

        meta = sdc.metadata or {}
        caption = next((c for c in (meta.get("caption_short"), meta.get("caption_long")) if isinstance(c, str) and c), "")
        rgb = compose(rgb, missing_pixel_mask(sdc, decoded), composer=composer, caption=caption)
    if sdc.display_size is not None:  # coded smaller than the original (spec/FORMAT.md, DISP)
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize(sdc.display_size, Image.BICUBIC))
    return DecodeResult(rgb, decoded, missing, sdc, composer, time.perf_counter() - t0)
