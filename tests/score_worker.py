"""One rank of a sharded scoring run; started by torchrun from test_scoring.py."""

import sys

import torch.distributed as dist

from visreward.scoring import ScoreConfig, run_score

if __name__ == "__main__":
    dist.init_process_group("gloo")
    assert dist.get_world_size() == 2, dist.get_world_size()
    model, images, output = sys.argv[1:4]
    run = run_score(ScoreConfig(inputs=[images], model=model, output=output, shard_size=3, progress=False,
                                backend="torch", num_workers=1))
    print(f"rank {dist.get_rank()} wrote {run.shards_done} shards")
    dist.barrier()
    dist.destroy_process_group()
