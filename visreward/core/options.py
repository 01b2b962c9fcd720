"""The options of every command: one config dataclass per command, each field with its help string.

They live here, apart from the code that runs them, so that building the command line (and
`visreward CMD --help`) imports no framework: nothing here imports torch. Each implementation
module re-exports its config (`visreward.post_training.DPOConfig` is `options.DPOConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import option

DEFAULT_ENCODER = "efficientnet-lite0"
BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
TEXT_CONDITIONING = ("none", "embedding", "similarity", "both")
COLOURS = ("auto", "gray", "rgb")
FORMATS = ("trl", "pickapic")
MIXED_PRECISION = ("no", "fp16", "bf16", "auto")
# A video GAN-RM's default pooling over time, chosen by benchmarks/motion_contrasts.py.
VIDEO_POOLING = ("mean", "std", "motion", "flow", "flow-std", "flow-trend")
PROMPTS_WITH_IMAGES = ("prompts, one .txt file with a prompt per line, or one .jsonl file of {\"prompt\", \"image\"} rows "
                       "(image-to-video: the image each prompt's clips start from)")
METHODS = ("dpo", "sft")
MODES = ("pairwise", "pointwise", "both")
COT_MODES = ("reason-first", "decision-first")
VLM_SIZES = ("1x", "4x", "16x")  # train-vlm's model sizes (generative/tiny.py)
NORMALISATIONS = ("none", "zscore", "rank")
SDE_KINDS = ("sde", "cps")


@dataclass
class RewardTrainingConfig:
    target: list[str] = option([], "folders or files of target images: the look you want (label 1)")
    generated: list[str] = option([], "folders or files of the generator's ordinary outputs (label 0)")
    output: str = option("rm", "folder the reward model, its config and metrics are written to")
    unlabeled: list[str] = option([], "pool of further generator outputs for rank-based bootstrapping")
    encoder: str = option(DEFAULT_ENCODER, "frozen image encoder: efficientnet-lite0|efficientnet-lite2|clip:PATH|siglip:PATH|dinov2:PATH")
    media: str = option("auto", "what the inputs are: auto (videos if any input is a video file), image, video "
                                "(also reads each sub-folder of still frames as one clip)", choices=("auto", "image", "video"))
    frames: int = option(16, "videos: frames sampled per clip (saved with the model, which scores clips the same way; "
                             "stalls and skipped frames show only where consecutive frames are seen)")
    fps: float | None = option(None, "videos: take --frames consecutive frames at this rate around the clip's middle "
                                     "(default: spread uniformly over the whole clip)")
    pooling: list[str] = option(list(VIDEO_POOLING),
                                "videos: per-frame features pooled over time: mean, std (over frames), motion (mean "
                                "|difference| of consecutive frames); on the encoder's spatial maps, flow (mean "
                                "|difference| of consecutive maps: translation), flow-std (the spread over the clip of that "
                                "change, averaged over groups of 32 channels, relative to its mean: stalls, skips) and "
                                "flow-trend (its trend relative to the clip's mean change: accelerating or reversed motion)")
    map_weight: float = option(1.0, "videos: scales the map poolings' weights in the head's standardised input (flow "
                                     "1, flow-std and flow-trend 1/4 against 1 for the others): below 1 their features "
                                     "weigh less against appearance (benchmarks/motion_contrasts.py)")
    heads: int | None = option(None, "MLPs in the head, each validated on its own fold of the non-test inputs (1: one, "
                                     "validated on --holdout); the reward is their mean logit (default: 5 for videos, "
                                     "whose held-out AUC otherwise hangs on which clips validate; 1 for images)")
    hidden_dim: int = option(512, "hidden width of the MLP head (0: a linear head)")
    dropout: float = option(0.1, "dropout inside the head")
    text_conditioning: str = option("none", "prompt as extra head input (needs a CLIP-like encoder)", choices=TEXT_CONDITIONING)
    epochs: int = option(100, "maximum training epochs per bootstrap round")
    batch_size: int = option(256, "head training batch size")
    lr: float | None = option(None, "AdamW learning rate (default: 3e-4 for videos, 1e-3 for images)")
    weight_decay: float = option(1e-2, "AdamW weight decay")
    holdout: float = option(0.2, "fraction of target and of generated images held out for early stopping (validation) "
                                 "by a head of one MLP (with --heads k, each MLP validates on its own 1/k)")
    test: float = option(0.1, "further fraction of each side held out and never used for selection: the reported AUC")
    patience: int = option(10, "stop after this many epochs without a better validation AUC/loss")
    off_manifold: float = option(0.5, "off-manifold negatives (noise, blank, saturated colour, wrecked generated images; "
                                      "for clips also one with its motion wrecked: frozen, shuffled or flickering) per "
                                      "generated training image, label 0: keeps exploits from scoring high (0: none)")
    off_data_penalty: float = option(10.0, "inputs whose features lie beyond the training data's 99th-percentile distance "
                                          "p99 score lower by this x (distance - p99) / p99: the head only extrapolates "
                                          "there (0: off)")
    bootstrap_rounds: int = option(1, "bootstrap rounds over --unlabeled (ignored without it)")
    alpha: float = option(0.05, "soft-label decay: the rank-r bootstrapped positive gets label exp(-alpha*r)")
    m: int = option(64, "how many top- and bottom-ranked unlabeled images join per round")
    accumulate: bool = option(False, "bootstrap selections accumulate across rounds (D_f grows) instead of being replaced")
    seed: int = option(0, "random seed (split, initialisation, batches)")
    device: str = option("cpu", "torch device for the encoder and head")
    backend: str = option("auto", "encoder runtime for feature extraction: auto (onnx on CPU), torch, onnx", choices=BACKENDS)
    precision: str = option("fp32", "encoder precision for feature extraction (bf16/fp16 drift slightly); auto: bf16 where native, else fp32", choices=PRECISIONS)
    encode_batch_size: int = option(32, "images per encoder forward pass")
    num_workers: int = option(4, "threads reading and decoding images")
    cache_dir: str | None = option(None, "feature cache folder (default: $VISREWARD_CACHE or ~/.cache/visreward)")
    no_cache: bool = option(False, "do not read or write the feature cache")
    strict: bool = option(False, "fail on the first unreadable image instead of skipping it")
    progress: bool = option(True, "show progress bars")


@dataclass
class ScoreConfig:
    inputs: list[str] = option([], "image folders, files, lists (.txt), WebDataset .tar, parquet", positional=True)
    model: str = option("rm", "reward model: a GAN-RM folder or Hub repo id, vlm:PATH_OR_ID (a vision-language judge), "
                              "vlm-api:URL#MODEL, or clipscore:/pickscore:/aesthetic:PATH")
    output: str = option("scores.parquet", "FILE.parquet (parts merged when done) or a FOLDER of parquet parts")
    prob: bool = option(False, "also write the probability column (sigmoid of the logit)")
    batch_size: int = option(64, "images per encoder forward pass")
    num_workers: int = option(4, "threads reading, decoding and preprocessing images")
    shard_size: int = option(10_000, "images per shard (the unit of work, resumption and output)")
    rank: int | None = option(None, "this process's rank (default: from torchrun/accelerate/SLURM, else 0)")
    world_size: int | None = option(None, "number of processes (default: from torchrun/accelerate/SLURM, else 1)")
    device: str = option("cpu", "torch device; 'cuda' uses cuda:LOCAL_RANK")
    backend: str = option("auto", "encoder runtime: auto (onnx on CPU when it exports), torch, onnx", choices=BACKENDS)
    precision: str = option("fp32", "encoder precision; bf16/fp16 are faster and drift slightly; auto: bf16 where native, else fp32", choices=PRECISIONS)
    cache_dir: str | None = option(None, "feature cache folder (default: $VISREWARD_CACHE or ~/.cache/visreward)")
    no_cache: bool = option(False, "do not read or write the feature cache")
    strict: bool = option(False, "fail on the first unreadable image instead of skipping it")
    progress: bool = option(True, "show a progress bar")
    engine: str = option("local", "local: this process (or torchrun/SLURM ranks); ray: a Ray Data pipeline, decoding in "
                                  "CPU tasks and scoring in a pool of reward-model actors", choices=("local", "ray"))
    ray_address: str | None = option(None, "Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance)")
    ray_actors: int = option(1, "reward-model actors (each loads the model once)")
    ray_gpus_per_actor: float = option(0.0, "GPUs each actor holds (its device is then cuda)")
    ray_cpus_per_actor: float = option(1.0, "CPUs each actor holds")
    ray_cpus_per_decoder: float = option(1.0, "CPUs each decoding task holds")


@dataclass
class MergeConfig:
    parts: str = option("scores", "folder of parquet parts written by `visreward score`", positional=True)
    output: str = option("scores.parquet", "single parquet file written (atomically)")


@dataclass
class EvalConfig:
    model: str = option("rm", "reward model folder")
    target: list[str] = option([], "held-out target images (folders or files)")
    generated: list[str] = option([], "held-out generated images (folders or files)")
    output: str | None = option(None, "also write the metrics as JSON here")
    batch_size: int = option(32, "images per encoder forward pass")
    num_workers: int = option(4, "threads reading and decoding images")
    device: str = option("cpu", "torch device")
    cache_dir: str | None = option(None, "feature cache folder")
    no_cache: bool = option(False, "do not read or write the feature cache")
    strict: bool = option(False, "fail on the first unreadable image instead of skipping it")
    probes: bool = option(False, "also score noise, blank, saturated, checkerboard and gradient-ascent probes")
    progress: bool = option(True, "show progress bars")


@dataclass
class GenerateConfig:
    prompts: list[str] = option([], PROMPTS_WITH_IMAGES)
    output: str = option("samples", "imagefolder written (PNG, or H.264 mp4 from a video pipeline, + metadata.jsonl with "
                                    "prompt, seed, a video's frame count and an image-to-video sample's image)")
    generator: str = option("digits", "'digits' (bundled; trained and cached on first use), a generator folder, or a diffusers "
                                      "text-to-image, text-to-video or image-to-video pipeline")
    n: int = option(1, "samples per prompt")
    seed: int = option(0, "sample k uses seed + k")


@dataclass
class GeneratorTrainingConfig:
    data: list[str] = option([], "imagefolder(s) whose metadata.jsonl gives a prompt per image (each distinct prompt is a class)")
    output: str = option("generator", "folder the trained generator is written to (checkpoints/ inside while training)")
    resolution: int | None = option(None, "image side in pixels, 8 to 64 (default: the images' own size)")
    colour: str = option("auto", "gray (1 channel) or rgb; auto: gray when every image is grayscale", choices=COLOURS)
    steps: int = option(600, "training steps")
    batch_size: int = option(128, "training batch size")
    lr: float = option(2e-3, "peak learning rate (one-cycle schedule)")
    width: int = option(64, "UNet width (channels at the first resolution level)")
    inference_steps: int = option(25, "DDIM sampling steps")
    frames: int | None = option(None, "train a video generator: frames per clip, spread over each training clip "
                                      "(the data are videos or folders of frames)")
    fps: float = option(8.0, "video generators: the frame rate their clips are written at")
    prediction_type: str = option("epsilon", "what the UNet predicts: epsilon, or v_prediction (cleaner clips after "
                                             "short training: measured 0.68 vs 0.21 digit accuracy at 800 steps)",
                                  choices=("epsilon", "v_prediction"))
    mixed_precision: str = option("auto", "bf16: train under bf16 autocast (1.8x faster where bf16 is native: CUDA, or a "
                                          "CPU with AVX512_BF16/AMX; 2x slower on others); auto: bf16 only where native",
                                  choices=("auto", "no", "bf16"))
    min_per_prompt: int = option(8, "refuse prompts with fewer images than this")
    checkpoint_every: int = option(200, "save a resumable checkpoint every this many steps")
    seed: int = option(0, "training seed")
    progress: bool = option(True, "show a progress bar")


@dataclass
class BestOfNConfig:
    generator: str = option("digits", "'digits' (bundled), a generator folder, or a diffusers pipeline folder / hub id")
    reward: str = option("rm", "reward model: what `score --model` takes (a GAN-RM folder, vlm:, vlm-api:, "
                               "clipscore:/pickscore:/aesthetic:)")
    references: str | None = option(None, "vlm rewards: top-K = pointwise pass, then pairwise rerank against the group's top K")
    prompts: list[str] = option([], PROMPTS_WITH_IMAGES)
    output: str = option("bon", "run folder: best/, samples/, scores.parquet")
    n: int = option(16, "samples per group")
    repeats: int = option(1, "independent best-of-N groups per prompt (more selected samples per prompt)")
    keep: int = option(1, "samples kept per group (top-k)")
    keep_bottom: int = option(0, "also keep the k lowest-scored samples per group in worst/")
    seed: int = option(0, "sample k uses seed + k")
    batch_size: int = option(64, "samples generated and scored per batch")
    device: str = option("cpu", "torch device")
    backend: str = option("auto", "reward encoder runtime", choices=BACKENDS)
    precision: str = option("fp32", "reward encoder precision (auto: bf16 where native, else fp32)", choices=PRECISIONS)
    progress: bool = option(True, "show a progress bar")


@dataclass
class PairsConfig:
    scores: str = option("scores.parquet", "score table with path, prompt, score (from score or best-of-n)")
    output: str = option("pairs", "folder written (atomically)")
    format: str = option("trl", "trl (imagefolder + metadata.jsonl) or pickapic (parquet with image bytes)", choices=FORMATS)
    margin: float | None = option(None, "besides best vs worst, also emit every other pair of a group whose scores differ by more than this")
    group_by: str | None = option(None, "column whose equal values form one group (default: group if present, else prompt)")


@dataclass
class FineTuneConfig:
    generator: str = option("digits", "'digits' (bundled), a generator folder, or a diffusers pipeline folder / hub id")
    output: str = option("finetuned", "run folder: generator/, checkpoints/, logs/, metrics.json")
    steps: int = option(200, "optimizer steps")
    batch_size: int = option(32, "examples (SFT images, DPO pairs) per step and process")
    lr: float = option(1e-4, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping")
    gradient_accumulation: int = option(1, "micro-steps per optimizer step")
    mixed_precision: str = option("no", "accelerate mixed precision; auto: bf16 only where it is native (CUDA with bf16, "
                                        "a CPU with AVX512_BF16/AMX), else no", choices=MIXED_PRECISION)
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory, more time)")
    lora: bool = option(False, "train LoRA adapters (peft) instead of all denoiser weights")
    lora_rank: int = option(8, "LoRA rank")
    lora_alpha: float = option(8.0, "LoRA alpha")
    lora_targets: list[str] = option(["to_q", "to_k", "to_v", "to_out.0"], "module names LoRA adapts")
    checkpoint_every: int = option(100, "save a resumable checkpoint every this many steps")
    log_every: int = option(10, "log (tensorboard, metrics.json) every this many steps")
    seed: int = option(0, "seed for batches, noise and timesteps")
    device: str = option("cpu", "cpu, or cuda (one GPU per process under accelerate/torchrun)")
    progress: bool = option(True, "show a progress bar")


@dataclass
class HackingOptions:
    """The reward-hacking monitors' limits (post_training/monitors.py), shared by the trainers that sample against a
    reward."""

    collapse_ratio: float = option(0.2, "hacking: the batch reward std falls below this fraction of its start")
    above_target: float = option(0.5, "hacking: this fraction of samples scores above every held-out target image")
    off_manifold: float = option(0.5, "hacking: this fraction of samples lies beyond the reward's training data")
    independent_drop: float = option(0.1, "hacking: the independent check (digit classifier or prompt agreement) "
                                          "drops this far")
    stop_on_hacking: bool = option(True, "stop (and keep the weights from before the alarm) when a hacking monitor fires")
    agreement_encoder: str | None = option(None, "clip:PATH_OR_ID or siglip:...: where the generator has no independent "
                                                 "check (diffusers pipelines), the fraction of samples nearer their own "
                                                 "prompt than the batch's other prompts is one (not the reward's encoder)")


@dataclass
class ProbeOptions:
    """SFT and DPO do not sample while they train: a fixed probe set shows the hacking monitors what they make."""

    probe_every: int = option(20, "every this many steps, sample a fixed probe set (the same prompts and noise each "
                                  "time) and read it with the hacking monitors (0: never)")
    probe_samples: int = option(64, "probe-set samples, spread over the training data's prompts")
    probe_drop: float = option(0.05, "hacking: the probe set's independent check drops this far (tighter than "
                                     "--independent-drop: the same noise each time makes it a paired comparison)")
    probe_steps: int = option(20, "sampler steps for the probe set")
    reward: str | None = option(None, "the reward the training data were selected by (a GAN-RM folder or "
                                      "vlm:PATH_OR_ID): the probe set's spread, above-target and off-manifold monitors; "
                                      "without it the probe set has only the generator's independent check")


@dataclass
class SFTConfig(HackingOptions, ProbeOptions, FineTuneConfig):
    data: list[str] = option([], "imagefolder(s) of selected samples with prompts (e.g. best-of-n output)")
    heldout_error_ratio: float = option(1.25, "hacking: the error on the held-out tenth of the data (at most 32 "
                                              "images, never trained on) rises above this multiple of its start")


@dataclass
class DPOConfig(HackingOptions, ProbeOptions, FineTuneConfig):
    pairs: str = option("pairs", "preference pairs: make-pairs output (trl) or Pick-a-Pic parquet")
    lr: float = option(2e-6, "AdamW learning rate (1e-4 over-optimised the bundled digits within 30 steps; 1e-5 cost "
                             "4 points of digit accuracy in one round)")
    beta: float = option(5000.0, "DPO KL strength (the paper's 5000 for Stable Diffusion; also the bundled digits' best)")
    chosen_error_ratio: float = option(1.5, "hacking: the policy's denoising error on chosen images rises above this "
                                            "multiple of the reference's (it stops denoising the data)")
    saturated_loss: float = option(0.02, "hacking: the running DPO loss falls below this (every pair separated)")
    max_epochs: float = option(50.0, "run at most this many passes over the pairs, fewer steps than --steps where "
                                     "the pairs are few (inf: --steps). On 18 pairs of textures the look overshot "
                                     "after 100 passes and the content went after 200; the demo makes 40 "
                                     "(benchmarks/transfer.py)")
    sft_weight: float = option(0.0, "add this multiple of the policy's denoising loss on the chosen images (an SFT "
                                    "term that keeps the policy denoising the data it prefers)")


@dataclass
class ReFLConfig(HackingOptions, FineTuneConfig):
    reward: str = option("rm", "differentiable reward: a GAN-RM folder, vlm:PATH_OR_ID, or clipscore:/pickscore:/"
                               "aesthetic:PATH")
    prompts: list[str] = option([], "prompts, or one .txt file with a prompt per line")
    num_inference_steps: int = option(20, "sampler steps from noise to image")
    last_steps: int = option(5, "the gradient step is drawn from the last this-many sampler steps")
    frames_with_grad: int | None = option(None, "video pipelines: back-propagate the reward through this many random "
                                                "frames of each clip (default: all); saves memory")


@dataclass
class GRPOConfig(HackingOptions, FineTuneConfig):
    reward: list[str] = option(["rm"], "reward: what `score --model` takes, a visreward serve URL, or several "
                                       "NAME=SPEC[:WEIGHT] combined (see --normalise)")
    normalise: str = option("none", "several rewards: each one's normalisation before weighting", choices=NORMALISATIONS)
    backend: str = option("auto", "GAN-RM rewards: encoder runtime (auto: onnx on CPU)", choices=BACKENDS)
    prompts: list[str] = option([], "prompts, or one .txt file with a prompt per line")
    steps: int = option(40, "GRPO steps: each samples --prompts-per-step groups, scores them and trains on them")
    lr: float = option(3e-5, "AdamW learning rate (chosen on the bundled digits by benchmarks/grpo_sweep.py)")
    batch_size: int = option(8, "samples per optimizer step and process (each over its trained timesteps)")
    group_size: int = option(8, "samples per prompt, whose rewards set each other's advantages (real models: 16-24)")
    prompts_per_step: int = option(4, "prompts (groups) sampled per step, shared by all processes")
    sample_steps: int = option(10, "sampler steps from noise to image while collecting samples")
    sample_batch_size: int = option(16, "samples per sampling forward pass and process")
    noise_level: float | None = option(None, "the sampler's noise: flow models' a (default 0.7), DDIM's eta "
                                             "(default 1.0); 0 is the deterministic sampler")
    sde: str = option("sde", "flow models' stochastic step: sde (Flow-GRPO) or cps (coefficients-preserving)",
                      choices=SDE_KINDS)
    train_timestep_fraction: float = option(0.5, "fraction of the stochastic steps trained on, drawn per batch (1: all, "
                                                 "as DDPO; half costs half the training time)")
    sde_window_size: int = option(0, "stochastic steps per rollout, a window drawn per step inside --sde-window-range; "
                                     "the others are deterministic and every window step is trained (Flow-GRPO-Fast; "
                                     "0: every step stochastic, --train-timestep-fraction of them trained)")
    sde_window_range: list[int] | None = option(None, "START END: the window lies within steps START..END-1 "
                                                      "(default: the first half of --sample-steps)")
    ema_decay: float = option(0.0, "keep an EMA of the trained weights (diffusers' EMAModel, its warm-up) and save it "
                                   "instead of the last weights (0: none; Flow-GRPO uses 0.9)")
    inner_epochs: int = option(1, "passes over each step's samples")
    clip_range: float = option(1e-4, "PPO clip range of the probability ratio")
    adv_clip: float = option(5.0, "advantages are clipped to +-this")
    global_std: bool = option(False, "normalise advantages by the std of all of a step's rewards, not each group's")
    beta: float = option(0.04, "KL strength to the reference (the LoRA-disabled or frozen initial denoiser; 0: none)")
    no_cfg: bool = option(False, "sample and train without classifier-free guidance")
    log_every: int = option(1, "log (tensorboard, metrics.json) every this many steps")
    checkpoint_every: int = option(10, "save a resumable checkpoint every this many steps")


@dataclass
class RoundsConfig:
    generator: str = option("digits", "starting generator G_0")
    target: list[str] = option([], "the fixed target images (folders or files)")
    prompts: list[str] = option([], "prompts, or one .txt file with a prompt per line")
    output: str = option("run", "run folder: round-1/, round-2/, ... and rounds.json")
    rounds: int = option(3, "number of rounds")
    method: str = option("dpo", "fine-tuning per round", choices=METHODS)
    n: int = option(16, "best-of-N samples per group")
    repeats: int | None = option(None, "best-of-N groups per prompt per round (default: 16 for SFT, 8 for DPO)")
    keep: int = option(1, "SFT: the top-k samples of each group it fine-tunes on (DPO pairs best with worst)")
    negatives_per_prompt: int = option(40, "fresh generator samples per prompt the reward model trains against")
    pool_per_prompt: int = option(20, "further samples per prompt for rank-based bootstrapping (0: none)")
    frames: int = option(8, "video generators: frames the reward models sample per clip")
    pooling: list[str] = option(list(VIDEO_POOLING), "video generators: how the reward models pool frames over time "
                                                     "(train-rm --pooling)")
    steps: int | None = option(None, "fine-tuning steps per round (default: 50 for SFT, 100 for DPO)")
    lr: float | None = option(None, "fine-tuning learning rate (default: 1e-5 for SFT, 2e-6 for DPO, tuned on the "
                                    "bundled generator by benchmarks/demo_sweep.py)")
    batch_size: int = option(32, "fine-tuning batch size (images or pairs)")
    mixed_precision: str = option("no", "fine-tuning mixed precision (accelerate)", choices=MIXED_PRECISION)
    beta: float = option(5000.0, "DPO beta (see `visreward dpo --help`)")
    probe_samples: int = option(64, "fine-tuning's probe-set samples, read with the round's reward (0: none)")
    lora: bool = option(False, "fine-tune LoRA adapters instead of all weights")
    seed: int = option(0, "base seed")
    device: str = option("cpu", "torch device")
    backend: str = option("auto", "reward encoder runtime", choices=BACKENDS)
    precision: str = option("fp32", "reward encoder precision (auto: bf16 where native, else fp32)", choices=PRECISIONS)
    cache_dir: str | None = option(None, "feature cache folder")
    progress: bool = option(True, "show progress bars")


@dataclass
class VLMTrainingConfig:
    model: str = option("", "VLM to start from: a local folder or hub id")
    pairs: list[str] = option([], "preference pairs: make-pairs output (trl), Pick-a-Pic parquet")
    output: str = option("vlm-rm", "folder written: the adapter (or model), processor, settings, metrics")
    mode: str = option("pairwise", "training examples made from each pair", choices=MODES)
    cot: str | None = option(None, "chain-of-thought targets from each pair's rationale", choices=(None,) + COT_MODES)
    instruction: str | None = option(None, "task instruction (criteria) placed in every question")
    references: str | None = option(None, "reference images or clips (an imagefolder; a metadata.jsonl prompt makes one "
                                          "a prompt's own) saved with a pairwise judge: score, serve and grpo then "
                                          "compare each candidate with its prompt's references, both orders averaged")
    frames: int = option(8, "video pairs: frames of each clip the judge sees, in order (saved with it, so it scores "
                            "videos the same way)")
    bradley_terry: bool = option(False, "train the regression-head + Bradley-Terry baseline instead")
    lora: bool = option(False, "train LoRA adapters (peft) instead of all weights")
    lora_rank: int = option(16, "LoRA rank")
    lora_targets: list[str] = option(["q_proj", "k_proj", "v_proj", "o_proj"], "module names LoRA adapts")
    epochs: int = option(3, "passes over the training pairs")
    batch_size: int = option(8, "examples per step")
    lr: float = option(1e-4, "AdamW learning rate")
    holdout: float = option(0.2, "fraction of pairs held out for pairwise accuracy")
    seed: int = option(0, "seed for the split and the example order")
    device: str = option("cpu", "torch device")
    progress: bool = option(True, "show progress bars")


@dataclass
class VLMPretrainingConfig:
    data: list[str] = option([], "captioned images: imagefolders with a metadata.jsonl caption (prompt, text or caption) "
                                 "per file; none: the package's real digits, captioned by digit and stroke weight")
    output: str = option("vlm", "folder written: the model, its processor, the pretraining metrics")
    size: str = option("4x", "model size: hidden width 32, 64 or 128 (about 4x the parameters a step)",
                       choices=VLM_SIZES)
    steps: int = option(1500, "optimiser steps")
    batch_size: int = option(32, "captioned images per step")
    lr: float = option(2e-3, "AdamW peak learning rate (warm-up, then cosine decay to a tenth)")
    holdout: float = option(0.1, "fraction of the images held out for the caption loss")
    seed: int = option(0, "seed for the weights, the split and the batches")
    device: str = option("cpu", "torch device")
    progress: bool = option(True, "show progress bars")


@dataclass
class ServeConfig:
    reward: list[str] = option([], "NAME=SPEC[:WEIGHT], repeatable; SPEC is what `score --model` takes (a GAN-RM "
                                   "folder, vlm:, vlm-api:, clipscore:/pickscore:/aesthetic:), WEIGHT its weight in the combined score (default 1)")
    host: str = option("127.0.0.1", "address to bind (127.0.0.1: this machine only)")
    port: int = option(8000, "port")
    max_batch: int = option(64, "images per model call: concurrent requests are merged up to this")
    max_wait_ms: float = option(5.0, "how long a batch waits to fill")
    max_queue: int = option(1024, "images waiting per reward; requests beyond get 503")
    max_request_mb: float = option(64.0, "request bodies over this many MiB get 413")
    max_images: int = option(1024, "requests with more images get 413, before any is decoded")
    max_pixels: int = option(2**26, "requests whose images declare more pixels in all get 413, before any is decoded "
                                    "(default: 64 images of 1024x1024)")
    token: str | None = option(None, "require 'Authorization: Bearer TOKEN' (default: $VISREWARD_TOKEN, else none)")
    accept_pickle: bool = option(False, "also serve the ddpo-pytorch / flow_grpo pickle protocol at POST / (off by "
                                        "default: unpickling network data is how servers get taken over; ours admits "
                                        "only plain values and numpy arrays, but keep it to trusted networks)")
    normalise: str = option("none", "per-reward normalisation before weighting", choices=NORMALISATIONS)
    window: int = option(1024, "recent scores per reward kept for statistics and z-scores")
    device: str = option("cpu", "torch device for the models")
    backend: str = option("auto", "GAN-RM encoder runtime (auto, torch, onnx)")
    precision: str = option("fp32", "GAN-RM encoder precision (auto: bf16 where native, else fp32)")
    cache_dir: str | None = option(None, "cache for exported encoders")


@dataclass
class ReportConfig:
    run: str = option("demo_out", "a demo run folder (with demo_metrics.json)", positional=True)


@dataclass
class DemoConfig:
    output: str = option("demo_out", "folder for images, reward models, generators, metrics and report.html")
    generator: str = option("digits", "the base generator: digits (bundled), or a train-generator folder of digit prompts")
    look: float = option(0.3, "the target look: digits whose ink mass is in this top fraction of their class")
    n_target: int = option(400, "target images (bold digits of the training split)")
    target_sizes: list[int] = option([50, 100, 200, 400], "target-set sizes for the AUC / Best-of-16 curve")
    eval_per_digit: int = option(16, "evaluation prompts per digit for every table row")
    rounds: int = option(2, "rounds of the GAN-RM loop, for SFT and for DPO")
    n: int = option(16, "best-of-N samples per group inside the loop")
    repeats: int | None = option(None, "best-of-N groups per digit per round (SFT images / DPO pairs = 10 x repeats; "
                                       "default: 16 for SFT, 8 for DPO, as `rounds`)")
    negatives_per_prompt: int = option(40, "fresh samples per digit each round's reward model trains against")
    pool_per_prompt: int = option(20, "further samples per digit for rank-based bootstrapping")
    sft_steps: int = option(50, "SFT steps per round")
    sft_lr: float = option(1e-5, "SFT learning rate")
    dpo_steps: int = option(100, "DPO steps per round")
    dpo_lr: float = option(2e-6, "DPO learning rate")
    beta: float = option(5000.0, "DPO beta")
    probe_samples: int = option(64, "the fine-tuning probe set's samples (0: none)")
    grpo_steps: int = option(30, "GRPO steps against the round-1 reward model (0: no GRPO row)")
    grpo_lr: float = option(3e-5, "GRPO learning rate")
    grpo_beta: float = option(0.04, "GRPO KL strength to the base generator")
    probe_starts: int = option(4, "generated images the gradient-ascent probe starts from")
    seeds: int = option(1, "independent repetitions (sampling, reward training, fine-tuning); the table is mean +- sd")
    seed: int = option(0, "first seed")
    cache_dir: str | None = option(None, "cache for features and the bundled generator")
    video: bool = option(False, "run the video miniature instead (moving digits; its options: visreward demo --video --help)")
    judges: bool = option(False, "run the RewardDance miniature instead (VLM judges against a gold preference; its "
                                 "options: visreward demo --judges --help)")


# demo_judges.PROXIES, in its order, torch-free for --help (a test keeps the two one list)
PROXY_NAMES = ("generative", "bradley-terry", "pointwise", "no-instruction", "target-reference", "cot", "1x", "16x",
               "fewer-pairs", "more-pairs", "not-pretrained")


@dataclass
class JudgesDemoConfig:
    judges: bool = option(True, "the RewardDance miniature: proxy VLM judges trained on noisy labels of a gold preference")
    output: str = option("demo_judges_out", "folder for samples, pairs, proxies, demo_metrics.json and report.html")
    generator: str = option("digits", "the base generator: digits (bundled), or a train-generator folder of digit prompts")
    proxies: list[str] = option(list(PROXY_NAMES), "proxies to train and measure (demo_judges.PROXIES says what each is)")
    agreement: float = option(0.775, "how often the Bradley-Terry labels agree with the gold's sign (human raters: 0.75-0.8)")
    pairs: int = option(1000, "labelled pairs of each proxy (fewer-pairs: a quarter, more-pairs: four times as many)")
    train_per_prompt: int = option(400, "base samples per digit that the labelled pairs are drawn from")
    heldout_per_prompt: int = option(100, "further base samples per digit for the held-out pairs")
    heldout_pairs: int = option(500, "held-out pairs, labelled by the gold's sign")
    bon_pool: int = option(128, "further base samples per digit that Best-of-N (N up to 64) picks from")
    epochs: int = option(4, "train-vlm-rm epochs per proxy")
    batch_size: int = option(16, "train-vlm-rm examples per step")
    lr: float = option(3e-4, "train-vlm-rm learning rate")
    rl_proxies: list[str] = option(["generative", "bradley-terry", "1x", "16x"], "proxies the generator is also "
                                                                                 "optimised against with GRPO")
    rl_steps: int = option(40, "GRPO steps against each of --rl-proxies")
    rl_control: bool = option(True, "also run GRPO against a random reward: what the gold does under GRPO alone")
    rl_lr: float = option(1e-4, "GRPO learning rate (higher than grpo's default, to reach overoptimisation)")
    rl_beta: float = option(0.01, "GRPO KL strength to the base generator")
    pretrain_steps: int = option(1500, "train-vlm steps of each size's pretraining on the captioned digits")
    seeds: int = option(1, "independent repetitions (samples, labels, proxy training); the table is mean +- sd")
    seed: int = option(0, "first seed")
    workers: int = option(0, "proxies trained at once, each in its own process with its share of the threads "
                             "(0: one per thread)")
    cache_dir: str | None = option(None, "cache for the bundled generator and the pretrained VLMs")


@dataclass
class VideoDemoConfig:
    video: bool = option(True, "the video miniature: the bundled moving-digits generator and clips of real digits")
    output: str = option("demo_video_out", "folder for clips, reward models, generators, metrics and report.html")
    generator: str = option("moving-digits", "the base generator: moving-digits (bundled), or a train-generator folder "
                                             "of clips with its prompts")
    directions: list[str] = option(["right", "down"], "the motions prompted, 10 digits each (the generator knows "
                                                       "right, left, down, up)")
    look: float = option(0.3, "the target look: clips whose speed is in this slowest fraction (slow, steady motion)")
    n_target: int = option(400, "target clips (slow clips of the training split)")
    eval_per_prompt: int = option(2, "evaluation groups of 16 per prompt for every row (2 or more: diversity is "
                                      "measured within a prompt)")
    rounds: int = option(2, "rounds of the GAN-RM loop, for SFT and for DPO")
    n: int = option(8, "best-of-N samples per group inside the loop")
    sft_repeats: int = option(2, "best-of-N groups per prompt per SFT round (the clips SFT trains on)")
    dpo_repeats: int = option(2, "best-of-N groups per prompt per DPO round (the pairs DPO trains on)")
    negatives_per_prompt: int = option(4, "fresh clips per prompt each round's reward model trains against")
    pool_per_prompt: int = option(0, "further clips per prompt for rank-based bootstrapping")
    frames: int = option(2, "frames the reward models sample per clip (of 8; pooling sees their change)")
    pooling: list[str] = option(["mean", "std", "motion"], "how the reward models pool their frames over time: with 2 "
                                "frames the map poolings' spread and trend are constant, and the train-rm default "
                                "moved GRPO 0.04 of the way to the target against 0.22 with these (3 seeds)")
    sft_steps: int = option(50, "SFT steps per round")
    sft_lr: float = option(1e-5, "SFT learning rate")
    dpo_steps: int = option(60, "DPO steps per round")
    dpo_lr: float = option(5e-6, "DPO learning rate")
    grpo_steps: int = option(20, "GRPO steps against the round-1 reward model (0: no GRPO row)")
    grpo_lr: float = option(1e-4, "GRPO learning rate (seed 0, 30 steps: 1e-4 moved the speed 0.14 of the way to the "
                                  "target, accuracy within 2 points; 3e-4 did not move it and lost 6 points)")
    grpo_beta: float = option(0.04, "GRPO KL strength to the base generator")
    beta: float = option(250.0, "DPO beta (one round from base, seed 0: beta 5000 moved the speed 0.02 of the way to "
                                "the target, 1000 0.10, 250 0.27, digit accuracy unchanged)")
    batch_size: int = option(16, "fine-tuning batch size (clips or pairs)")
    probe_samples: int = option(16, "the fine-tuning probe set's clips (0: none)")
    mixed_precision: str = option("auto", "fine-tuning mixed precision (auto: bf16 where it is native, else fp32)",
                                  choices=MIXED_PRECISION)
    seeds: int = option(3, "independent repetitions (sampling, reward training, fine-tuning); the table is mean +- sd")
    seed: int = option(0, "first seed")
    cache_dir: str | None = option(None, "cache for features and the bundled generator")

