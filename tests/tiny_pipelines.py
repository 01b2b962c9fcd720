"""A tiny Stable Diffusion pipeline built from configs (random weights), saved to a folder."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def _tiny_clip_tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    # printable ASCII maps to itself in CLIP's byte-level alphabet: characters (and word ends) suffice
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.printable[:94]:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77), len(vocab)


def save_tiny_stable_diffusion(root: Path, prediction_type: str = "epsilon") -> Path:
    """16x16 images, 8x8x4 latents, a 2-level UNet; returns the pipeline folder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                num_attention_heads=4, max_position_embeddings=77, bos_token_id=0,
                                                eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def _tiny_vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=latent_channels,
                         down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                         up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), **extra)


def _clip_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                          projection_dim=32)


def save_tiny_sdxl(root: Path) -> Path:
    """SDXL's layout: two CLIP text encoders (the second with a projection), a UNet taking pooled text and size ids."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64)
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       timestep_spacing="leading", steps_offset=1)
    pipeline = StableDiffusionXLPipeline(vae=_tiny_vae(), text_encoder=CLIPTextModel(_clip_text_config(vocab_size)),
                                         text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(vocab_size)),
                                         tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_sd3(root: Path) -> Path:
    """SD3's layout: CLIP, CLIP and T5 text encoders, an MMDiT transformer, flow matching with a shifted schedule."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64)
    t5 = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                 pad_token_id=1, eos_token_id=1))
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_vae(shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModelWithProjection(_clip_text_config(vocab_size)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config(vocab_size)), tokenizer_2=tokenizer,
        text_encoder_3=t5, tokenizer_3=tokenizer)
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_flux(root: Path, guidance_embeds: bool = True) -> Path:
    """FLUX.1's layout (dev with guidance_embeds, schnell without): CLIP and T5 text encoders, a
    transformer on 2x2-packed latent tokens, flow matching with resolution-dependent shifting."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance_embeds)
    t5 = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                 pad_token_id=1, eos_token_id=1))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipeline = FluxPipeline(scheduler=scheduler, vae=_tiny_vae(shift_factor=0.1159, scaling_factor=0.3611),
                            text_encoder=CLIPTextModel(_clip_text_config(vocab_size)), tokenizer=tokenizer,
                            text_encoder_2=t5, tokenizer_2=tokenizer, transformer=transformer)
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def _tiny_t5(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                   pad_token_id=1, eos_token_id=1))


def save_tiny_cogvideox(root: Path) -> Path:
    """CogVideoX's layout: a T5 text encoder, a 3D transformer on 2x2 patches, a causal 3D VAE (4x in time
    and in space), v-prediction (DDIM); 9 frames of 16x16."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                              time_embed_dim=8, text_embed_dim=32, num_layers=1, sample_width=4,
                                              sample_height=4, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
                                              max_text_seq_length=226)  # the pipeline pads prompts to 226
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                 temporal_compression_ratio=4, down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3)
    pipeline = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=_tiny_t5(vocab_size), vae=vae, transformer=transformer,
                                 scheduler=CogVideoXDDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing",
                                                                  rescale_betas_zero_snr=True))
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_wan(root: Path) -> Path:
    """Wan 2.1's layout: a UMT5 text encoder, a 3D transformer on 1x2x2 patches, Wan's causal VAE (4x in
    time, 8x in space), flow matching sampled by UniPC on shifted flow sigmas, as its checkpoints ship;
    9 frames of 16x16."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                        out_channels=4, text_dim=32, freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    from transformers import UMT5Config, UMT5EncoderModel

    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                               num_heads=4, pad_token_id=1, eos_token_id=1))
    pipeline = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                           scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                             flow_shift=3.0))
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_animatediff(root: Path) -> Path:
    """AnimateDiff's layout: Stable Diffusion 1.5's UNet and CLIP text encoder with a motion adapter
    (temporal attention between frames); 8 frames of 16x16."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=2)
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=2,
                            motion_norm_num_groups=2, motion_max_seq_length=16, use_motion_mid_block=False)
    pipeline = AnimateDiffPipeline(vae=_tiny_vae(norm_num_groups=2), text_encoder=CLIPTextModel(_clip_text_config(vocab_size)),
                                   tokenizer=tokenizer, unet=unet, motion_adapter=adapter,
                                   scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False, steps_offset=1))
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_ltx(root: Path) -> Path:
    """LTX-Video 0.9.1's layout: a T5 text encoder, a transformer on 1x1x1 patch tokens, a causal 3D VAE (4x in
    time and space) whose decoder is timestep-conditioned, flow matching; 9 frames of 32x32 (its pipeline
    asks for multiples of 32)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
                                             attention_head_dim=8, cross_attention_dim=16, num_layers=1, caption_channels=32)
    levels = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False))
    vae = AutoencoderKLLTXVideo(latent_channels=8, patch_size=1, patch_size_t=1, timestep_conditioning=True, **levels,
                                **{f"decoder_{key}": value for key, value in levels.items()})
    pipeline = LTXPipeline(tokenizer=tokenizer, text_encoder=_tiny_t5(vocab_size), vae=vae, transformer=transformer,
                           scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_cogvideox_i2v(root: Path) -> Path:
    """CogVideoX-I2V's layout: CogVideoX's, with the image's latents beside the noise on the channel axis."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=8, out_channels=4,
                                              time_embed_dim=8, text_embed_dim=32, num_layers=1, sample_width=4,
                                              sample_height=4, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
                                              max_text_seq_length=226)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                 temporal_compression_ratio=4, down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3)
    pipeline = CogVideoXImageToVideoPipeline(tokenizer=tokenizer, text_encoder=_tiny_t5(vocab_size), vae=vae,
                                             transformer=transformer, scheduler=CogVideoXDDIMScheduler(
                                                 prediction_type="v_prediction", timestep_spacing="trailing",
                                                 rescale_betas_zero_snr=True))
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_wan_i2v(root: Path) -> Path:
    """Wan 2.1-I2V's layout: Wan's, with a CLIP vision tower whose image tokens the transformer attends to, and
    the image (as the clip's first frame) and its mask beside the noise on the channel axis."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _tiny_clip_tokenizer(root / "tok")
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=12,
                                        out_channels=4, text_dim=32, freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32,
                                        image_dim=32, added_kv_proj_dim=16)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                               num_heads=4, pad_token_id=1, eos_token_id=1))
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                     num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32))
    processor = CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})
    pipeline = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                       image_encoder=image_encoder, image_processor=processor,
                                       scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction",
                                                                         use_flow_sigmas=True, flow_shift=3.0))
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


def save_tiny_ltx_i2v(root: Path) -> Path:
    """LTX-Video's image-to-video layout: LTX-Video's components, the image as the first latent frame."""
    from diffusers import DiffusionPipeline, LTXImageToVideoPipeline

    t2v = DiffusionPipeline.from_pretrained(str(save_tiny_ltx(root / "t2v")))
    pipeline = LTXImageToVideoPipeline(**t2v.components)
    pipeline.save_pretrained(root / "pipeline")
    return root / "pipeline"


TINY_IMAGE_TO_VIDEO_PIPELINES = {"cogvideox-i2v": save_tiny_cogvideox_i2v, "wan-i2v": save_tiny_wan_i2v,
                                 "ltx-i2v": save_tiny_ltx_i2v}

TINY_VIDEO_PIPELINES = {"animatediff": save_tiny_animatediff, "cogvideox": save_tiny_cogvideox, "wan": save_tiny_wan,
                        "ltx": save_tiny_ltx}
