"""One rank of a 2-process VLM judge training run; started by torchrun from test_generative.py."""

import os
import sys

from visreward.generative import VLMTrainingConfig, train_vlm_reward_model

if __name__ == "__main__":
    model, pairs, output = sys.argv[1:4]
    metrics = train_vlm_reward_model(VLMTrainingConfig(model=model, pairs=[pairs], output=output, epochs=1, lr=1e-3,
                                                       batch_size=8, progress=False))
    assert metrics["world_size"] == 2, metrics["world_size"]
    print(f"rank {os.environ['RANK']} of world size {metrics['world_size']}")
