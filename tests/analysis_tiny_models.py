"""Tiny, randomly initialised models of the real architectures, saved the way the real ones are
distributed, so the analysis backends load them through their normal code paths."""
from __future__ import annotations

from pathlib import Path

WORDS = ["person", "cat", "dog", "car", "cake", "table", "bowl", "face", "text", "a", "red", "box",
         "the", "image", "short", "long", "objects", "level", "id", "reason", "labels"]


def grounding_dino(out: Path) -> Path:
    import torch
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS])}
    tok = BertTokenizer(vocab=vocab)
    proc = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), tokenizer=tok)
    torch.manual_seed(0)
    cfg = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                                   num_heads=[1, 1, 1, 1], window_size=2,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, encoder_n_points=2,
        decoder_n_points=2, max_text_len=64)
    GroundingDinoForObjectDetection(cfg).eval().save_pretrained(out)
    proc.save_pretrained(out)
    return out


def owlv2(out: Path) -> Path:
    import torch
    from transformers import (CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor,
                              Owlv2Processor)

    special = ["<|startoftext|>", "<|endoftext|>"]
    # special tokens last, as in CLIP's vocabulary: OWL treats a query whose first id is 0 as padding
    vocab = {w: i for i, w in enumerate([*(c for c in "abcdefghijklmnopqrstuvwxyz"),
                                         *(c + "</w>" for c in "abcdefghijklmnopqrstuvwxyz"), *special])}
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)  # as the real OWLv2 tokenizers
    proc = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    torch.manual_seed(0)
    cfg = Owlv2Config(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16,
                     "bos_token_id": len(vocab) - 2, "eos_token_id": len(vocab) - 1,
                     "pad_token_id": len(vocab) - 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=32)
    Owlv2ForObjectDetection(cfg).eval().save_pretrained(out)
    proc.save_pretrained(out)
    return out


def sam_hf(out: Path) -> Path:
    import torch
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor,
                              SamPromptEncoderConfig, SamVisionConfig)

    torch.manual_seed(0)
    cfg = SamConfig(
        vision_config=SamVisionConfig(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
                                      image_size=64, patch_size=16, window_size=2, global_attn_indexes=[1],
                                      num_pos_feats=16, mlp_dim=64),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=16),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=2,
                                                 num_attention_heads=2, iou_head_hidden_dim=32))
    SamModel(cfg).eval().save_pretrained(out)
    SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 64},
                                                   pad_size={"height": 64, "width": 64})).save_pretrained(out)
    return out


TINY_SAM_ARCH = {"encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2,
                 "encoder_global_attn_indexes": [1], "image_size": 64, "patch_size": 16, "prompt_embed_dim": 32,
                 "window_size": 2, "decoder_depth": 1, "decoder_mlp_dim": 64, "decoder_num_heads": 2,
                 "iou_head_hidden_dim": 32, "mask_in_chans": 4}


def sam_checkpoint(path: Path) -> Path:
    """A segment-anything state dict (.pth) of the tiny architecture above."""
    import torch

    from sdc.analysis.sam import build_sam

    torch.manual_seed(0)
    torch.save(build_sam(TINY_SAM_ARCH).state_dict(), path)
    return path
