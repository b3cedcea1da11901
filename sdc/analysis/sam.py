"""SAM masks prompted with the grounded boxes.

- `SegmentAnythingMasker`: the segment-anything package with an official
  checkpoint (.pth). The checkpoint is read with torch.load(weights_only=True)
  into a model built here, so nothing in it is unpickled as code; the model
  type (vit_b / vit_l / vit_h) is read from the weights when not given. A
  custom architecture can be described by `sam_arch` (see `build_sam`).
- `TransformersSamMasker`: transformers SamModel + SamProcessor by id or path.

Both set `mask` on each object (text objects keep their box) and leave it
None when SAM returns an empty mask.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from sdc.errors import UsageError

from .masks import BOX_ONLY_LABELS

PRESETS = {
    "vit_b": {"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12,
              "encoder_global_attn_indexes": [2, 5, 8, 11]},
    "vit_l": {"encoder_embed_dim": 1024, "encoder_depth": 24, "encoder_num_heads": 16,
              "encoder_global_attn_indexes": [5, 11, 17, 23]},
    "vit_h": {"encoder_embed_dim": 1280, "encoder_depth": 32, "encoder_num_heads": 16,
              "encoder_global_attn_indexes": [7, 15, 23, 31]},
}
ARCH_DEFAULTS = {"image_size": 1024, "patch_size": 16, "prompt_embed_dim": 256, "window_size": 14,
                 "decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_num_heads": 8,
                 "iou_head_hidden_dim": 256, "mask_in_chans": 16}


def build_sam(arch: dict):
    """A segment-anything `Sam` with random weights, as `_build_sam` builds it, from an arch dict
    (PRESETS entry plus ARCH_DEFAULTS; every key may be overridden)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    a = {**ARCH_DEFAULTS, **arch}
    emb = a["image_size"] // a["patch_size"]
    d = a["prompt_embed_dim"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a["encoder_depth"], embed_dim=a["encoder_embed_dim"], img_size=a["image_size"],
            mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a["encoder_num_heads"], patch_size=a["patch_size"], qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=list(a["encoder_global_attn_indexes"]),
            window_size=a["window_size"], out_chans=d),
        prompt_encoder=PromptEncoder(embed_dim=d, image_embedding_size=(emb, emb),
                                     input_image_size=(a["image_size"], a["image_size"]),
                                     mask_in_chans=a["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=a["decoder_depth"], embedding_dim=d,
                                          mlp_dim=a["decoder_mlp_dim"], num_heads=a["decoder_num_heads"]),
            transformer_dim=d, iou_head_depth=3, iou_head_hidden_dim=a["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_state_dict(path: str) -> dict:
    """Tensors of a .pth checkpoint, refusing anything that is not plain weights."""
    import pickle

    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"SAM checkpoint not found: {path}") from None
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError, ValueError) as e:
        raise UsageError(f"SAM checkpoint {path} is not a plain weights file (refusing to unpickle it): "
                         f"{' '.join(str(e).split())[:160]}") from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"SAM checkpoint {path} does not hold a state dict of tensors")
    return sd



def _prompt_chunks(objects, batch: int):
    """The objects SAM should refine (box-shaped labels keep their box), `batch` at a time."""
    todo = [o for o in objects if o.label not in BOX_ONLY_LABELS]
    for i in range(0, len(todo), batch):
        yield todo[i:i + batch]

class SegmentAnythingMasker:
    def __init__(self, checkpoint: str, model_type: str | None = None, arch: dict | None = None,
                 batch: int = 16):
        import torch
        from segment_anything import SamPredictor

        sd = load_state_dict(checkpoint)
        if arch is None:
            if model_type is None:
                w = sd.get("image_encoder.patch_embed.proj.weight")
                dim = int(w.shape[0]) if w is not None else -1
                model_type = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}.get(dim)
                if model_type is None:
                    raise UsageError(f"cannot tell the SAM model type of {checkpoint}; set sam_model_type "
                                     "(vit_b, vit_l, vit_h) or sam_arch")
            if model_type not in PRESETS:
                raise UsageError(f"unknown SAM model type {model_type!r}: expected vit_b, vit_l or vit_h")
            arch = PRESETS[model_type]
        sam = build_sam(arch)
        try:
            sam.load_state_dict(sd)
        except RuntimeError as e:
            raise UsageError(f"SAM checkpoint {checkpoint} does not fit the {model_type or 'given'} "
                             f"architecture: {' '.join(str(e).split())[:160]}") from None
        self.torch = torch
        self.predictor = SamPredictor(sam)
        self.batch = batch
        self.name = f"sam({model_type or 'custom'})"

    def apply(self, rgb: np.ndarray, objects) -> None:
        chunks = list(_prompt_chunks(objects, self.batch))
        if not chunks:
            return
        self.predictor.set_image(np.ascontiguousarray(rgb), image_format="RGB")
        h, w = rgb.shape[:2]
        for chunk in chunks:
            boxes = self.torch.tensor([list(o.box) for o in chunk], dtype=self.torch.float32)
            boxes = self.predictor.transform.apply_boxes_torch(boxes, (h, w))
            with self.torch.inference_mode():
                masks, _, _ = self.predictor.predict_torch(None, None, boxes=boxes, multimask_output=False)
            for o, m in zip(chunk, masks[:, 0].cpu().numpy().astype(bool)):
                o.mask = m if m.any() else None


class TransformersSamMasker:
    def __init__(self, model: str, cfg: dict, batch: int = 16):
        import torch
        from transformers import SamModel, SamProcessor

        from .config import hf_kwargs, hf_model_kwargs

        kw = hf_kwargs(cfg, remote_code=False)
        self.processor = SamProcessor.from_pretrained(model, **kw)
        self.model = SamModel.from_pretrained(model, **hf_model_kwargs(cfg, remote_code=False)).eval()
        self.device = cfg.get("device") or "cpu"
        self.model.to(self.device)
        self.torch = torch
        self.batch = batch
        self.name = f"sam-hf({model.rstrip('/').split('/')[-1]})"

    def apply(self, rgb: np.ndarray, objects) -> None:
        from PIL import Image

        chunks = list(_prompt_chunks(objects, self.batch))
        if not chunks:
            return
        image = Image.fromarray(rgb)
        inputs = self.processor(images=image, return_tensors="pt")
        with self.torch.inference_mode():
            emb = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        for chunk in chunks:
            bx = self.processor(images=image, input_boxes=[[list(map(float, o.box)) for o in chunk]],
                                return_tensors="pt")
            with self.torch.inference_mode():
                out = self.model(image_embeddings=emb, input_boxes=bx["input_boxes"].to(self.device),
                                 multimask_output=False)
            masks = self.processor.image_processor.post_process_masks(
                out.pred_masks.cpu(), bx["original_sizes"], bx["reshaped_input_sizes"])[0]
            for o, m in zip(chunk, masks[:, 0].numpy().astype(bool)):
                o.mask = m if m.any() else None
