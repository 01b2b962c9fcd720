"""One rank of a 2-process Diffusion-DPO run; started by torchrun from test_post_training.py."""

import os
import sys

from visreward.post_training import DPOConfig, run_dpo

if __name__ == "__main__":
    generator, pairs, output = sys.argv[1:4]
    metrics = run_dpo(DPOConfig(generator=generator, pairs=pairs, output=output, steps=2, batch_size=2, beta=1000.0,
                                log_every=1, progress=False))
    # accelerate's process group is gone after training; its world size is in the metrics
    assert metrics["world_size"] == 2, metrics["world_size"]
    print(f"rank {os.environ['RANK']} of world size {metrics['world_size']}")
