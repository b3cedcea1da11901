"""Composers (sdc.compose): the offline default on real partial decodes, the
diffusion backend on a tiny randomly initialised Stable Diffusion inpainting
pipeline built here and loaded by path, and the error/fallback contract.

The diffusion tests need the `models` extra (diffusers, transformers).
"""
from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

from conftest import REPO, SAMPLE, load_rgb, partial_decode
from sdc.compose import COMPOSERS, DEFAULT_COMPOSER, ComposeFallbackWarning, compose
from sdc.errors import BadInputError, UsageError

def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64))[where] ** 2
    return float(10 * np.log10(255.0**2 / err.mean()))


def grid_blockiness(img: np.ndarray, where: np.ndarray, stride: int = 16) -> float:
    """Mean step across latent-grid lines / mean step elsewhere, inside `where` (1.0 = no grid)."""
    g = img.astype(np.float32).mean(2)
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    mx, my = where[:, 1:] & where[:, :-1], where[1:] & where[:-1]
    cx = np.arange(dx.shape[1]) % stride == stride - 1
    cy = np.arange(dy.shape[0]) % stride == stride - 1
    on = np.concatenate([dx[:, cx][mx[:, cx]], dy[cy][my[cy]]]).mean()
    off = np.concatenate([dx[:, ~cx][mx[:, ~cx]], dy[~cy][my[~cy]]]).mean()
    return float(on / off)


@pytest.fixture(scope="module")
def astronaut_l1(codec):
    """Astronaut (384x384 crop): face = L1, flag strip = L2 decoded; the rest (72 %) missing."""
    from sdc.geometry import latent_shape

    truth = load_rgb(SAMPLE, (384, 384))
    gmap = np.full(latent_shape(384, 384), 3, np.uint8)
    gmap[1:12, 10:18] = 0
    gmap[:, :3] = 1
    decoded, missing = partial_decode(codec, truth, gmap, ("L1", "L2"))
    return truth, decoded, missing


# ------------------------------------------------------------------ contract
def test_names():
    assert COMPOSERS == ("none", "smooth", "learned", "diffusion", "auto")
    assert DEFAULT_COMPOSER in COMPOSERS


def test_unknown_composer_is_a_usage_error(photo_l1):
    _, decoded, missing = photo_l1
    with pytest.raises(UsageError, match="unknown composer 'blur': expected one of none, smooth") as e:
        compose(decoded, missing, composer="blur")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="unknown composer setting"):
        compose(decoded, missing, composer="smooth", config={"sigmaa": 3})


def test_bad_arrays(photo_l1):
    _, decoded, missing = photo_l1
    with pytest.raises(ValueError, match="missing mask"):
        compose(decoded, missing[:-1], composer="smooth")
    with pytest.raises(ValueError, match="uint8"):
        compose(decoded.astype(np.float32), missing, composer="smooth")


@pytest.mark.parametrize("name", ["none", "smooth", "auto", "diffusion"])
def test_nothing_missing_returns_a_copy(photo_l1, name):
    # No hole: no composer loads anything (not even the diffusion weights, which don't exist here).
    _, decoded, _ = photo_l1
    out = compose(decoded, np.zeros(decoded.shape[:2], bool), composer=name,
                  config={"model": "/nonexistent/sdc-model"} if name in ("auto", "diffusion") else None)
    assert out is not decoded and np.array_equal(out, decoded)


def test_importing_is_light():
    import subprocess

    code = ("import sys, numpy as np; from sdc.compose import compose; "
            "compose(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), composer='auto'); "
            "print(sorted(m for m in ('cv2', 'torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_none_returns_input_unchanged(photo_l1):
    _, decoded, missing = photo_l1
    out = compose(decoded, missing, composer="NONE")
    assert out is not decoded and np.array_equal(out, decoded)


# ------------------------------------------------------------------ smooth
@pytest.mark.parametrize("case", ["astronaut_l1", "photo_l1"])
def test_smooth_on_real_partial_decodes(request, case):
    truth, decoded, missing = request.getfixturevalue(case)
    assert 0.3 < missing.mean() < 0.95
    before = decoded.copy()
    out = compose(decoded, missing, composer="smooth")
    assert np.array_equal(decoded, before), "input modified in place"
    assert out.shape == decoded.shape and out.dtype == np.uint8
    assert np.array_equal(out[~missing], decoded[~missing]), "decoded pixels must come back byte-identical"
    changed = np.any(out != decoded, axis=2)[missing].mean()
    assert changed > 0.5, f"only {changed:.0%} of the hole changed"

    flat = decoded.copy()
    flat[missing] = np.rint(decoded[~missing].mean(0)).astype(np.uint8)
    p_out, p_fill, p_flat = psnr(out, truth, missing), psnr(decoded, truth, missing), psnr(flat, truth, missing)
    # Hole PSNR smooth / fill on the astronaut about 18.2 / 18.4 dB, grid blockiness smooth / fill
    # about 1.10 / 1.75 (sigma 4). The smooth composer's settings follow the codec's fill.
    assert p_out > p_flat + 3.0, (p_out, p_flat)
    assert p_out > p_fill - 0.5, (p_out, p_fill)  # deblocking must not cost fidelity
    b_out, b_fill = grid_blockiness(out, missing), grid_blockiness(decoded, missing)
    assert b_out < 1.2 and b_out <= b_fill, (b_out, b_fill)


def test_smooth_is_deterministic_and_configurable(photo_l1):
    _, decoded, missing = photo_l1
    a = compose(decoded, missing, composer="smooth")
    assert np.array_equal(a, compose(decoded, missing, composer="smooth"))
    b = compose(decoded, missing, composer="smooth", config={"sigma": 2})
    assert not np.array_equal(a, b) and np.array_equal(b[~missing], decoded[~missing])
    with pytest.raises(UsageError, match="unknown composer setting"):  # the Telea cross-fade is gone
        compose(decoded, missing, composer="smooth", config={"fade": 8})


def test_smooth_edge_cases():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    everything = np.ones(img.shape[:2], bool)
    out = compose(img, everything, composer="smooth")  # no decoded pixel at all: just deblocks
    assert out.shape == img.shape and out.std() < img.std()
    corner = np.zeros(img.shape[:2], bool)
    corner[:5, -4:] = True  # touches two borders
    out = compose(img, corner, composer="smooth")
    assert np.array_equal(out[~corner], img[~corner])
    tiny = compose(img[:1, :1], np.ones((1, 1), bool), composer="smooth")
    assert tiny.shape == (1, 1, 3)


# ------------------------------------------------------------------ diffusion: unavailable
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_diffusion_without_weights_is_a_one_line_bad_input(photo_l1, tmp_path):
    _, decoded, missing = photo_l1
    for model in ("sdc-tests/no-such-inpainting-model", "/nonexistent/sdc-model"):
        with pytest.raises(BadInputError, match="is not available locally.*SDC_DIFFUSION_MODEL") as e:
            compose(decoded, missing, composer="diffusion", caption="x", config={"model": model})
        assert "\n" not in str(e.value) and model in str(e.value)
    with pytest.raises(BadInputError, match="could not be loaded") as e:  # a directory, but no pipeline in it
        compose(decoded, missing, composer="diffusion", config={"model": str(tmp_path)})
    assert "\n" not in str(e.value)


def test_auto_falls_back_to_the_offline_default_with_a_warning(photo_l1):
    _, decoded, missing = photo_l1
    assert DEFAULT_COMPOSER == "learned"
    with pytest.warns(ComposeFallbackWarning, match="composer 'auto'.*not available locally.*using 'learned'"):
        out = compose(decoded, missing, composer="auto", config={"model": "/nonexistent/sdc-model"})
    assert np.array_equal(out, compose(decoded, missing, composer="learned"))


def test_diffusion_without_diffusers_says_how_to_install(photo_l1, monkeypatch):
    from sdc.compose.diffusion import load_pipeline

    _, decoded, missing = photo_l1
    load_pipeline.cache_clear()
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    try:
        with pytest.raises(BadInputError, match=r"pip install 'sdc\[models\]'"):
            compose(decoded, missing, composer="diffusion")
        with pytest.warns(ComposeFallbackWarning, match="needs diffusers"):
            compose(decoded, missing, composer="auto")
    finally:
        load_pipeline.cache_clear()


def test_diffusion_settings_are_checked_before_loading(photo_l1):
    _, decoded, missing = photo_l1
    for bad in ({"strength": 0}, {"steps": 0}, {"size": "big"}, {"dtype": "int8"}):
        with pytest.raises(UsageError, match="diffusion composer"):
            compose(decoded, missing, composer="auto", config={"model": "/nonexistent/sdc-model", **bad})


def test_work_size_is_a_multiple_of_8():
    from sdc.compose.diffusion import work_size

    assert work_size(512, 768, 512) == (344, 512)
    assert work_size(136, 200, 64) == (40, 64)
    assert work_size(1, 1000, 512) == (8, 512)
    for h, w in [(37, 23), (200, 136), (1080, 1920)]:
        assert all(s % 8 == 0 and s >= 8 for s in work_size(h, w, 512))


# ------------------------------------------------------------------ diffusion: tiny model
@pytest.fixture(scope="module")
def tiny_sd_inpaint(tmp_path_factory):
    """A randomly initialised, few-kB Stable Diffusion inpainting pipeline saved to disk."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("tiny_sd")
    # Character-level CLIP BPE vocabulary (no merges), written locally: no hub access.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (root / "tok").mkdir()
    (root / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tok", model_max_length=16)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=9, out_channels=4,  # 4 noisy latents + 1 mask + 4 masked-image latents
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "model")
    return str(root / "model")


@pytest.fixture
def diffusion_config(tiny_sd_inpaint):
    return {"model": tiny_sd_inpaint, "steps": 2, "size": 32, "strength": 1.0, "seed": 1}


def test_diffusion_composer_with_tiny_pipeline(photo_l1, diffusion_config, monkeypatch):
    from sdc.compose.diffusion import load_pipeline

    _, decoded, missing = photo_l1
    pipe = load_pipeline(diffusion_config["model"], False, "cpu", "float32", None)  # the instance compose() uses
    prompts = []
    real_encode_prompt = pipe.encode_prompt

    def spy(prompt, *args, **kwargs):
        prompts.append(prompt)
        return real_encode_prompt(prompt, *args, **kwargs)

    monkeypatch.setattr(pipe, "encode_prompt", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComposeFallbackWarning)
        out = compose(decoded, missing, composer="diffusion", caption="a white tiger", config=diffusion_config)
    assert prompts == ["a white tiger"]
    assert out.shape == decoded.shape and out.dtype == np.uint8
    assert np.array_equal(out[~missing], decoded[~missing])
    assert np.any(out != decoded, axis=2)[missing].mean() > 0.5

    again = compose(decoded, missing, composer="diffusion", caption="a white tiger", config=diffusion_config)
    assert np.array_equal(out, again), "seeded: same input, same picture"
    other = compose(decoded, missing, composer="diffusion", caption="a red bus", config=diffusion_config)
    assert prompts[-1] == "a red bus"
    assert not np.array_equal(out[missing], other[missing]), "the caption must steer the result"
    assert np.array_equal(other[~missing], decoded[~missing])


def test_auto_uses_diffusion_when_weights_are_there(photo_l1, diffusion_config):
    _, decoded, missing = photo_l1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComposeFallbackWarning)
        auto = compose(decoded, missing, composer="auto", caption="a cat", config=diffusion_config)
    assert np.array_equal(auto, compose(decoded, missing, composer="diffusion", caption="a cat",
                                        config=diffusion_config))
    assert not np.array_equal(auto, compose(decoded, missing, composer="smooth"))


def test_diffusion_model_from_environment(photo_l1, tiny_sd_inpaint, monkeypatch):
    _, decoded, missing = photo_l1
    monkeypatch.setenv("SDC_DIFFUSION_MODEL", tiny_sd_inpaint)
    out = compose(decoded, missing, composer="diffusion", caption="a cat", config={"steps": 1, "size": 32})
    assert np.array_equal(out[~missing], decoded[~missing])


# ------------------------------------------------------------------ diffusion: ControlNet (DISCOVER)
@pytest.fixture(scope="module")
def tiny_controlnet(tmp_path_factory):
    """A randomly initialised ControlNet that fits the tiny inpainting model (its latents, its
    text encoder, the VAE's stride 2), saved to disk."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(1)
    controlnet = ControlNetModel(
        in_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), cross_attention_dim=16, attention_head_dim=4,
        conditioning_embedding_out_channels=(8, 16))
    # A random ControlNet starts with zero output convolutions (it changes nothing);
    # give them weights so that the conditioning image visibly steers the result.
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.normal_(0, 0.5)
    root = tmp_path_factory.mktemp("tiny_controlnet") / "controlnet"
    controlnet.save_pretrained(root)
    return str(root)


def test_discover_composition_conditions_on_the_decoded_picture(photo_l1, diffusion_config, tiny_controlnet,
                                                                monkeypatch):
    """With a ControlNet, the decoded picture (hole filled by "smooth") conditions the generation:
    another decode gives another fill; decoded pixels stay; seeded; env and config both name it."""
    from sdc.compose.diffusion import load_pipeline

    _, decoded, missing = photo_l1
    config = dict(diffusion_config, controlnet=tiny_controlnet)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComposeFallbackWarning)
        out = compose(decoded, missing, composer="diffusion", caption="a cat", config=config)
    pipe = load_pipeline(config["model"], False, "cpu", "float32", tiny_controlnet)
    assert type(pipe).__name__ == "StableDiffusionControlNetInpaintPipeline"
    assert np.array_equal(out[~missing], decoded[~missing])
    assert np.array_equal(out, compose(decoded, missing, composer="diffusion", caption="a cat", config=config))
    plain = compose(decoded, missing, composer="diffusion", caption="a cat", config=diffusion_config)
    assert not np.array_equal(out[missing], plain[missing]), "the ControlNet must change the fill"
    darker = (decoded // 2).astype(np.uint8)  # the same hole, another received picture
    other = compose(darker, missing, composer="diffusion", caption="a cat", config=config)
    assert not np.array_equal(other[missing], out[missing])
    monkeypatch.setenv("SDC_DIFFUSION_CONTROLNET", tiny_controlnet)
    assert np.array_equal(compose(decoded, missing, composer="diffusion", caption="a cat", config=diffusion_config),
                          out)


def test_a_missing_controlnet_is_a_one_line_bad_input_naming_it(photo_l1, diffusion_config, tmp_path):
    _, decoded, missing = photo_l1
    absent = str(tmp_path / "no-controlnet")
    with pytest.raises(BadInputError, match="ControlNet .*no-controlnet.* SDC_DIFFUSION_CONTROLNET or config "
                                            "'controlnet'") as err:
        compose(decoded, missing, composer="diffusion", config=dict(diffusion_config, controlnet=absent))
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="control_scale"):
        compose(decoded, missing, composer="diffusion", config=dict(diffusion_config, control_scale=-1))
