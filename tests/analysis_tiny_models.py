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


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen2_vl(out: Path) -> Path:
    """A tiny Qwen2-VL (vision tower + language model) with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    words = ["<unk>", *WORDS, "{", "}", "[", "]", ":", ",", '"', "L1", "L2", "L3"]
    vocab = {w: i for i, w in enumerate(words + QWEN_SPECIAL)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=QWEN_SPECIAL[1:])
    ip = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56)
    vp = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=56 * 56)
    proc = Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=QWEN_CHAT_TEMPLATE)
    torch.manual_seed(0)
    ids = {t: vocab[t] for t in QWEN_SPECIAL}
    cfg = Qwen2VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 512,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
