"""RewardDance-style generative reward: a vision-language model's P("yes").

    rm = GenerativeRewardModel.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct")   # or a local folder
    r = rm.score(images, prompts)                          # pointwise: does the image satisfy the prompt?
    r = rm.score(images, prompts, references=refs)         # pairwise vs reference(s), both orders averaged
    r = rm.score(images, prompts)                          # a judge trained with --references: against those
    r = rm.score(images, prompts, instruction="Judge text-image alignment and aesthetics.")
    r, info = rm.score_with_info(images, prompts, cot="reason-first")   # rationales in info
    r = rm.score(["a.mp4", "b.mp4"], prompts, references=["ref.mp4", "ref.mp4"])   # videos: sampled frames

Any transformers image-text-to-text model with a chat template works (Qwen2/2.5/3-VL,
InternVL, Idefics3/SmolVLM, LLaVA). The reward is read at the first answer position:
the probability of the "yes" tokens, normalised over "yes" and "no" by default
(`full_vocabulary=True`: over the whole vocabulary). Yes/no tokens are found in the
tokenizer (every single-token spelling of yes/Yes/YES, with or without a leading space).

Videos reach every model as their sampled frames (8 by default, or the number the judge was
trained with), in order, as a multi-image message whose question says they are frames of one
video. Native video inputs (Qwen2.5-VL's and Qwen3-VL's video processors) are not used: in
transformers they need torchvision, which visreward's CPU install does not pull.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ...core.errors import VisrewardError
from ...core.options import COT_MODES
from ...io.images import ImageInput, as_image_batch, clamp_unit, load_image, quantize, tensor_to_pil
from ...io.videos import (
    ANIMATED_EXTENSIONS,
    FrameSampling,
    as_video_batch,
    is_clip,
    is_clip_bytes,
    pil_frames,
    pillow_frame_count,
    read_clip,
)
from ..spread import spread
from .templates import ANSWER_CUE, TEMPLATE_VERSION, question, user_message

SETTINGS_FILE = "visreward_vlm.json"
REFERENCES_FOLDER = "references"  # a pairwise judge's reference images, with their prompts (train-vlm-rm --references)
HEAD_FILE = "bradley_terry_head.safetensors"  # a --bradley-terry folder's reward head (bradley_terry.py)
YES_SPELLINGS = ("yes", "Yes", "YES", " yes", " Yes")
NO_SPELLINGS = ("no", "No", "NO", " no", " No")


TILING_SETTINGS = ("crop_to_patches", "do_image_splitting")  # InternVL's crops, Idefics3 / SmolVLM's splitting


def _image_only(processor_cls):
    """The processor without its video half: visreward feeds images only, and video processors
    need torchvision, which CPU installs lack."""

    class ImageOnlyProcessor(processor_cls):
        @classmethod
        def get_attributes(cls):
            return [a for a in super().get_attributes() if a != "video_processor"]

    ImageOnlyProcessor.__name__ = processor_cls.__name__
    return ImageOnlyProcessor


def load_processor(location: str, model_type: str):
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    try:
        return AutoProcessor.from_pretrained(location, trust_remote_code=False)
    except (ImportError, ValueError, TypeError, AttributeError, OSError) as first_error:
        import transformers

        name = PROCESSOR_MAPPING_NAMES.get(model_type)
        if name is None:
            raise VisrewardError(f"{location}: cannot load its processor ({first_error})") from None
        settings = {}
        if (Path(location) / "processor_config.json").exists():
            settings = json.loads((Path(location) / "processor_config.json").read_text())
        nested = settings.get("image_processor")  # transformers 5 keeps it inside processor_config.json
        if isinstance(nested, dict) and nested.get("image_processor_type"):
            image_processor = getattr(transformers, nested["image_processor_type"]).from_dict(nested)
        else:
            image_processor = AutoImageProcessor.from_pretrained(location)
        tokenizer = AutoTokenizer.from_pretrained(location)
        cls = _image_only(getattr(transformers, name))
        extra = {k: v for k, v in settings.items() if k in cls.__init__.__code__.co_varnames and k != "chat_template"}
        extra.pop("image_processor", None)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template, **extra)


def load_backbone(location: str, name: str, dtype: torch.dtype | None = None):
    """(model, processor) of a judge folder or hub id: a peft adapter on the base it names, or the whole model;
    `name` is what a one-line error calls it."""
    from transformers import AutoModelForImageTextToText

    try:
        if (Path(location) / "adapter_config.json").exists():
            from peft import PeftModel

            base = json.loads((Path(location) / "adapter_config.json").read_text())["base_model_name_or_path"]
            model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base, dtype=dtype), location)
        else:
            model = AutoModelForImageTextToText.from_pretrained(location, dtype=dtype, trust_remote_code=False)
        return model, load_processor(location, model.config.model_type)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VisrewardError(f"vlm:{name}: cannot load the model ({first})") from None


def answer_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of every single-token spelling of yes and of no; an error if either has none."""
    def single(spellings):
        ids = []
        for text in spellings:
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id and encoded[0] not in ids:
                ids.append(encoded[0])
        return ids

    yes, no = single(YES_SPELLINGS), single(NO_SPELLINGS)
    if not yes or not no:
        raise VisrewardError("this model's tokenizer has no single-token 'yes' and 'no': it cannot be a yes/no judge")
    return yes, no


def yes_probability(logits: torch.Tensor, yes_ids: list[int], no_ids: list[int], full_vocabulary: bool = False) -> torch.Tensor:
    """P(yes) from next-token logits [B,V]: over yes+no spellings, or over the whole vocabulary."""
    logits = logits.float()
    yes = torch.logsumexp(logits[:, yes_ids], dim=-1)
    if full_vocabulary:
        return torch.exp(yes - torch.logsumexp(logits, dim=-1))
    no = torch.logsumexp(logits[:, no_ids], dim=-1)
    return torch.sigmoid(yes - no)


def read_references(folder: Path) -> dict[str | None, list[str]]:
    """An imagefolder of reference images (or clips), prompts optional -> {prompt or None: [files]}."""
    from ...io.images import SkipLog
    from ...io.readers import read_images

    references: dict[str | None, list[str]] = {}
    for record, _ in read_images([folder], SkipLog(strict=True), clips=True):
        references.setdefault(record.prompt, []).append(str(record.path))
    if not references:
        raise VisrewardError(f"{folder}: no reference images")
    return references


def _pil(image: ImageInput):
    if isinstance(image, torch.Tensor):
        return tensor_to_pil(image)
    return load_image(image)


def _is_clip(item) -> bool:
    """A video (not an image) as the judge takes them: a video file, a folder of frames, an animated
    GIF / WebP, a [T,3,H,W] tensor, or a list of PIL frames (what diffusers video pipelines return)."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if is_clip(path) or path.is_dir():
            return True
        return path.suffix.lower() in ANIMATED_EXTENSIONS and (pillow_frame_count(path) or 1) > 1
    if isinstance(item, torch.Tensor):
        return item.ndim == 4
    if isinstance(item, bytes):  # a file's bytes, as the reward server passes them on
        return is_clip_bytes(item)
    return isinstance(item, (list, tuple))


def frames_of(item, sampling: FrameSampling) -> list:
    """The PIL images a judge sees for one image ([image]) or clip (its sampled frames)."""
    if not _is_clip(item):
        return [_pil(item)]
    if isinstance(item, (list, tuple)):
        return [_pil(item[i]) for i in sampling.indices(len(item))]
    if isinstance(item, torch.Tensor):
        clip = item[sampling.indices(len(item), sampling.fps)]
        return pil_frames(clip if clip.dtype == torch.uint8 else quantize(clip))
    return pil_frames(read_clip(item, sampling))


def _reference_list(entry, candidate_is_clip: bool) -> list:
    if isinstance(entry, (list, tuple)) and not (candidate_is_clip and all(isinstance(x, Image.Image) for x in entry)):
        return list(entry)
    return [entry]


def candidate_items(images) -> list:
    """The images or clips a judge is given, one item each (RL trainers' uint8 / channels-last batches too)."""
    batch = as_video_batch(images)
    return list(batch if isinstance(batch, torch.Tensor) and batch.ndim == 5 else as_image_batch(batch))


def judged(ask, sampling: FrameSampling, images, prompts, references, instruction: str | None,
           cot: str | None = None) -> tuple[torch.Tensor, dict]:
    """RewardDance's scores of images or clips: pointwise P(yes), or against references in both orders (removing the
    judge's position bias) averaged over them. `ask(queries)`, queries being (question, frames), answers
    (P(yes) per query, rationales): the judge itself, in this process or behind an API."""
    items = candidate_items(images)
    candidates = [frames_of(item, sampling) for item in items]
    prompts = list(prompts) if prompts is not None else [None] * len(candidates)
    if len(prompts) != len(candidates):
        raise VisrewardError(f"{len(candidates)} images but {len(prompts)} prompts")
    info: dict = {"template_version": TEMPLATE_VERSION}
    if references is None:
        scores, rationales = ask([(question(p, instruction, False, cot, len(c)), c) for c, p in zip(candidates, prompts)])
    else:
        if len(references) != len(candidates):
            raise VisrewardError(f"{len(candidates)} images but {len(references)} reference entries")
        refs = [[frames_of(r, sampling) for r in _reference_list(ref, _is_clip(item))] for ref, item in zip(references, items)]
        queries, owner = [], []
        for i, (candidate, prompt, ref_list) in enumerate(zip(candidates, prompts, refs)):
            text = question(prompt, instruction, True, cot, len(candidate))
            for ref in ref_list:
                if len(ref) != len(candidate):
                    raise VisrewardError(f"candidate {i} is {'a clip' if len(candidate) > 1 else 'an image'} "
                                         f"but a reference is {'a clip' if len(ref) > 1 else 'an image'}")
                queries += [(text, candidate + ref), (text, ref + candidate)]
                owner += [i, i]
        probabilities, rationales = ask(queries)
        forward, backward = probabilities[0::2], probabilities[1::2]
        pairwise = (forward + (1 - backward)) / 2
        owners = torch.tensor(owner[0::2])
        scores = torch.zeros(len(candidates)).index_add_(0, owners, pairwise) / torch.bincount(owners, minlength=len(candidates))
        info["order_bias"] = float((forward - (1 - backward)).mean())
    if cot:
        info["rationales"] = rationales
    return scores, info


class GenerativeRewardModel:
    """A VLM judge; `score` returns P(yes) in [0,1] per image (pairwise: P(candidate better))."""

    def __init__(self, model, processor, settings: dict | None = None):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # the first answer position is the last column for every row
        self.settings = {"template_version": TEMPLATE_VERSION, **(settings or {})}
        self.sampling = FrameSampling(self.settings.get("frames", 8))  # how it sees a video: saved when trained on videos
        self.yes_ids, self.no_ids = answer_token_ids(self.tokenizer)
        self.references: dict[str | None, list[str]] = {}  # prompt (None: every prompt) -> its saved reference files

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, device: str | None = None,
                        dtype: torch.dtype | None = None) -> "GenerativeRewardModel":
        from ...core.model_card import is_repo_id, local_folder, repo_file

        location = str(path_or_id)
        if os.path.isdir(location):
            location = os.path.abspath(location)
        elif is_repo_id(location) and repo_file(location, SETTINGS_FILE):  # a judge trained here, on the Hub: its
            location = str(local_folder(location))                       # settings and adapter are read as files
        settings = json.loads((Path(location) / SETTINGS_FILE).read_text()) if (Path(location) / SETTINGS_FILE).exists() else {}
        if (Path(location) / HEAD_FILE).exists():
            raise VisrewardError(f"vlm:{path_or_id}: a Bradley-Terry baseline ({HEAD_FILE}), not a "
                                 "yes/no judge: its backbone was never trained to answer yes or no; load_reward_model("
                                 "'vlm:...') loads it as the BradleyTerryRewardModel it is")
        model, processor = load_backbone(location, str(path_or_id), dtype)
        judge = cls(model.to(device) if device else model, processor, settings)
        if (Path(location) / REFERENCES_FOLDER).is_dir():
            judge.references = read_references(Path(location) / REFERENCES_FOLDER)
        return judge

    def references_for(self, prompts: Sequence[str | None]) -> list[list[str]]:
        """Each prompt's saved references: those given for it, else those given for every prompt."""
        found = []
        for prompt in prompts:
            refs = self.references.get(prompt) or self.references.get(None)
            if not refs:
                raise VisrewardError(f"no saved reference image for prompt {prompt!r} (this judge's {REFERENCES_FOLDER}/ "
                                     "has none for it, nor any without a prompt)")
            found.append(refs)
        return found

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, texts: list[str], images: list[list]) -> dict:
        batch = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def chat_text(self, text: str, n_images: int) -> str:
        return self.processor.apply_chat_template(user_message(text, n_images), add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def _yes(self, texts: list[str], images: list[list], full_vocabulary: bool) -> torch.Tensor:
        logits = self.model(**self.encode(texts, images)).logits[:, -1]
        return yes_probability(logits, self.yes_ids, self.no_ids, full_vocabulary).cpu()

    @torch.no_grad()
    def _rationales(self, texts: list[str], images: list[list], max_new_tokens: int) -> list[str]:
        batch = self.encode(texts, images)
        generated = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        return self.tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    def _judge(self, queries: list[tuple[str, list]], batch_size: int, cot: str | None, full_vocabulary: bool,
               max_new_tokens: int) -> tuple[torch.Tensor, list[str]]:
        """P(yes) for (question, images) queries, batched; with chain-of-thought, also the rationales."""
        probabilities, rationales = [], []
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            texts = [self.chat_text(text, len(imgs)) for text, imgs in chunk]
            images = [imgs for _, imgs in chunk]
            if cot == "reason-first":
                reasons = self._rationales(texts, images, max_new_tokens)
                texts = [t + r.strip() + ANSWER_CUE for t, r in zip(texts, reasons)]
                rationales += reasons
            probabilities.append(self._yes(texts, images, full_vocabulary))
            if cot == "decision-first":
                decided = ["yes" if p > 0.5 else "no" for p in probabilities[-1]]
                rationales += self._rationales([t + d + ". Because" for t, d in zip(texts, decided)], images, max_new_tokens)
        return torch.cat(probabilities), rationales

    def score_with_info(self, images: Sequence[ImageInput] | torch.Tensor, prompts: Sequence[str | None] | None = None,
                        references: Sequence | None = None, instruction: str | None = None, cot: str | None = None,
                        full_vocabulary: bool = False, batch_size: int = 8, max_new_tokens: int = 64) -> tuple[torch.Tensor, dict]:
        """(rewards [B], info). images: images or clips (video files, frame folders, [T,3,H,W] tensors,
        lists of PIL frames, or a [B,T,3,H,W] batch). references: per candidate, one image (clip), or a
        list of several; a clip's references are clips, so a list of PIL frames there is one clip."""
        if cot is not None and cot not in COT_MODES:
            raise VisrewardError(f"cot must be one of {', '.join(COT_MODES)}")
        ask = lambda queries: self._judge(queries, batch_size, cot, full_vocabulary, max_new_tokens)  # noqa: E731
        if references is None and self.references:  # a pairwise judge saved with its references compares with them
            references = self.references_for(prompts if prompts is not None else [None] * len(candidate_items(images)))
        return judged(ask, self.sampling, images, prompts, references, instruction or self.settings.get("instruction"), cot)

    def pixel_values(self, images: torch.Tensor, batch: dict) -> torch.Tensor:
        """Differentiable twin of the processor's pixel_values for [B,3,H,W] images in [0,1].

        Resize (bicubic, antialiased) to the size the processor chose, normalise with its mean and
        std, and lay the pixels out as the model expects: per-image tensors (InternVL, LLaVA, ...) or
        Qwen-VL's flattened merge-window patches.
        """
        import torch.nn.functional as F

        settings = self.processor.image_processor
        mean = torch.tensor(settings.image_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(settings.image_std, device=images.device).view(1, 3, 1, 1)
        target = batch["pixel_values"]
        if "image_grid_thw" in batch:
            patch, merge, temporal = settings.patch_size, settings.merge_size, settings.temporal_patch_size
            flat = []
            for image, (_, grid_h, grid_w) in zip(images, batch["image_grid_thw"].tolist()):
                x = F.interpolate(image[None], size=(grid_h * patch, grid_w * patch), mode="bicubic", antialias=True)
                x = ((clamp_unit(x) - mean) / std)[0]
                x = x.reshape(3, grid_h // merge, merge, patch, grid_w // merge, merge, patch).permute(1, 4, 2, 5, 0, 3, 6)
                x = x[:, :, :, :, :, None].expand(*x.shape[:5], temporal, patch, patch)
                flat.append(x.reshape(grid_h * grid_w, 3 * temporal * patch * patch))
            return torch.cat(flat).to(target.dtype)
        per_sample = target.ndim == 5  # Idefics3 / SmolVLM: [B, images, 3, H, W]
        if target.shape[0] != len(images) or (per_sample and target.shape[1] != 1):
            raise VisrewardError(f"{type(self.processor).__name__}: {tuple(target.shape)} pixel values for {len(images)} "
                                 "images; tiled inputs have no differentiable path")
        x = F.interpolate(images, size=tuple(target.shape[-2:]), mode="bicubic", antialias=True)
        x = ((clamp_unit(x) - mean) / std).to(target.dtype)
        return x[:, None] if per_sample else x

    def check_differentiable(self) -> None:
        """Refuse, before any training, a processor that cuts images into tiles: the differentiable
        path feeds each image whole, as the processor does when tiling is off."""
        settings = self.processor.image_processor
        tiling = next((name for name in TILING_SETTINGS if getattr(settings, name, False)), None)
        if tiling:
            raise VisrewardError(f"{type(self.processor).__name__} cuts images into tiles ({tiling}=True), which reward-"
                                 f"gradient training cannot follow; save the judge's processor with {tiling}=False "
                                 "(and judge with it that way) to use it as a differentiable reward")

    def forward(self, images: torch.Tensor, prompts: Sequence[str] | None = None) -> torch.Tensor:
        """Differentiable pointwise P(yes) for [B,3,H,W] images in [0,1] (for reward-gradient training)."""
        prompts = list(prompts) if prompts is not None else [None] * len(images)
        texts = [self.chat_text(question(p, self.settings.get("instruction"), False), 1) for p in prompts]
        batch = self.encode(texts, [[_pil(image)] for image in images])
        batch["pixel_values"] = self.pixel_values(images.to(self.device).float(), batch)
        logits = self.model(**batch).logits[:, -1]
        return yes_probability(logits, self.yes_ids, self.no_ids)

    __call__ = forward

    def requires_grad_(self, requires_grad: bool = True) -> "GenerativeRewardModel":
        self.model.requires_grad_(requires_grad)
        return self

    def score(self, images, prompts=None, references=None, **kwargs) -> torch.Tensor:
        return self.score_with_info(images, prompts, references, **kwargs)[0]

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple[torch.Tensor, dict]:
        """RL-trainer convention: (rewards [B], info with the mean and spread)."""
        scores, info = self.score_with_info(images, prompts)
        return scores, {**info, **spread(scores)}
