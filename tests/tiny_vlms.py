"""Tiny randomly initialised VLMs built from configs and saved to a folder: every family the README
names (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, Idefics3/SmolVLM, LLaVA).

They are toys that prove the code paths (processor, chat template, yes/no tokens, training),
not the quality of any judge: no real VLM weights can be had offline.
"""

from __future__ import annotations

from pathlib import Path

import torch

from visreward.rewards.generative.tiny import CHAT_TEMPLATE, SIZES, build_tiny_llava, text_config, word_tokenizer

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]


def _qwen_tokens(vocab: dict) -> dict:
    return dict(image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
                vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])


def _save_qwen_family(directory: Path, model_cls, config, processor_cls, tokenizer, patch: int) -> Path:
    from transformers import Qwen2VLImageProcessor

    from visreward.rewards.generative.model import _image_only

    model_cls(config).save_pretrained(directory)
    side = 4 * patch  # one 2x2 merge of 2x2 patches: a short image token sequence
    processor = _image_only(processor_cls)(
        image_processor=Qwen2VLImageProcessor(patch_size=patch, min_pixels=side * side, max_pixels=side * side),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>"))
    processor.save_pretrained(directory)
    return directory


def save_tiny_qwen2_vl(directory: Path, hidden: int = 64, layers: int = 2) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer, vocab = word_tokenizer([], QWEN_SPECIAL)
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config=text_config(vocab, hidden, layers, max_position_embeddings=1024, rope_scaling={
            "type": "mrope", "mrope_section": [hidden // 16, hidden // 32, hidden // 32]}),
        vision_config=dict(depth=2, embed_dim=hidden, hidden_size=hidden, mlp_ratio=2, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2), **_qwen_tokens(vocab))
    return _save_qwen_family(directory, Qwen2VLForConditionalGeneration, config, Qwen2VLProcessor, tokenizer, 14)


def save_tiny_qwen2_5_vl(directory: Path, hidden: int = 64, layers: int = 2) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer, vocab = word_tokenizer([], QWEN_SPECIAL)
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config=text_config(vocab, hidden, layers, max_position_embeddings=1024, rope_scaling={
            "type": "mrope", "mrope_section": [hidden // 16, hidden // 32, hidden // 32]}),
        vision_config=dict(depth=2, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
        **_qwen_tokens(vocab))
    return _save_qwen_family(directory, Qwen2_5_VLForConditionalGeneration, config, Qwen2_5_VLProcessor, tokenizer, 14)


def save_tiny_qwen3_vl(directory: Path, hidden: int = 64, layers: int = 2) -> Path:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    tokenizer, vocab = word_tokenizer([], QWEN_SPECIAL)
    torch.manual_seed(0)
    config = Qwen3VLConfig(
        text_config=text_config(vocab, hidden, layers, max_position_embeddings=1024, head_dim=16, rope_scaling={
            "rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=2, out_hidden_size=hidden,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                           deepstack_visual_indexes=[1]),
        **_qwen_tokens(vocab))
    return _save_qwen_family(directory, Qwen3VLForConditionalGeneration, config, Qwen3VLProcessor, tokenizer, 16)


def save_tiny_internvl(directory: Path, hidden: int = 64) -> Path:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor

    from visreward.rewards.generative.model import _image_only

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    tokenizer, vocab = word_tokenizer([], special, {"start_image_token": "<img>", "end_image_token": "</img>",
                                            "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    torch.manual_seed(0)
    config = InternVLConfig(
        vision_config=dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                           image_size=[28, 28], patch_size=[14, 14]),
        text_config=text_config(vocab, hidden, model_type="qwen2"),
        image_token_id=vocab["<IMG_CONTEXT>"], downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1)
    InternVLForConditionalGeneration(config).save_pretrained(directory)
    processor = _image_only(InternVLProcessor)(
        image_processor=GotOcr2ImageProcessor(size={"height": 28, "width": 28}, crop_to_patches=False), tokenizer=tokenizer,
        image_seq_length=1, chat_template=CHAT_TEMPLATE.replace("IMAGE", "<IMG_CONTEXT>\n"))
    processor.save_pretrained(directory)
    return directory


def save_tiny_llava(directory: Path, hidden: int = 64) -> Path:
    """The library's own builder (what `visreward train-vlm` pretrains), at 28 px in 14-px patches."""
    size = {width: name for name, width in SIZES.items()}[hidden]
    model, processor = build_tiny_llava([], size, image_size=28, patch_size=14)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_idefics3(directory: Path, hidden: int = 64) -> Path:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<fake_token_around_image>", "<global-img>",
               "<end_of_utterance>"]
    tokenizer, vocab = word_tokenizer([], special, {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                            "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
    torch.manual_seed(0)
    config = Idefics3Config(
        vision_config=dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                           image_size=28, patch_size=14),
        text_config=text_config(vocab, hidden, model_type="llama", pad_token_id=0), image_token_id=vocab["<image>"],
        scale_factor=2)
    Idefics3ForConditionalGeneration(config).save_pretrained(directory)
    Idefics3Processor(image_processor=Idefics3ImageProcessor(size={"longest_edge": 28}, max_image_size={"longest_edge": 28},
                                                             do_image_splitting=False),
                      tokenizer=tokenizer, image_seq_len=1, chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>")
                      ).save_pretrained(directory)
    return directory


TINY_VLMS = {"qwen2_vl": save_tiny_qwen2_vl, "qwen2_5_vl": save_tiny_qwen2_5_vl, "qwen3_vl": save_tiny_qwen3_vl,
             "internvl": save_tiny_internvl, "idefics3": save_tiny_idefics3, "llava": save_tiny_llava}
