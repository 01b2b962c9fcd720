"""Small vision-language models built from a config, with a word-level tokenizer of the words they will read.

    model, processor = build_tiny_llava(words, size="4x")   # random weights: pretrain them (pretraining.py)

A judge must read our templates' words and say yes or no, so every vocabulary holds them and the digits; the
rest comes from the captions it is pretrained on. Words outside it read as [UNK].
"""

from __future__ import annotations

import re
from typing import Iterable

from ...core.options import VLM_SIZES
from . import templates

# Qwen's chat markup, with IMAGE standing for the family's image placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}IMAGE{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
JUDGE_WORDS = " ".join([templates.DEFAULT_INSTRUCTION, templates.POINTWISE, templates.PAIRWISE, templates.REASON_FIRST,
                        templates.ANSWER_CUE, templates.DEFAULT_VIDEO_INSTRUCTION, templates.VIDEO_POINTWISE,
                        templates.VIDEO_PAIRWISE, "a handwritten digit none yes no because it shows the user assistant",
                        "0 1 2 3 4 5 6 7 8 9"])
# hidden size per size: the parameter count grows about 4x a step (2 layers of vision and of language each)
SIZES = dict(zip(VLM_SIZES, (32, 64, 128)))


def words_of(texts: Iterable[str]) -> list[str]:
    """The sorted distinct lower-case words and punctuation marks of `texts`, as the tokenizer splits them."""
    return sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})


def word_tokenizer(words: Iterable[str], special: list[str], extra: dict | None = None):
    """A transformers fast tokenizer: one id per special token, then [UNK], then one per word (lower-cased)."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(special + ["[UNK]"] + words_of([JUDGE_WORDS, *words]))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special + ["[UNK]"]])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token=special[0], eos_token="<|im_end|>",
                                   **({"extra_special_tokens": extra} if extra else {}))
    return fast, vocab


def text_config(vocab: dict, hidden: int, layers: int = 2, **extra) -> dict:
    """The language half: 4 query and 2 key/value heads, an MLP twice as wide."""
    return dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, **extra)


def build_tiny_llava(words: Iterable[str], size: str = "4x", image_size: int = 16, patch_size: int = 4, seed: int = 0):
    """(LlavaForConditionalGeneration, LlavaProcessor) with random weights: a CLIP vision tower seeing
    image_size-px images in patch_size-px patches (every patch an image token), a Qwen2 language model."""
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    if size not in SIZES:
        raise ValueError(f"unknown size '{size}' (choose from {', '.join(SIZES)})")
    hidden = SIZES[size]
    tokenizer, vocab = word_tokenizer(words, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"])
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=hidden, intermediate_size=2 * hidden,
                           num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                           projection_dim=hidden),
        text_config=text_config(vocab, hidden, model_type="qwen2", tie_word_embeddings=True),
        image_token_id=vocab["<image>"], vision_feature_layer=-1, vision_feature_select_strategy="full")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                           crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="full", image_token="<image>",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>\n"))
    return model, processor
