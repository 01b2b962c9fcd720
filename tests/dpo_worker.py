"""One rank of a 2-process Diffusion-DPO run; started by torchrun from test_post_training.py.

Each rank draws different pairs (its batches are seeded by its rank), and only rank 1's monitor fires: both
ranks must stop at the same step with its reason (one stopping alone would leave the other waiting). Before accelerate tears
the run down, every rank saves the weights it ended with, so the test can check that the
gradients were averaged across ranks: equal weights on both, different from the start.
"""

import os
import sys

import torch
from accelerate import Accelerator

from visreward.post_training import DPOConfig, run_dpo


def keep_final_weights(output: str) -> None:
    """Every rank saves the weights it ended with, to OUTPUT.rankN.pt, before accelerate tears the run down."""
    end_training = Accelerator.end_training

    def save_weights_then_end(accelerator):
        weights = accelerator.unwrap_model(accelerator._models[0]).state_dict()
        torch.save(weights, f"{output}.rank{accelerator.process_index}.pt")
        end_training(accelerator)

    Accelerator.end_training = save_weights_then_end


if __name__ == "__main__":
    generator, pairs, output = sys.argv[1:4]
    keep_final_weights(output)
    # rank 1 alone finds every loss "saturated", so its monitor alone fires, after the 5-step warm-up
    saturated_loss = 100.0 if os.environ["RANK"] == "1" else 0.0
    metrics = run_dpo(DPOConfig(generator=generator, pairs=pairs, output=output, steps=8, batch_size=2, beta=1000.0,
                                lr=1e-3, log_every=1, saturated_loss=saturated_loss, chosen_error_ratio=100.0,
                                progress=False))
    assert metrics["world_size"] == 2, metrics["world_size"]
    assert metrics["stopped"]["step"] == 5 and "saturated" in metrics["stopped"]["reason"], metrics["stopped"]
    print(f"rank {os.environ['RANK']} of world size {metrics['world_size']}")
