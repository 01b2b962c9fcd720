"""RewardDance: generative rewards from a vision-language model's P("yes"), and their training."""

from .model import GenerativeRewardModel, answer_token_ids, yes_probability
from .templates import DEFAULT_INSTRUCTION, TEMPLATE_VERSION
from .trainer import VLMTrainingConfig, train_vlm_reward_model

__all__ = ["DEFAULT_INSTRUCTION", "GenerativeRewardModel", "TEMPLATE_VERSION", "VLMTrainingConfig", "answer_token_ids",
           "train_vlm_reward_model", "yes_probability"]
