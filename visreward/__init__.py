"""visreward: reward models for visual generative models, and the post-training that uses them.

    import visreward
    rm = visreward.DiscriminativeRewardModel.from_pretrained("rm/")          # GAN-RM
    scores = rm.score(images=["a.png", "b.jpg"])
    judge = visreward.GenerativeRewardModel.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct")   # RewardDance
    generator = visreward.load_generator("digits")                            # or a diffusers pipeline
"""

from .core import __version__
from .core.errors import VisrewardError
from .core.lazy import lazy_exports

_EXPORTS = {
    "DiscriminativeRewardModel": "rewards.discriminative", "RewardTrainingConfig": "rewards.discriminative",
    "train_reward_model": "rewards.discriminative", "GenerativeRewardModel": "rewards.generative",
    "VLMTrainingConfig": "rewards.generative", "train_vlm_reward_model": "rewards.generative",
    "load_reward_model": "rewards.loader", "combine": "rewards.combination", "RemoteReward": "rewards.remote",
    "AsyncRemoteReward": "rewards.remote", "available_encoders": "encoders", "load_encoder": "encoders",
    "FeatureCache": "encoders.features", "load_generator": "generators", "load_image": "io.images",
    "find_images": "io.readers", "read_images": "io.readers",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS) + ["VisrewardError"]
