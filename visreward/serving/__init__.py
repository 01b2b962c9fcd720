"""Rewards over HTTP for RL trainers: `visreward serve`, its protocol, and the clients that call it."""

from ..core.lazy import lazy_exports

_EXPORTS = {
    "RemoteReward": "..rewards.remote", "AsyncRemoteReward": "..rewards.remote", "RemoteRewardError": "..rewards.remote",
    "flow_grpo_reward_fn": "flow_grpo", "flow_grpo_multi_score": "flow_grpo",
    "ServeConfig": "server", "create_app": "server", "serve": "server",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
