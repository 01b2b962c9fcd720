"""One rank of a 2-process GRPO run; started by torchrun from test_grpo.py.

Each rank samples 2 of the step's 4 samples (one group). Before accelerate tears the run down, every rank saves the
weights it ended with, so the test can compare both ranks with each other and with a one-process run.
"""

import sys

import torch
from accelerate import Accelerator

from test_grpo import _config, brightness
from visreward.post_training import run_grpo

if __name__ == "__main__":
    generator, output = sys.argv[1:3]
    end_training = Accelerator.end_training

    def save_weights_then_end(accelerator):
        weights = accelerator.unwrap_model(accelerator._models[0]).state_dict()
        torch.save(weights, f"{output}.rank{accelerator.process_index}.pt")
        end_training(accelerator)

    Accelerator.end_training = save_weights_then_end
    metrics = run_grpo(_config(generator, output, steps=2, prompts_per_step=1, beta=0.0, batch_size=2), reward=brightness)
    assert metrics["world_size"] == 2, metrics["world_size"]
