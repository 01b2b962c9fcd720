"""visreward: reward models for visual generative models, and the post-training that uses them.

    import visreward
    rm = visreward.DiscriminativeRewardModel.from_pretrained("rm/")
    scores = rm.score(images=["a.png", "b.jpg"])
"""

__version__ = "0.1.0"

from .discriminative import DiscriminativeRewardModel, RewardTrainingConfig, train_reward_model  # noqa: E402
from .encoders import available_encoders, load_encoder  # noqa: E402
from .errors import VisrewardError  # noqa: E402
from .features import FeatureCache  # noqa: E402
from .images import load_image  # noqa: E402
from .readers import find_images, read_images  # noqa: E402

__all__ = [
    "DiscriminativeRewardModel", "FeatureCache", "RewardTrainingConfig", "VisrewardError",
    "available_encoders", "find_images", "load_encoder", "load_image", "read_images", "train_reward_model",
]
