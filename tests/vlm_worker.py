"""One rank of a 2-process VLM judge training run; started by torchrun from test_generative.py.

Each rank notes every held-out evaluation it runs, and saves the Bradley-Terry head it holds
at the end of training, so the test can check that only the main process evaluates and that
the head's gradients were averaged (equal heads on both ranks).
"""

import os
import sys

import torch
from accelerate import Accelerator

from visreward.rewards.generative import VLMTrainingConfig, train_vlm_reward_model, trainer

if __name__ == "__main__":
    model, pairs, output = sys.argv[1:4]
    rank = int(os.environ["RANK"])
    accuracy = trainer._pairwise_accuracy

    def noted_accuracy(*args, **kwargs):
        with open(f"{output}.evaluations.rank{rank}", "a") as log:
            log.write("evaluated\n")
        return accuracy(*args, **kwargs)

    trainer._pairwise_accuracy = noted_accuracy
    wait_for_everyone = Accelerator.wait_for_everyone

    def save_head_then_wait(accelerator):  # its last call comes after the last step
        heads = [m for m in accelerator._models if isinstance(accelerator.unwrap_model(m), trainer.BradleyTerryHead)]
        torch.save(accelerator.unwrap_model(heads[0]).state_dict(), f"{output}.head.rank{rank}.pt")
        wait_for_everyone(accelerator)

    Accelerator.wait_for_everyone = save_head_then_wait
    metrics = train_vlm_reward_model(VLMTrainingConfig(model=model, pairs=[pairs], output=output, epochs=1, lr=1e-2,
                                                       batch_size=8, bradley_terry=True, progress=False))
    assert metrics["world_size"] == 2, metrics["world_size"]
    print(f"rank {rank} of world size {metrics['world_size']}, held-out accuracy {metrics['heldout_pairwise_accuracy']}")
