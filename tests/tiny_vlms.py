"""Tiny randomly initialised VLMs (Qwen2.5-VL, InternVL) built from configs and saved to a folder.

They are toys that prove the code paths (processor, chat template, yes/no tokens, training),
not the quality of any judge: no real VLM weights can be had offline.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from visreward.generative import templates

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}IMAGE{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _vocabulary(special: list[str]) -> dict[str, int]:
    text = " ".join([templates.DEFAULT_INSTRUCTION, templates.POINTWISE, templates.PAIRWISE, templates.REASON_FIRST,
                     templates.ANSWER_CUE, "a handwritten digit none yes no because it shows the digit user assistant"])
    words = sorted({w for w in re.findall(r"\w+|[^\w\s]", text.lower())} | set("0123456789"))
    return {w: i for i, w in enumerate(special + ["[UNK]"] + words)}


def _tokenizer(special: list[str], extra: dict | None = None):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = _vocabulary(special)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    from tokenizers import AddedToken

    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special + ["[UNK]"]])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token=special[0], eos_token="<|im_end|>",
                                   **({"extra_special_tokens": extra} if extra else {}))
    return fast, vocab


def save_tiny_qwen2_5_vl(directory: Path, hidden: int = 64, layers: int = 2) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    from visreward.generative.model import _image_only

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer, vocab = _tokenizer(special)
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_scaling={"type": "mrope", "mrope_section": [hidden // 16, hidden // 32, hidden // 32]}),
        vision_config=dict(depth=2, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(directory)
    processor = _image_only(Qwen2_5_VLProcessor)(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56), tokenizer=tokenizer,
        chat_template=QWEN_TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>"))
    processor.save_pretrained(directory)
    return directory


def save_tiny_internvl(directory: Path, hidden: int = 64) -> Path:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor

    from visreward.generative.model import _image_only

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    tokenizer, vocab = _tokenizer(special, {"start_image_token": "<img>", "end_image_token": "</img>",
                                            "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    torch.manual_seed(0)
    config = InternVLConfig(
        vision_config=dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                           image_size=[28, 28], patch_size=[14, 14]),
        text_config=dict(model_type="qwen2", vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        image_token_id=vocab["<IMG_CONTEXT>"], downsample_ratio=0.5, projector_hidden_act="gelu", vision_feature_layer=-1)
    InternVLForConditionalGeneration(config).save_pretrained(directory)
    processor = _image_only(InternVLProcessor)(
        image_processor=GotOcr2ImageProcessor(size={"height": 28, "width": 28}, crop_to_patches=False), tokenizer=tokenizer,
        image_seq_length=1, chat_template=QWEN_TEMPLATE.replace("IMAGE", "<IMG_CONTEXT>\n"))
    processor.save_pretrained(directory)
    return directory
