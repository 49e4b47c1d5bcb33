"""Environments, one module per family: ``toy`` (torch, no MuJoCo), ``safety_gym`` (Safety-Gymnasium navigation),
``velocity`` (MuJoCo velocity tasks). Every factory returns an :class:`~algd.envs.base.AlgdEnv`; importing this
package imports no simulator (the MuJoCo families are imported when their config names them)."""

from algd.envs.base import AlgdEnv, EnvInfo, episode_cost

__all__ = ["AlgdEnv", "EnvInfo", "episode_cost"]
