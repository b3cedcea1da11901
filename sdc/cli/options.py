"""Options several commands share, and the parsing of option values into API arguments.

Only click and sdc's light modules are imported here: the options must be
built without importing the analysis or the codec.
"""
from __future__ import annotations

import click

from sdc.errors import UsageError
from sdc.levels import DEFAULT_QUALITY, LEVELS, parse_levels

# Same values as sdc.bitstream.DEFAULT_MAX_PIXELS and sdc.analysis.ANALYZERS (a test
# checks both): repeated so that building the command line imports neither.
DEFAULT_MAX_PIXELS = 1 << 26
ANALYZERS = ("auto", "offline", "darknet", "onnx", "grounding-dino", "owlv2")


def max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                        show_default=True, help="Refuse images larger than this many pixels.")(f)


def force_option(f):
    return click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")(f)


def batch_options(f):
    """--jobs, --ray, --manifest, --skip-existing and --from-list: what a batch of many inputs needs."""
    f = click.option("--manifest", metavar="FILE",
                     help="Append one JSON line per finished input to FILE (src, dst, status, error, seconds). "
                          "Default with --ray and an -o directory: sdc-batch-manifest.jsonl in it.")(f)
    f = click.option("--ray", "ray", metavar="ADDRESS",
                     help="Run the batch on Ray (pip install \"sdc[dist]\"): 'local' starts Ray on this "
                          "machine, else the address of a cluster (host:port, or 'auto'), whose machines "
                          "read the inputs and write the outputs at the same paths.")(f)
    f = click.option("--from-list", "from_list", metavar="FILE",
                     help="Also read input paths from FILE, one per line ('-': stdin).")(f)
    f = click.option("--skip-existing", is_flag=True,
                     help="Leave out inputs whose output exists (resume a batch that was cut short).")(f)
    return click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                        help="Code N inputs at once, each in its own process (models load once per process).")(f)


def check_batch_runner(jobs: int, ray: str | None) -> None:
    """--ray and --jobs N exclude each other (Ray sizes its own pool), and --ray needs Ray
    installed; checked before any work. Ray is imported only here, when --ray is given."""
    if ray is None:
        return
    if jobs > 1:
        raise UsageError(f"--ray and --jobs {jobs} exclude each other: Ray runs one worker per CPU of the cluster")
    if not ray.strip():
        raise UsageError("--ray needs an address: 'local', 'auto' or host:port")
    from sdc.batch.ray_runner import import_ray

    import_ray()


def quiet_option(f):
    return click.option("--quiet", is_flag=True, help="No summary table.")(f)


def analyzer_option(f):
    return click.option("--analyzer", default="auto", show_default=True, metavar="NAME",
                        help=f"Analyzer to run: {', '.join(ANALYZERS)}. 'auto' takes the config's "
                             "choice, else the big-model pipeline when its weights are here, else a "
                             "configured detector, else 'offline' (spec/ANALYSIS.md).")(f)


def lmm_options(f):
    """--lmm-url / --lmm-model: the captioning and ranking LMM for this run (over the config
    and the environment). The API key stays in SDC_LMM_API_KEY or the config file: a
    command line is visible to every user of the machine."""
    f = click.option("--lmm-model", metavar="NAME", help="Model name to ask for at --lmm-url.")(f)
    return click.option("--lmm-url", metavar="URL", help="OpenAI-compatible endpoint that writes the captions "
                        "and ranks the objects, e.g. http://127.0.0.1:8000/v1.")(f)


def analysis_config(lmm_url: str | None, lmm_model: str | None) -> dict | None:
    """Config overrides from the LMM options. An endpoint named on the command line is used
    (ranker "openai") even with --analyzer offline, which otherwise keeps everything local."""
    cfg = {"lmm_base_url": lmm_url, "lmm_model": lmm_model, "ranker": "openai" if lmm_url else None}
    return {k: v for k, v in cfg.items() if v} or None


def parse_level_option(text: str, option: str) -> tuple[str, ...]:
    """"L1,L2" or "all" -> level names, or a UsageError naming the option."""
    try:
        return parse_levels(text)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def parse_quality_options(q: int | None, spec: str | None) -> int | dict[str, int] | None:
    """`-q N` and `--quality L1=7,other=2` -> the API's `quality`: -q alone as it is (None when
    absent); with --quality, every level's quality by hand, -q (or the default) for the levels
    it does not name. Ranges against the codec are checked by sdc.api."""
    if q is not None and q < 1:
        raise UsageError(f"-q {q}: quality must be at least 1")
    if spec is None:
        return q
    qualities = {lv: DEFAULT_QUALITY if q is None else q for lv in LEVELS}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"--quality {spec!r}: expected LEVEL=N[,LEVEL=N...], e.g. L1=7,other=2")
        try:
            (level,) = parse_levels(name)
        except ValueError:
            raise UsageError(f"--quality: unknown level {name.strip()!r}: expected one of "
                             f"{', '.join(LEVELS)}") from None
        try:
            qualities[level] = int(value)
        except ValueError:
            raise UsageError(f"--quality: {value.strip()!r} for {level} is not an integer") from None
        if qualities[level] < 1:
            raise UsageError(f"--quality: quality for {level} must be at least 1")
    return qualities
