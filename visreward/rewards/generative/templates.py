"""Our prompt templates for VLM judges (versioned: a trained reward model records the version it used).

Pointwise: one image and the generation prompt; "does this image satisfy the prompt (and the
criteria)?" Pairwise: candidate and reference images; "is image 1 better than image 2?".
Videos are shown as their sampled frames, in order, with questions that say so.
The task instruction (the criteria) comes first; chain-of-thought variants ask for reasons
before (reason-first) or after (decision-first) the yes/no decision.
"""

from __future__ import annotations

TEMPLATE_VERSION = "visreward-rewarddance-v1"
DEFAULT_INSTRUCTION = "You are judging images made by a text-to-image model for how well they follow the prompt and how good they look."
POINTWISE = "{instruction}\nPrompt: {prompt}\nDoes this image satisfy the prompt? Answer yes or no."
PAIRWISE = "{instruction}\nPrompt: {prompt}\nIs image 1 better than image 2? Answer yes or no."
REASON_FIRST = " First explain your reasoning in one or two sentences, then answer."
ANSWER_CUE = "\nFinal answer (yes or no):"


DEFAULT_VIDEO_INSTRUCTION = ("You are judging videos made by a text-to-video model for how well they follow the prompt, "
                             "how good they look and how naturally they move.")
VIDEO_POINTWISE = ("{instruction}\nPrompt: {prompt}\nThe images are {frames} frames of one video, in order. "
                   "Does this video satisfy the prompt? Answer yes or no.")
VIDEO_PAIRWISE = ("{instruction}\nPrompt: {prompt}\nThe first {frames} images are frames of video 1 and the next "
                  "{frames} are frames of video 2, in order. Is video 1 better than video 2? Answer yes or no.")


def user_message(text: str, n_images: int) -> list[dict]:
    """A chat with one user turn: the images first, then the question."""
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


def question(prompt: str | None, instruction: str | None, pairwise: bool, cot: str | None = None, frames: int = 1) -> str:
    """frames: how many images show each video (1: the candidates are images)."""
    if frames > 1:
        template, default = (VIDEO_PAIRWISE if pairwise else VIDEO_POINTWISE), DEFAULT_VIDEO_INSTRUCTION
    else:
        template, default = (PAIRWISE if pairwise else POINTWISE), DEFAULT_INSTRUCTION
    text = template.format(instruction=instruction or default, prompt=prompt or "(none)", frames=frames)
    return text + (REASON_FIRST if cot == "reason-first" else "")
