"""What SFT and Diffusion-DPO need from a generator: its denoiser and its training objective.

A `Denoiser` turns images into the model's clean inputs x0 (VAE latents, or pixels for the
bundled generator), prompts into conditioning, and predicts the training target from a noisy
input. `Objective` draws timesteps and noise and gives the target for the three prediction
types: epsilon, v-prediction (DDPM-family schedulers) and flow matching (velocity
noise - x0, as in SD3/FLUX's FlowMatchEulerDiscreteScheduler).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import VisrewardError
from ..io.images import clamp_unit

PREDICTION_TYPES = ("epsilon", "v_prediction", "flow")


@dataclass
class NoisyBatch:
    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


class Objective:
    """Forward noising and regression target of one prediction type."""

    def __init__(self, prediction_type: str, num_train_timesteps: int = 1000, alphas_cumprod: torch.Tensor | None = None):
        if prediction_type not in PREDICTION_TYPES:
            raise VisrewardError(f"unsupported prediction type {prediction_type!r} (have: {', '.join(PREDICTION_TYPES)})")
        if prediction_type != "flow" and alphas_cumprod is None:
            raise ValueError("DDPM-family objectives need the scheduler's alphas_cumprod")
        self.prediction_type = prediction_type
        self.num_train_timesteps = num_train_timesteps
        self.alphas_cumprod = alphas_cumprod

    @classmethod
    def from_scheduler(cls, scheduler) -> "Objective":
        """Flow matching for a scheduler without a DDPM noise schedule (FlowMatchEuler) or one set to flow
        sigmas (Wan's UniPC); otherwise the scheduler's own alphas_cumprod, which may differ from its betas'
        (CogVideoX's DDIM shifts the SNR)."""
        config = scheduler.config
        if config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction" or not hasattr(
                scheduler, "alphas_cumprod"):
            return cls("flow", config.num_train_timesteps)
        return cls(config.get("prediction_type", "epsilon"), config.num_train_timesteps, scheduler.alphas_cumprod)

    def noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> NoisyBatch:
        """Noisy inputs and targets for given noise and integer timesteps in [0, T)."""
        shape = (-1,) + (1,) * (x0.ndim - 1)
        if self.prediction_type == "flow":
            sigma = (timesteps.float() / self.num_train_timesteps).view(shape).to(x0.dtype)
            return NoisyBatch((1 - sigma) * x0 + sigma * noise, timesteps.float(), noise - x0)
        alpha_bar = self.alphas_cumprod.to(x0.device)[timesteps].view(shape).to(x0.dtype)
        noisy = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        target = noise if self.prediction_type == "epsilon" else alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0
        return NoisyBatch(noisy, timesteps, target)

    def predict_x0(self, noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean input implied by a model prediction at `timesteps` (differentiable)."""
        shape = (-1,) + (1,) * (noisy.ndim - 1)
        if self.prediction_type == "flow":
            return noisy - (timesteps.float() / self.num_train_timesteps).view(shape).to(noisy.dtype) * prediction
        alpha_bar = self.alphas_cumprod.to(noisy.device)[timesteps.long()].view(shape).to(noisy.dtype)
        if self.prediction_type == "epsilon":
            return (noisy - (1 - alpha_bar).sqrt() * prediction) / alpha_bar.sqrt()
        return alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * prediction

    def sample(self, x0: torch.Tensor, generator: torch.Generator) -> NoisyBatch:
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        timesteps = torch.randint(0, self.num_train_timesteps, (x0.shape[0],), generator=generator).to(x0.device)
        return self.noise(x0, noise, timesteps)


def call_default(pipeline, name: str, fallback: Any = None) -> Any:
    """The default of a pipeline's __call__ argument: what its own sampler uses when the caller does not say."""
    parameter = inspect.signature(pipeline.__call__).parameters.get(name)
    return fallback if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


class Denoiser:
    """The trainable part of a generator (`module`) with everything around it frozen."""

    module: nn.Module
    objective: Objective

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0,1] -> clean model inputs x0 (no gradient)."""
        raise NotImplementedError

    def condition(self, prompts: Sequence[str]) -> Any:
        raise NotImplementedError

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean model inputs -> [B,3,H,W] images in [0,1], differentiably (for reward gradients)."""
        raise NotImplementedError

    def latent_shape(self, batch_size: int) -> tuple[int, ...]:
        raise NotImplementedError

    guidance_scale: float = 1.0  # classifier-free guidance the generator samples with (1: none)

    def sampling_scheduler(self, steps: int):
        """A copy of the scheduler the generator samples with, set to `steps` steps as its sampler sets it."""
        raise NotImplementedError

    def guided_predict(self, module: nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, condition: Any,
                       unconditional: Any) -> torch.Tensor:
        """The prediction the sampler uses: with classifier-free guidance when guidance_scale > 1."""
        prediction = self.predict(module, noisy, timesteps, condition)
        if self.guidance_scale <= 1 or unconditional is None:
            return prediction
        plain = self.predict(module, noisy, timesteps, unconditional)
        return plain + self.guidance_scale * (prediction - plain)

    def unconditional(self, count: int) -> Any:
        """The conditioning of classifier-free guidance's unconditional branch: the empty prompt's."""
        return self.condition([""] * count)

    def sample_x0(self, module: nn.Module, noise: torch.Tensor, prompts: Sequence[str], steps: int, stop: int) -> torch.Tensor:
        """Sample from `noise` as the generator does (its scheduler's steps, its noise scale and input scaling, its
        guidance) through steps 0..stop-1 without gradient, then predict x0 at step `stop` in the caller's grad mode
        (ReFL's gradient step). With stop = steps - 1 this is the sampler's final output. A scheduler with more
        timesteps than steps (PNDM's warm-up adds one) counts `stop` from its own end."""
        condition = self.condition(prompts)
        unconditional = self.unconditional(len(prompts)) if self.guidance_scale > 1 else None
        scheduler = self.sampling_scheduler(steps)
        schedule = scheduler.timesteps.to(noise.device)
        stop = min(stop + len(schedule) - steps, len(schedule) - 1)
        at = lambda i: schedule[i].repeat(len(prompts))  # noqa: E731
        # Euler-family schedulers start from noise scaled to their largest sigma and scale each step's input
        x = noise * getattr(scheduler, "init_noise_sigma", 1.0)
        scale = getattr(scheduler, "scale_model_input", lambda sample, timestep: sample)  # flow matching: none
        with torch.no_grad():
            for i in range(stop):
                inputs = scale(x, schedule[i])
                prediction = self.guided_predict(module, inputs, at(i), condition, unconditional)
                x = scheduler.step(prediction.to(x.dtype), schedule[i], x).prev_sample
        inputs = scale(x, schedule[stop])
        prediction = self.guided_predict(module, inputs, at(stop), condition, unconditional)
        return self._x0(scheduler, x, inputs, prediction, stop, at(stop))

    def _x0(self, scheduler, x: torch.Tensor, inputs: torch.Tensor, prediction: torch.Tensor, index: int,
            timesteps: torch.Tensor) -> torch.Tensor:
        """x0 as the scheduler itself computes it from `prediction` at its step `index` (in its own parametrisation:
        Euler's sample is x0 + sigma * noise), differentiably; at the last step, the scheduler's own last update,
        which is what the pipeline returns (DDIM without set_alpha_to_one ends a little short of x0)."""
        sigmas = getattr(scheduler, "sigmas", None)
        if self.objective.prediction_type == "flow" and sigmas is not None:
            return x - sigmas[index].to(x) * prediction  # the scheduler's own sigma: UniPC truncates its timesteps
        step = scheduler.step(prediction.to(x.dtype), timesteps[0], x)
        if index == len(scheduler.timesteps) - 1:
            return step.prev_sample
        if getattr(step, "pred_original_sample", None) is not None:  # DDIM, DDPM, Euler: their own x0
            return step.pred_original_sample
        return self.objective.predict_x0(inputs, prediction, timesteps)  # PNDM, DPM-Solver: DDPM-parametrised samples

    def predict(self, module: nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, condition: Any) -> torch.Tensor:
        """`module` is passed in so a wrapped (LoRA, DDP) or frozen reference copy can be used."""
        raise NotImplementedError


class ConditionalDenoiser(Denoiser):
    """The bundled kind of generator: pixels are the model's input (a clip's frames stacked on channels), the
    prompt's class is its label."""

    def __init__(self, generator):
        self.generator = generator
        self.module = generator.unet
        self.objective = Objective.from_scheduler(generator.scheduler)

    def sampling_scheduler(self, steps: int):
        scheduler = copy.deepcopy(self.generator.scheduler)
        scheduler.set_timesteps(steps)
        return scheduler

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.generator.stack(images) * 2 - 1

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        return self.generator.unstack(clamp_unit((x0 + 1) / 2))

    def latent_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.generator.unet.config.in_channels, *self.generator.resolution)

    def condition(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.generator.class_labels(prompts)

    def predict(self, module, noisy, timesteps, condition):
        return module(noisy, timesteps, class_labels=condition.to(noisy.device)).sample


class DiffusersDenoiser(Denoiser):
    """UNet (SD 1.x/2.x, SDXL; AnimateDiff's motion UNet) or transformer (SD3, FLUX; CogVideoX, Wan, LTX-Video)
    of a diffusers pipeline; VAE and text encoders frozen. Video pipelines train on [B,T,3,H,W] clips.

    What the denoiser needs is read from its config, not from the pipeline's class name: a transformer
    with `guidance_embeds` works on 2x2-packed latent tokens with position ids and takes the guidance
    scale as an input (FLUX; x0 stays unpacked here, packing happens around each call); one with
    `pooled_projection_dim` takes pooled text projections (SD3's MMDiT); a UNet whose
    `addition_embed_type` is "text_time" takes pooled text and size ids (SDXL); a video transformer whose
    forward takes `rope_interpolation_scale` works on a token sequence with the latent grid's size given
    beside it, and a text attention mask (LTX-Video; x0 stays [B,C,F,h,w], packing happens around each call).
    """

    def __init__(self, pipeline, resolution: tuple[int, int], guidance_scale: float = 1.0, num_frames: int | None = None):
        self.pipeline = pipeline
        self.resolution = resolution
        self.num_frames = num_frames  # a video pipeline's frames per clip (None: an image pipeline)
        self.module = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        if self.module is None:
            raise VisrewardError(f"{type(pipeline).__name__}: no unet or transformer to fine-tune")
        config = self.module.config
        self.packed = config.get("guidance_embeds") is not None
        # FLUX-dev embeds its guidance scale (schnell has none); only the others use classifier-free guidance
        self.embedded_guidance = guidance_scale if config.get("guidance_embeds") else None
        self.guidance_scale = 1.0 if self.packed else guidance_scale
        self.pooled_projections = config.get("pooled_projection_dim") is not None
        self.text_time = config.get("addition_embed_type") == "text_time"
        # video transformers: CogVideoX works on [B,F,C,H,W] latents (and may take rotary embeddings), Wan on [B,C,F,H,W]
        self.frames_first = config.get("temporal_compression_ratio") is not None
        self.token_video = "rope_interpolation_scale" in inspect.signature(self.module.forward).parameters
        self.video_transformer = self.frames_first or self.token_video or config.get("rope_max_seq_len") is not None
        for part in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            component = getattr(pipeline, part, None)
            if component is not None:
                component.requires_grad_(False)
        self.objective = Objective.from_scheduler(pipeline.scheduler)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] images (or [B,T,3,H,W] clips) in [0,1] -> the latents the denoiser is trained on."""
        if images.ndim == 5:
            return self._encode_clips(images)
        vae = self.pipeline.vae
        latents = vae.encode(images.to(vae.device, vae.dtype) * 2 - 1).latent_dist.sample()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def _encode_clips(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips through a 3-D VAE (CogVideoX, Wan), or frame by frame through an image VAE (AnimateDiff),
        normalised as each pipeline un-normalises before decoding."""
        vae = self.pipeline.vae
        pixels = clips.to(vae.device, vae.dtype) * 2 - 1
        if self._temporal_compression > 1:
            latents = vae.encode(pixels.permute(0, 2, 1, 3, 4)).latent_dist.sample()  # [B,C,F,h,w]
        else:
            frames = vae.encode(pixels.flatten(0, 1)).latent_dist.sample()
            latents = frames.unflatten(0, pixels.shape[:2]).permute(0, 2, 1, 3, 4)
        shift, scale = self._clip_latent_scale(latents)
        latents = (latents - shift) / scale
        return latents.permute(0, 2, 1, 3, 4) if self.frames_first else latents

    def _clip_latent_scale(self, latents: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """(shift, scale) with model latents = (VAE latents - shift) / scale: a per-channel mean and std (Wan's
        in its VAE config, LTX-Video's as VAE buffers, both over the scaling factor), else the scaling factor."""
        vae = self.pipeline.vae
        mean, std = vae.config.get("latents_mean"), vae.config.get("latents_std")
        if mean is None:
            mean, std = getattr(vae, "latents_mean", None), getattr(vae, "latents_std", None)
        factor = vae.config.get("scaling_factor") or 1.0
        if mean is None:
            return 0.0, 1 / factor
        as_channels = lambda values: torch.as_tensor(values).to(latents.device, latents.dtype).view(1, -1, 1, 1, 1)  # noqa: E731
        return as_channels(mean), as_channels(std) / factor

    def decode(self, x0: torch.Tensor, frames_with_grad: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents -> [B,3,H,W] images (or [B,T,3,H,W] clips) in [0,1], differentiably. frames_with_grad:
        for clips, gradients flow through that many random frames only (the others are detached; an
        image VAE also decodes them without building a graph)."""
        if x0.ndim == 5:
            return self._decode_clips(x0, frames_with_grad, generator)
        vae = self.pipeline.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        images = vae.decode((x0 / vae.config.scaling_factor + shift).to(vae.dtype)).sample
        return clamp_unit((images.float() + 1) / 2)

    def _decode_clips(self, x0: torch.Tensor, frames_with_grad: int | None, generator: torch.Generator | None) -> torch.Tensor:
        vae = self.pipeline.vae
        latents = x0.permute(0, 2, 1, 3, 4) if self.frames_first else x0  # [B,C,F,h,w]
        shift, scale = self._clip_latent_scale(latents)
        latents = (latents * scale + shift).to(vae.dtype)
        if self._temporal_compression == 1:  # an image VAE, frame by frame: frames without gradient build no graph
            keep = self._frames_with_grad(latents.shape[2], frames_with_grad, generator, latents.device)
            clips = self._decode_frames(latents.permute(0, 2, 1, 3, 4), keep)
        else:
            clips = vae.decode(latents, *self._decode_timestep(latents)).sample.permute(0, 2, 1, 3, 4)  # [B,T,3,H,W]
            keep = self._frames_with_grad(clips.shape[1], frames_with_grad, generator, clips.device)
            if keep is not None:
                mask = torch.zeros(clips.shape[1], dtype=torch.bool, device=clips.device)
                mask[keep] = True
                clips = torch.where(mask.view(1, -1, 1, 1, 1), clips, clips.detach())
        return clamp_unit((clips.float() + 1) / 2)

    def _decode_frames(self, frames: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """[B,F,C,h,w] latents through an image VAE -> [B,F,3,H,W]; only the `keep` frames build a graph."""
        vae = self.pipeline.vae

        def run(part: torch.Tensor) -> torch.Tensor:
            return vae.decode(part.flatten(0, 1)).sample.unflatten(0, part.shape[:2])

        if keep is None:
            return run(frames)
        others = torch.tensor([i for i in range(frames.shape[1]) if i not in set(keep.tolist())], device=frames.device)
        with torch.no_grad():
            plain = run(frames[:, others])
        chosen = run(frames[:, keep])
        clips = torch.zeros(frames.shape[0], frames.shape[1], *chosen.shape[2:], dtype=chosen.dtype, device=chosen.device)
        return clips.index_copy(1, others, plain).index_copy(1, keep, chosen)

    def _decode_timestep(self, latents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A timestep-conditioned VAE decoder (LTX-Video 0.9.1+) decodes clean latents at its pipeline's
        default decode_timestep (0 for LTXPipeline)."""
        if not self.pipeline.vae.config.get("timestep_conditioning"):
            return ()
        value = float(call_default(self.pipeline, "decode_timestep", 0.0))
        return (torch.full((latents.shape[0],), value, device=latents.device, dtype=latents.dtype),)

    @staticmethod
    def _frames_with_grad(frames: int, count: int | None, generator: torch.Generator | None, device) -> torch.Tensor | None:
        if count is None or count >= frames:
            return None
        return torch.randperm(frames, generator=generator)[:count].sort().values.to(device)

    @property
    def _temporal_compression(self) -> int:
        """Frames per latent frame of the VAE (1: an image VAE, frame by frame)."""
        vae = self.pipeline.vae
        return (vae.config.get("temporal_compression_ratio") or vae.config.get("scale_factor_temporal")
                or getattr(vae, "temporal_compression_ratio", None) or 1)  # LTX-Video: derived, not in its config

    @property
    def _spatial_compression(self) -> int:
        pipe = self.pipeline
        return (getattr(pipe, "vae_scale_factor_spatial", None) or getattr(pipe, "vae_spatial_compression_ratio", None)
                or pipe.vae_scale_factor)

    def latent_shape(self, batch_size: int) -> tuple[int, ...]:
        if self.num_frames is not None:
            return self._clip_latent_shape(batch_size)
        factor = self.pipeline.vae_scale_factor
        channels = self.module.config.in_channels // (4 if self.packed else 1)
        return (batch_size, channels, self.resolution[0] // factor, self.resolution[1] // factor)

    def _clip_latent_shape(self, batch_size: int) -> tuple[int, ...]:
        temporal = self._temporal_compression
        frames = (self.num_frames - 1) // temporal + 1 if temporal > 1 else self.num_frames
        factor = self._spatial_compression
        channels, height, width = self.module.config.in_channels, self.resolution[0] // factor, self.resolution[1] // factor
        if self.frames_first:
            return (batch_size, frames, channels, height, width)
        return (batch_size, channels, frames, height, width)

    def sampling_scheduler(self, steps: int):
        """The pipeline's scheduler set as its pipeline sets it: its spacing, its shift, and for FLUX and
        LTX-Video the shift their pipelines derive from the token count."""
        scheduler = copy.deepcopy(self.pipeline.scheduler)
        if scheduler.config.get("use_dynamic_shifting"):
            from diffusers.pipelines.flux.pipeline_flux import calculate_shift

            config = scheduler.config
            mu = calculate_shift(self._token_count(), config.get("base_image_seq_len", 256),
                                 config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                 config.get("max_shift", 1.15))
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        else:
            scheduler.set_timesteps(steps)
        return scheduler

    def _token_count(self) -> int:
        """Tokens the transformer sees per sample: 2x2 patches of an image's latents (FLUX), or a clip's latent
        grid over the transformer's patch sizes (LTX-Video)."""
        shape = self.latent_shape(1)
        if len(shape) == 4:
            return (shape[2] // 2) * (shape[3] // 2)
        config = self.module.config
        return (shape[2] // config.get("patch_size_t", 1)) * (shape[3] // config.patch_size) * (shape[4] // config.patch_size)

    def unconditional(self, count: int) -> Any:
        """SDXL's pipelines (force_zeros_for_empty_prompt) guide against zero embeddings, not the empty prompt's."""
        condition = self.condition([""] * count)
        if not self.pipeline.config.get("force_zeros_for_empty_prompt"):
            return condition
        added = condition.get("added_cond_kwargs", {})
        return {**condition, "encoder_hidden_states": torch.zeros_like(condition["encoder_hidden_states"]),
                **({"added_cond_kwargs": {**added, "text_embeds": torch.zeros_like(added["text_embeds"])}} if added else {})}

    @torch.no_grad()
    def condition(self, prompts: Sequence[str]) -> Any:
        device = self.module.device
        prompts = list(prompts)
        if self.packed:
            embeds, pooled, text_ids = self.pipeline.encode_prompt(prompts, prompts, device=device)
            return {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}
        if self.pooled_projections:
            embeds, _, pooled, _ = self.pipeline.encode_prompt(prompts, prompts, prompts, device=device,
                                                                do_classifier_free_guidance=False)
            return {"encoder_hidden_states": embeds, "pooled_projections": pooled}
        if self.video_transformer:
            # padded to the length the pipeline's own __call__ pads to: the transformer attends to the padding
            length = {"max_sequence_length": call_default(self.pipeline, "max_sequence_length", 226)}
            embeds, second, *_ = self.pipeline.encode_prompt(prompts, do_classifier_free_guidance=False, device=device, **length)
            if self.token_video:  # LTX-Video returns, and its transformer takes, the text attention mask
                return {"encoder_hidden_states": embeds, "encoder_attention_mask": second}
            return {"encoder_hidden_states": embeds}
        if self.text_time:
            embeds, _, pooled, _ = self.pipeline.encode_prompt(prompts, device=device, do_classifier_free_guidance=False)
            height, width = self.resolution
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=embeds.dtype).repeat(len(prompts), 1)
            return {"encoder_hidden_states": embeds, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
        embeds, _ = self.pipeline.encode_prompt(prompts, device=device, num_images_per_prompt=1,
                                                do_classifier_free_guidance=False)
        return {"encoder_hidden_states": embeds}

    def predict(self, module, noisy, timesteps, condition):
        if self.packed:
            return self._predict_packed(module, noisy, timesteps, condition)
        if self.token_video:
            return self._predict_tokens(module, noisy, timesteps, condition)
        if self.frames_first and module.config.get("use_rotary_positional_embeddings"):
            _, frames, _, height, width = noisy.shape
            factor = self.pipeline.vae_scale_factor_spatial
            condition = {**condition, "image_rotary_emb": self.pipeline._prepare_rotary_positional_embeddings(
                height * factor, width * factor, frames, noisy.device)}
        if self.pooled_projections or self.video_transformer:
            return module(hidden_states=noisy, timestep=timesteps, **condition).sample
        if noisy.ndim == 5:  # AnimateDiff's motion UNet attends to the prompt once per frame, as its pipeline feeds it
            condition = {"encoder_hidden_states": condition["encoder_hidden_states"].repeat_interleave(noisy.shape[2], dim=0)}
        return module(noisy, timesteps, **condition).sample

    def _predict_tokens(self, module, noisy, timesteps, condition):
        """LTX-Video: [B,C,F,h,w] latents as patch tokens, with the grid size and the RoPE scale its pipeline
        derives from the VAE's compression and the default frame rate."""
        pipe, (_, _, frames, height, width) = self.pipeline, noisy.shape
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        frame_rate = call_default(pipe, "frame_rate")
        scale = (self._temporal_compression / frame_rate, self._spatial_compression, self._spatial_compression)
        velocity = module(hidden_states=pipe._pack_latents(noisy, patch, patch_t), timestep=timesteps, num_frames=frames // patch_t,
                          height=height // patch, width=width // patch, rope_interpolation_scale=scale, **condition).sample
        return pipe._unpack_latents(velocity, frames // patch_t, height // patch, width // patch, patch, patch_t)

    def _predict_packed(self, module, noisy, timesteps, condition):
        pipe, (batch, channels, height, width) = self.pipeline, noisy.shape
        tokens = pipe._pack_latents(noisy, batch, channels, height, width)
        image_ids = pipe._prepare_latent_image_ids(batch, height // 2, width // 2, noisy.device, noisy.dtype)
        guidance = None
        if self.embedded_guidance is not None:
            guidance = torch.full((batch,), self.embedded_guidance, device=noisy.device, dtype=torch.float32)
        velocity = module(hidden_states=tokens, timestep=timesteps.float() / self.objective.num_train_timesteps,
                          guidance=guidance, img_ids=image_ids, **condition).sample
        factor = pipe.vae_scale_factor
        return pipe._unpack_latents(velocity, height * factor, width * factor, factor)
