"""One env's share of the training data: its replay buffer, its episode statistics, the cost it collected and the
unfinished episode a resumed run replays. A run has one stream; a population (:mod:`algd.data.population`) one per
member."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tqdm.auto import tqdm

from algd.data.episodes import EpisodeTracker
from algd.data.replay import TRANSITION_KEYS, buffer_state, load_buffer_state, make_buffer, transitions


class Stream:
    """Frames of one env (or of several collector workers, ``exact=False``) in collection order → replay buffer,
    episode statistics and, with ``exact`` (one env), the actions since its latest reset and its latest
    observation: what a resumed env replays (:meth:`algd.envs.base.AlgdEnv.resume_episode`) to continue the
    interrupted episode exactly."""

    def __init__(self, capacity: int, batch_size: int, device: torch.device, exact: bool = True):
        self.buffer = make_buffer(capacity, batch_size, device)
        self.episodes = EpisodeTracker()
        self.collected_cost = 0.0  # sum of ("next", "cost") over every frame stored
        self.exact = bool(exact)
        self._episode: list[torch.Tensor] = []  # actions of the unfinished episode
        self._last_obs: torch.Tensor | None = None  # the latest observation stored
        self.resume_env: tuple | None = None  # (env RNG, actions, observation) replayed by a resumed run's env
        self._replay_keys: list | None = None  # the restored buffer's keys

    def __len__(self) -> int:
        return len(self.buffer)

    def store(self, data: TensorDictBase, first_frame: int) -> None:
        """Frames [T] in collection order; ``first_frame`` is the frame count before them."""
        rows = transitions(data)
        if self._replay_keys is not None:  # a buffer restored from an older checkpoint keeps its own keys
            rows = rows.select(*self._replay_keys)
        self.buffer.extend(rows)
        self._track_episode(data)
        self.episodes.update(data, first_frame)
        self.collected_cost += float(data["next", "cost"].sum())

    def _track_episode(self, data: TensorDictBase) -> None:
        if not self.exact:
            return
        ends = data["next", "done"].reshape(-1).nonzero()
        if len(ends):
            self._episode = []
            data = data[int(ends[-1]) + 1 :]
        if data.shape[0]:  # (a TensorDict's numel() is 1 for an empty batch)
            self._episode.append(data["action"].clone())
            self._last_obs = data["next", "observation"][-1].clone()

    def resume(self, env) -> None:
        """Before the collector's first reset: make ``env`` replay the interrupted episode of a restored stream."""
        if self.resume_env is not None:
            env.resume_episode(*self.resume_env)
            self.resume_env = None

    @staticmethod
    def warn_replay(env, what: str = "the env") -> None:
        if env.replay_error:
            tqdm.write(
                f"[algd] warning: {what} did not replay the interrupted episode exactly (max |Δ observation| "
                f"{env.replay_error:.3g}); the run continues from the replayed state"
            )

    def state_dict(self, env, with_replay: bool) -> dict:
        """Episode statistics, collected cost, the env's RNG as of its latest reset, the unfinished episode's actions
        and, ``with_replay``, the buffer contents."""
        state = {
            "episodes": self.episodes.state_dict(),
            "collected_cost": self.collected_cost,
            "env_rng": env.episode_rng_state() if env is not None and self.exact else None,
            "episode_actions": torch.cat(self._episode) if self._episode else None,
            "last_observation": self._last_obs,
        }
        if with_replay:
            state["replay"] = buffer_state(self.buffer)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.collected_cost = float(state.get("collected_cost", 0.0))
        replay = state.get("replay")
        if replay is None:
            raise ValueError(
                "this checkpoint holds no replay buffer (periodic frame_N.ckpt files are weights-only "
                "snapshots); resume from checkpoints/last.ckpt"
            )
        load_buffer_state(self.buffer, replay)
        saved = set(self.buffer.storage[:1].keys(True, True)) if len(self.buffer) else None
        self._replay_keys = None if saved is None else [k for k in TRANSITION_KEYS if k in saved]
        actions, obs = state.get("episode_actions"), state.get("last_observation")
        if not self.exact:
            self.resume_env = None
        else:
            self.resume_env = (state["env_rng"], actions, obs)
            self._episode = [actions] if actions is not None and state["env_rng"] else []
            self._last_obs = obs
        self.episodes.load_state_dict(state["episodes"], resume_running=bool(self._episode))
