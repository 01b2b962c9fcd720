"""GAN-RM: a discriminative reward model trained on target vs generated images."""

from .head import RewardHead
from .model import DiscriminativeRewardModel
from .trainer import RewardTrainingConfig, train_reward_model

__all__ = ["DiscriminativeRewardModel", "RewardHead", "RewardTrainingConfig", "train_reward_model"]
