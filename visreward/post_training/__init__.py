"""Using a reward: Best-of-N, preference pairs, SFT, Diffusion-DPO, and the GAN-RM rounds loop."""

from .best_of_n import BestOfNConfig, run_best_of_n
from .dpo import DPOConfig, dpo_loss_terms, run_dpo
from .refl import ReFLConfig, run_refl
from .pairs import PairsConfig, build_pairs, read_pairs, run_make_pairs, write_pairs
from .rounds import RoundsConfig, run_rounds
from .sft import SFTConfig, run_sft

__all__ = ["BestOfNConfig", "DPOConfig", "PairsConfig", "ReFLConfig", "RoundsConfig", "SFTConfig", "build_pairs", "dpo_loss_terms",
           "read_pairs", "run_best_of_n", "run_dpo", "run_make_pairs", "run_refl", "run_rounds", "run_sft", "write_pairs"]
