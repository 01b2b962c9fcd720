"""The Bradley-Terry baseline of RewardDance: a linear reward head on a VLM's hidden state, not its yes/no answer.

    visreward train-vlm-rm --model PATH --pairs pairs/ --bradley-terry --output bt-rm/
    rm = load_reward_model("vlm:bt-rm")        # a BradleyTerryRewardModel: score(images, prompts) as every reward

The head reads the backbone's last hidden state at the answer position of the pointwise question; trained with
-log sigmoid(r_chosen - r_rejected), its rewards are unbounded logits, comparable within one model only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from ..spread import spread
from .model import HEAD_FILE, SETTINGS_FILE, GenerativeRewardModel, candidate_items, frames_of, load_backbone
from .templates import question

__all__ = ["HEAD_FILE", "BradleyTerryHead", "BradleyTerryRewardModel", "answer_hidden_state"]


class BradleyTerryHead(torch.nn.Module):
    """A linear reward on the backbone's last hidden state at the answer position."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def answer_hidden_state(judge: GenerativeRewardModel, prompts: list[str | None], visuals: list[list[Image.Image]],
                        instruction: str | None) -> torch.Tensor:
    """visuals: per prompt, [image] or a clip's frames."""
    texts = [judge.chat_text(question(p, instruction, False, frames=len(v)), len(v)) for p, v in zip(prompts, visuals)]
    output = judge.model(**judge.encode(texts, visuals), output_hidden_states=True)
    return output.hidden_states[-1][:, -1]


class BradleyTerryRewardModel:
    """A train-vlm-rm --bradley-terry folder as a reward: the head's value per image (or clip) and prompt."""

    def __init__(self, judge: GenerativeRewardModel, head: BradleyTerryHead):
        self.judge, self.head = judge, head.eval()

    @classmethod
    def from_pretrained(cls, folder, device: str | None = None, dtype: torch.dtype | None = None) -> "BradleyTerryRewardModel":
        from safetensors.torch import load_file

        folder = Path(folder)
        model, processor = load_backbone(str(folder), str(folder), dtype)  # a --lora backbone is its adapter
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        judge = GenerativeRewardModel(model.to(device) if device else model, processor, settings)
        head = BradleyTerryHead(model.config.get_text_config().hidden_size)
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        return cls(judge, head.to(judge.device))

    @property
    def device(self) -> torch.device:
        return self.judge.device

    @torch.no_grad()
    def score(self, images, prompts=None, batch_size: int = 64) -> torch.Tensor:
        """[B] rewards: images or clips as GenerativeRewardModel.score takes them."""
        visuals = [frames_of(item, self.judge.sampling) for item in candidate_items(images)]
        prompts = list(prompts) if prompts is not None else [None] * len(visuals)
        instruction = self.judge.settings.get("instruction")
        return torch.cat([self.head(answer_hidden_state(self.judge, prompts[i : i + batch_size], visuals[i : i + batch_size],
                                                        instruction)).cpu() for i in range(0, len(visuals), batch_size)])

    def reward_fn(self, images, prompts=None, metadata=None) -> tuple[torch.Tensor, dict]:
        scores = self.score(images, prompts)
        return scores, spread(scores)
