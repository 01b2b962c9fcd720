"""Using a reward: Best-of-N, preference pairs, SFT, Diffusion-DPO, ReFL, GRPO, and the GAN-RM rounds loop."""

from ..core.lazy import lazy_exports

_EXPORTS = {
    "BestOfNConfig": "best_of_n", "run_best_of_n": "best_of_n", "DPOConfig": "dpo", "dpo_loss_terms": "dpo",
    "GRPOConfig": "grpo", "run_grpo": "grpo",
    "run_dpo": "dpo", "PairsConfig": "..io.pairs", "build_pairs": "..io.pairs", "read_pairs": "..io.pairs", "run_make_pairs": "..io.pairs",
    "write_pairs": "..io.pairs", "ReFLConfig": "refl", "run_refl": "refl", "RoundsConfig": "rounds", "run_rounds": "rounds",
    "SFTConfig": "sft", "run_sft": "sft",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
