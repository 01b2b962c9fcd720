import pytest

from visreward.core.distributed import Placement, local_device, placement_from_env
from visreward.core.errors import VisrewardError


@pytest.mark.parametrize("env, expected", [
    ({}, Placement(0, 1, 0)),
    ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}, Placement(3, 8, 1)),           # torchrun / accelerate
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}, Placement(5, 16, 1)),  # srun
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, Placement(2, 4, 0)),   # job array
    ({"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}, Placement(1, 4, 0)),
    # an array whose tasks also export SLURM_NTASKS=1 (sbatch --array does): still task 2 of 4
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, Placement(2, 4, 0)),
    # srun with 2 tasks inside array task 2 of 4: process 1 of task 2 is rank 5 of 8
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
      "SLURM_LOCALID": "1"}, Placement(5, 8, 1)),
])
def test_placement_from_launcher_environments(env, expected):
    assert placement_from_env(env) == expected


def test_explicit_rank_wins_and_bad_values_are_errors():
    assert placement_from_env({"RANK": "1", "WORLD_SIZE": "2"}, rank=0, world_size=3) == Placement(0, 3, 0)
    with pytest.raises(VisrewardError, match="outside world size"):
        placement_from_env({}, rank=2, world_size=2)
    with pytest.raises(VisrewardError, match="WORLD_SIZE='two' is not an integer"):
        placement_from_env({"WORLD_SIZE": "two"})


def test_each_shard_is_owned_by_exactly_one_rank_round_robin():
    assert [i for i in range(7) if Placement(0, 3).owns(i)] == [0, 3, 6]
    assert [i for i in range(7) if Placement(2, 3).owns(i)] == [2, 5]
    assert all(sum(Placement(rank, 3).owns(i) for rank in range(3)) == 1 for i in range(20))
    assert all(Placement(0, 1).owns(i) for i in range(5))


def test_cuda_means_the_local_ranks_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_device("cuda") == "cuda:3" and local_device("cpu") == "cpu" and local_device("cuda:0") == "cuda:0"


def test_refl_loads_its_reward_on_the_local_ranks_gpu(monkeypatch):
    from visreward.post_training import ReFLConfig, run_refl
    from visreward.rewards import loader as rewards

    devices = []

    def record_device(spec, device=None, **kwargs):
        devices.append(device)
        raise KeyboardInterrupt  # no GPU here: the device asked for is what this test checks

    monkeypatch.setattr(rewards, "load_reward_model", record_device)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(KeyboardInterrupt):
        run_refl(ReFLConfig(reward="rm", prompts=["a cat"], device="cuda"))
    assert devices == ["cuda:1"]
