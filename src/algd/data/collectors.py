"""The TorchRL collectors that feed training, and the runtime sizes read from an env's specs."""

from __future__ import annotations

import torch
from torchrl.collectors import Collector
from torchrl.envs import EnvBase


def make_collector(envs, policy, frames_per_batch: int, overlap: bool = False):
    """The training collector: a TorchRL ``Collector`` over one env, or, given a list of env constructors, one env
    process per constructor: ``MultiSyncCollector`` (the processes step together, each batch is [workers, T] with
    ``frames_per_batch`` frames in all) or, with ``overlap``, ``MultiAsyncCollector`` (each process collects its
    next ``frames_per_batch`` frames while the learner trains; a batch comes from whichever process is ready). The
    workers read the (CPU) policy parameters from shared memory: an in-place update of them reaches every worker."""
    common = dict(
        frames_per_batch=frames_per_batch, total_frames=-1, trust_policy=True, auto_register_policy_transforms=False
    )
    if isinstance(envs, EnvBase):
        return Collector(envs, policy, **common)
    from torchrl.collectors import MultiAsyncCollector, MultiSyncCollector

    multi = dict(num_threads=torch.get_num_threads(), num_sub_threads=1, **common)
    if overlap:
        return MultiAsyncCollector(list(envs), policy, **multi)
    return MultiSyncCollector(list(envs), policy, cat_results="stack", **multi)


def env_specs(env: EnvBase) -> dict:
    """Runtime sizes for the networks (``obs_dim``, ``act_dim``, action bounds), read from the env specs."""
    obs_spec = env.observation_spec["observation"]
    act_spec = env.action_spec
    return {
        "obs_dim": int(obs_spec.shape[-1]),
        "act_dim": int(act_spec.shape[-1]),
        "action_low": act_spec.space.low.float().clone(),
        "action_high": act_spec.space.high.float().clone(),
    }
