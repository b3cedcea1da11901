"""Big-model backends on tiny random models of the real architectures (built here, loaded by path or
from a Hugging Face cache layout): Grounding DINO, OWLv2, SAM (segment-anything and transformers)."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import analysis_tiny_models as tiny
from sdc.analysis import analyze
from sdc.analysis.tasks import PEOPLE_LABELS
from sdc.errors import UsageError

from conftest import DARKNET, SHARED

pytestmark = pytest.mark.usefixtures("one_thread", "isolated_analysis")

IMG = SHARED / "data" / "coco128" / "train2017" / "000000000036.jpg"


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("tiny")
    return {"gdino": tiny.grounding_dino(root / "gdino"), "owlv2": tiny.owlv2(root / "owlv2"),
            "sam_hf": tiny.sam_hf(root / "sam_hf"), "sam_pth": tiny.sam_checkpoint(root / "sam_tiny.pth")}


def in_hf_cache(tmp_path: Path, repo: str, src: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / ("models--" + repo.replace("/", "--"))
    shutil.copytree(src, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def image() -> Image.Image:
    return Image.open(IMG)


def test_grounding_dino_by_path_with_task_labels(models):
    a = analyze(image(), analyzer="grounding-dino", task="people",
                config={"grounding_model": str(models["gdino"]), "box_threshold": 0.0, "text_threshold": 0.0,
                        "masks": "box", "max_objects": 5})
    assert a.analyzer == "grounding-dino(gdino)/box/heuristic"
    assert 1 <= len(a.objects) <= 5
    assert all(o.label in PEOPLE_LABELS or o.label == "object" for o in a.objects)
    assert all(0 <= o.box[0] <= o.box[2] <= a.width and 0 <= o.box[1] <= o.box[3] <= a.height for o in a.objects)
    assert all(o.source == "grounding-dino(gdino)" for o in a.objects)


def test_auto_runs_grounding_dino_when_it_is_in_the_hf_cache(models, tmp_path):
    in_hf_cache(tmp_path, "IDEA-Research/grounding-dino-tiny", models["gdino"])
    a = analyze(image(), task="people", config={"box_threshold": 0.0, "text_threshold": 0.0, "max_objects": 3})
    assert a.analyzer.startswith("grounding-dino(grounding-dino-tiny)/")
    assert a.analyzer.endswith("/grabcut/heuristic")  # no SAM weights on the machine
    assert a.objects


def test_owlv2_by_path(models):
    a = analyze(image(), analyzer="owlv2", task="vehicles",
                config={"owlv2_model": str(models["owlv2"]), "box_threshold": 0.0, "masks": "box",
                        "max_objects": 4})
    assert a.analyzer == "owlv2(owlv2)/box/heuristic"
    assert 1 <= len(a.objects) <= 4
    assert all(o.label in a.labels for o in a.objects)


def test_model_failing_at_run_time_falls_back_to_offline(models, monkeypatch, tmp_path):
    from sdc.analysis import grounding

    def broken(self, image, labels):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(grounding.GroundingDetector, "detect", broken)
    in_hf_cache(tmp_path, "IDEA-Research/grounding-dino-tiny", models["gdino"])
    a = analyze(image(), task="people")
    assert a.analyzer.startswith("offline(")
    assert any("grounding-dino failed (CUDA out of memory (simulated))" in w for w in a.warnings)


def test_trust_remote_code_only_when_asked(models, monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoProcessor.from_pretrained

    def spy(*a, **kw):
        seen.append(kw.get("trust_remote_code"))
        return real(*a, **kw)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", spy)
    from sdc.analysis import pipeline

    pipeline._CACHE.clear()  # loaded backends are kept per process; load afresh here
    base = {"grounding_model": str(models["gdino"]), "masks": "box"}
    analyze(image(), analyzer="grounding-dino", task="text", config={**base, "box_threshold": 0.99})
    analyze(image(), analyzer="grounding-dino", task="text",
            config={**base, "box_threshold": 0.98, "trust_remote_code": True})
    assert seen == [False, True]


# -------------------------------------------------------------------- SAM
def test_segment_anything_checkpoint_masks(models):
    a = analyze(image(), analyzer="darknet",
                config={**DARKNET, "masks": "sam", "sam_checkpoint": str(models["sam_pth"]),
                        "sam_arch": tiny.TINY_SAM_ARCH})
    assert a.analyzer == "darknet(yolo-fastest-1.1.weights)/sam(custom)/heuristic"
    masks = [o.mask for o in a.objects if o.mask is not None]
    assert masks and all(m.shape == (a.height, a.width) and m.dtype == bool for m in masks)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_sam_checkpoint_with_pickled_code_is_refused(tmp_path):
    import torch

    bad = tmp_path / "evil.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1), "x": Payload()}, bad)
    with pytest.raises(UsageError, match="refusing to unpickle"):
        analyze(image(), analyzer="darknet", config={**DARKNET, "masks": "sam", "sam_checkpoint": str(bad)})
    junk = tmp_path / "junk.pth"
    junk.write_bytes(pickle.dumps([1, 2, 3]) + b"garbage")
    with pytest.raises(UsageError):
        analyze(image(), analyzer="darknet", config={**DARKNET, "masks": "sam", "sam_checkpoint": str(junk)})


def test_sam_checkpoint_of_unknown_size_needs_a_type(models):
    with pytest.raises(UsageError, match="cannot tell the SAM model type"):
        analyze(image(), analyzer="darknet",
                config={**DARKNET, "masks": "sam", "sam_checkpoint": str(models["sam_pth"])})


def test_transformers_sam_masks(models):
    a = analyze(image(), analyzer="darknet",
                config={**DARKNET, "masks": "sam-hf", "sam_hf_model": str(models["sam_hf"])})
    assert a.analyzer == "darknet(yolo-fastest-1.1.weights)/sam-hf(sam_hf)/heuristic"
    masks = [o.mask for o in a.objects if o.mask is not None]
    assert masks and all(m.shape == (a.height, a.width) for m in masks)
    gm = a.group_map(-(-a.height // 16), -(-a.width // 16))
    assert (gm < 3).any()


def test_sam_failure_at_run_time_uses_grabcut(models, monkeypatch):
    from sdc.analysis import sam

    def broken(self, rgb, objects):
        raise RuntimeError("boom")

    monkeypatch.setattr(sam.TransformersSamMasker, "apply", broken)
    a = analyze(image(), analyzer="darknet",
                config={**DARKNET, "masks": "sam-hf", "sam_hf_model": str(models["sam_hf"])})
    assert "/grabcut/" in a.analyzer and any("boom" in w for w in a.warnings)


def test_auto_uses_sam_from_hf_cache_with_the_big_pipeline(models, tmp_path):
    in_hf_cache(tmp_path, "IDEA-Research/grounding-dino-tiny", models["gdino"])
    in_hf_cache(tmp_path, "facebook/sam-vit-base", models["sam_hf"])
    a = analyze(image(), task="people", config={"box_threshold": 0.0, "text_threshold": 0.0, "max_objects": 3})
    assert a.analyzer == "grounding-dino(grounding-dino-tiny)/sam-hf(sam-vit-base)/heuristic"
    assert any(o.mask is not None for o in a.objects) or all(o.label == "text" for o in a.objects)
    assert isinstance(a.objects[0].mask, (np.ndarray, type(None)))


# ------------------------------------------------------------- local VLM
@pytest.fixture(scope="module")
def qwen(tmp_path_factory, one_thread):
    return tiny.qwen2_vl(tmp_path_factory.mktemp("vlm") / "qwen")


def test_local_vlm_garbage_is_retried_then_heuristic(qwen):
    a = analyze(image(), analyzer="darknet",
                config={**DARKNET, "masks": "box", "ranker": "vlm", "vlm_model": str(qwen), "vlm_max_new_tokens": 16})
    assert a.analyzer == "darknet(yolo-fastest-1.1.weights)/box/heuristic"
    assert any(w.startswith("vlm(qwen): unusable caption answer twice") for w in a.warnings)
    assert any(w.startswith("vlm(qwen): unusable ranking answer twice") for w in a.warnings)
    assert a.objects and all(o.reason.startswith("heuristic:") for o in a.objects)


def test_local_vlm_answers_are_used_when_they_parse(qwen, monkeypatch, tmp_path):
    from sdc.analysis import lmm

    prompts = []

    def chat(self, messages, image=None):
        prompt = messages[0]["content"]
        prompts.append((prompt, image is not None, len(messages)))
        if "Describe this image" in prompt:
            return '{"short": "A person with an umbrella.", "long": "A person holds an umbrella.", "objects": []}'
        return self.real_chat(messages, image)  # garbage for the ranking: one retry, then heuristic

    monkeypatch.setattr(lmm.LocalVLM, "real_chat", lmm.LocalVLM.chat, raising=False)
    monkeypatch.setattr(lmm.LocalVLM, "chat", chat)
    in_hf_cache(tmp_path, "Qwen/Qwen2-VL-2B-Instruct", qwen)  # found by ranker "auto"
    a = analyze(image(), analyzer="darknet", config={**DARKNET, "masks": "box", "vlm_max_new_tokens": 8})
    assert a.caption_short == "A person with an umbrella."
    assert [p[1:] for p in prompts] == [(True, 1), (True, 1), (True, 3)]
    assert "A person with an umbrella." in prompts[1][0]
    assert a.analyzer.endswith("/heuristic") and len(a.warnings) == 1


def test_local_vlm_generation_is_cut_at_the_timeout(qwen):
    import time

    t = time.perf_counter()
    a = analyze(image(), analyzer="darknet",
                config={**DARKNET, "masks": "box", "ranker": "vlm", "vlm_model": str(qwen),
                        "vlm_max_new_tokens": 100000, "lmm_timeout": 0.3})
    assert time.perf_counter() - t < 8  # four generations of at most 0.3 s each, not 100000 tokens
    assert a.analyzer.endswith("/heuristic") and len(a.warnings) == 2


def test_pickled_transformers_checkpoint_is_refused_not_unpickled(models, tmp_path):
    """A model directory holding only pytorch_model.bin (pickle) must not be loaded."""
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "owlv2_bin"
    shutil.copytree(models["owlv2"], pickled)
    # the legacy layout transformers still reads: the same weights as a pickled state dict
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(UsageError) as err:
        analyze(image(), analyzer="owlv2", task="vehicles", config={"owlv2_model": str(pickled), "masks": "box"})
    assert "\n" not in str(err.value)
