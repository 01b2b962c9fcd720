"""One rank of a 2-process GRPO run; started by torchrun from test_grpo.py.

Each rank samples 2 of the step's 4 samples (one group). Every rank saves the weights it ended with, so the test can
compare both ranks with each other and with a one-process run.
"""

import sys

from dpo_worker import keep_final_weights
from test_grpo import _config, brightness

from visreward.post_training import run_grpo

if __name__ == "__main__":
    generator, output = sys.argv[1:3]
    keep_final_weights(output)
    metrics = run_grpo(_config(generator, output, steps=2, prompts_per_step=1, beta=0.0, batch_size=2), reward=brightness)
    assert metrics["world_size"] == 2, metrics["world_size"]
