"""Analysis settings: defaults < config file < environment < the `config` argument.

The config file is TOML: `$SDC_CONFIG`, else `$XDG_CONFIG_HOME/sdc/config.toml`
(default `~/.config/sdc/config.toml`). Keys may sit at the top level or in an
`[analysis]` table. Example:

    [analysis]
    analyzer = "auto"                 # or offline, darknet, onnx, grounding-dino, owlv2
    grounding_model = "/models/grounding-dino-tiny"
    sam_checkpoint = "/models/sam_vit_b_01ec64.pth"
    lmm_base_url = "http://127.0.0.1:8000/v1"
    lmm_model = "Qwen/Qwen2.5-VL-7B-Instruct"

    # what the offline analyzer and a user's Darknet/ONNX detector draw
    detector_threshold = 0.1          # unset: 0.15 for the shipped detector, 0.3 for a user's
    detector_input_size = 320
    box_margin = 0.15                 # grow each box by 15% of its width (height) on each side,
    box_margin_px = 8                 # and by at least 8 px
    masks = "box"
    offline_saliency = "fallback"     # salient regions only when the COCO detector finds nothing

Environment: SDC_ANALYZER, SDC_LMM_BASE_URL (or OPENAI_BASE_URL), SDC_LMM_MODEL,
SDC_LMM_API_KEY (or OPENAI_API_KEY), SDC_LMM_TIMEOUT, SDC_VLM_MODEL,
SDC_GROUNDING_MODEL, SDC_SAM_CHECKPOINT, SDC_ALLOW_DOWNLOAD.
"""
from __future__ import annotations

import os
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

from sdc.errors import UsageError

DEFAULTS: dict = {
    "analyzer": "auto",
    # masks: auto, box, grabcut, sam, sam-hf. auto: SAM when a big-model pipeline runs and
    # SAM's weights are present, GrabCut for its boxes when they are not, and the box itself
    # for a detector's boxes (offline, darknet, onnx): task models need the context around
    # an object, and on coco128 GrabCut masks cover 84% of the objects where boxes cover 93%.
    "masks": "auto",
    # ranker: auto (an LMM when one is configured/present, else heuristic), heuristic, openai, vlm
    "ranker": "auto",
    "grounding_model": "IDEA-Research/grounding-dino-tiny",
    "owlv2_model": "google/owlv2-base-patch16-ensemble",
    "box_threshold": 0.30,
    "text_threshold": 0.25,
    "sam_checkpoint": None,  # segment-anything .pth (loaded with weights_only=True)
    "sam_model_type": None,  # vit_b / vit_l / vit_h; inferred from the checkpoint when unset
    "sam_arch": None,  # custom segment-anything architecture (table; see sam.build_sam)
    "sam_hf_model": "facebook/sam-vit-base",
    "vlm_model": None,  # transformers vision-language model id or path, e.g. HuggingFaceTB/SmolVLM-256M-Instruct
    "vlm_max_new_tokens": 768,
    "lmm_base_url": None,  # OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1
    "lmm_model": None,
    "lmm_api_key": None,
    "lmm_timeout": 60.0,  # seconds per endpoint request, or per local VLM generation
    "detector_cfg": None,  # Darknet .cfg
    "detector_weights": None,  # Darknet .weights
    "detector_onnx": None,  # ONNX detector (YOLO-style output)
    "detector_names": None,  # class names, one per line
    "detector_input_size": 320,  # square input side in pixels, a multiple of 32
    # score threshold; None: the detector's own (offline.COCO_THRESHOLD for the shipped one, 0.3 for a user's)
    "detector_threshold": None,
    # every object's box grows by max(box_margin * its width, box_margin_px) on the left and
    # right (height: top and bottom), clipped to the image, before masks are made
    "box_margin": 0.0,
    "box_margin_px": 0.0,
    # salient regions in the offline analyzer: "fallback" (only when the COCO detector finds
    # nothing), "always", "off"
    "offline_saliency": "fallback",
    "max_objects": 40,
    "allow_download": False,  # let transformers fetch weights from the Hugging Face hub
    "trust_remote_code": False,  # pass trust_remote_code=True to transformers (only when asked)
    "device": "cpu",
}

OFFLINE_SALIENCY = ("fallback", "always", "off")

# Vision-language models `ranker = "auto"` uses when one is in the Hugging Face cache
# and no vlm_model is configured (first found wins).
DEFAULT_VLMS = [
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2-VL-2B-Instruct",
    "HuggingFaceTB/SmolVLM-Instruct",
    "HuggingFaceTB/SmolVLM-256M-Instruct",
]

_ENV = {
    "SDC_ANALYZER": "analyzer",
    "SDC_LMM_BASE_URL": "lmm_base_url",
    "SDC_LMM_MODEL": "lmm_model",
    "SDC_LMM_API_KEY": "lmm_api_key",
    "SDC_LMM_TIMEOUT": "lmm_timeout",
    "SDC_VLM_MODEL": "vlm_model",
    "SDC_GROUNDING_MODEL": "grounding_model",
    "SDC_SAM_CHECKPOINT": "sam_checkpoint",
    "SDC_ALLOW_DOWNLOAD": "allow_download",
}


def config_path() -> Path:
    if os.environ.get("SDC_CONFIG"):
        return Path(os.environ["SDC_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sdc" / "config.toml"


def read_config_file(path: Path | None = None) -> dict:
    path = path or config_path()
    if not path.is_file():
        if os.environ.get("SDC_CONFIG"):
            raise UsageError(f"config file {path} (from SDC_CONFIG) does not exist")
        return {}
    if tomllib is None:
        raise UsageError(f"reading the config file {path} needs Python 3.11 or the tomli package")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"config file {path}: {e}") from None
    section = data.get("analysis", data)
    if not isinstance(section, dict):
        raise UsageError(f"config file {path}: [analysis] must be a table")
    return {k: v for k, v in section.items() if not isinstance(v, dict) or k == "sam_arch"}


def _bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def resolve_config(config: dict | None = None, *, read_file: bool = True) -> dict:
    cfg = dict(DEFAULTS)
    if read_file:
        cfg.update(read_config_file())
    for env, key in _ENV.items():
        if os.environ.get(env):
            cfg[key] = os.environ[env]
    if not cfg.get("lmm_base_url") and os.environ.get("OPENAI_BASE_URL"):
        cfg["lmm_base_url"] = os.environ["OPENAI_BASE_URL"]
    if not cfg.get("lmm_api_key") and os.environ.get("OPENAI_API_KEY"):
        cfg["lmm_api_key"] = os.environ["OPENAI_API_KEY"]
    if config:
        cfg.update({k: v for k, v in config.items() if v is not None})
    for key in ("allow_download", "trust_remote_code"):
        cfg[key] = _bool(cfg.get(key))
    for key in ("lmm_timeout", "box_threshold", "text_threshold", "detector_threshold", "box_margin",
                "box_margin_px"):
        if key == "detector_threshold" and cfg[key] is None:
            continue
        try:
            cfg[key] = float(cfg[key])
        except (TypeError, ValueError):
            raise UsageError(f"analysis setting {key} must be a number, got {cfg[key]!r}") from None
    for key in ("max_objects", "detector_input_size", "vlm_max_new_tokens"):
        try:
            cfg[key] = int(cfg[key])
        except (TypeError, ValueError):
            raise UsageError(f"analysis setting {key} must be an integer, got {cfg[key]!r}") from None
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: dict) -> None:
    t = cfg["detector_threshold"]
    if t is not None and not 0.0 < t < 1.0:
        raise UsageError(f"analysis setting detector_threshold must be between 0 and 1, got {t}")
    size = cfg["detector_input_size"]
    if size < 32 or size % 32:
        raise UsageError(f"analysis setting detector_input_size must be a multiple of 32, got {size}")
    for key in ("box_margin", "box_margin_px"):
        if not 0.0 <= cfg[key] < float("inf"):
            raise UsageError(f"analysis setting {key} must be a non-negative number, got {cfg[key]}")
    if cfg["offline_saliency"] not in OFFLINE_SALIENCY:
        raise UsageError(f"analysis setting offline_saliency must be one of {', '.join(OFFLINE_SALIENCY)}, "
                         f"got {cfg['offline_saliency']!r}")


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface" / "hub"


def model_available(name_or_path: str | None) -> bool:
    """True when a transformers model is on this machine: a local directory with a
    config.json, or a Hugging Face cache snapshot holding config.json and weights.
    Never touches the network and imports nothing heavy."""
    if not name_or_path:
        return False
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return (p / "config.json").is_file()
    if p.exists() or "/" not in name_or_path or name_or_path.count("/") != 1:
        return False
    repo = hf_cache_dir() / ("models--" + name_or_path.replace("/", "--")) / "snapshots"
    if not repo.is_dir():
        return False
    for snap in repo.iterdir():
        if (snap / "config.json").exists() and (
                any(snap.glob("*.safetensors")) or any(snap.glob("*.bin"))):
            return True
    return False


def hf_kwargs(cfg: dict, *, remote_code: bool = True) -> dict:
    """from_pretrained arguments: no download unless allowed, the same cache `model_available`
    looks in, and trust_remote_code only when the config asks for it."""
    kw = {"local_files_only": not cfg.get("allow_download", False), "cache_dir": str(hf_cache_dir())}
    if remote_code:
        kw["trust_remote_code"] = bool(cfg.get("trust_remote_code", False))
    return kw


def hf_model_kwargs(cfg: dict, *, remote_code: bool = True) -> dict:
    """:func:`hf_kwargs` for model weights: safetensors only, so a downloaded or user-given
    checkpoint is never unpickled (a pytorch_model.bin is refused, not loaded)."""
    return {**hf_kwargs(cfg, remote_code=remote_code), "use_safetensors": True}
