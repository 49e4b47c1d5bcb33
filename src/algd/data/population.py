"""The data of a population (``seeds=[...]``, :mod:`algd.learner.population`): S envs, env s made and seeded by the
factory as the single run with seed ``seeds[s]`` makes it, stepped together through TorchRL's ``SerialEnv`` by one
collector that acts with the population's actor; one :class:`~algd.data.stream.Stream` (replay buffer, episode
statistics, resumable episode) per member; replay batches [S, B], each member's rows sampled from its own buffer."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, SerialEnv

from algd.data.collectors import env_specs
from algd.data.module import RLDataModule
from algd.data.stream import Stream


class PopulationDataModule(RLDataModule):
    """:class:`RLDataModule` for S members: ``frames``, ``total_frames``, ``warmup_frames``, ``frames_per_batch`` and
    the UTD are per member (each member sees the frames the single run with its seed would see); ``seed`` is the
    first member's."""

    def __init__(self, seeds, **kwargs):
        self.seeds = [int(s) for s in seeds]
        kwargs["seed"] = self.seeds[0]
        super().__init__(**kwargs)
        if self.workers != 1:
            raise ValueError("a population steps its S envs in one process (collector=single)")
        self.member_envs: list[EnvBase] | None = None

    def _streams(self) -> list[Stream]:
        return [Stream(self.buffer_capacity, self.batch_size, self.device) for _ in self.seeds]

    def build_env(self) -> EnvBase:
        if self.env is None:
            self.member_envs = [self.env_factory(seed) for seed in self.seeds]
            # SerialEnv steps the very env objects built above (one per member, in this process)
            self.env = SerialEnv(len(self.seeds), [lambda env=env: env for env in self.member_envs])
        return self.env

    def specs(self) -> dict:
        self.build_env()
        return env_specs(self.member_envs[0])

    def _stream_envs(self) -> list[EnvBase]:
        self.build_env()
        return self.member_envs

    def _store(self, data: TensorDictBase) -> None:
        take = min(data.shape[-1], self.total_frames - self.frames)  # data: [S, T]
        for stream, frames in zip(self.streams, data.unbind(0)):
            stream.store(frames[:take], self.frames)
        self.frames += take

    def sample(self) -> TensorDictBase:
        """A replay batch [S, B]: row s from member s's buffer."""
        return torch.stack([stream.buffer.sample() for stream in self.streams])

    def close(self) -> None:
        super().close()
        for env in self.member_envs or []:
            if not env.is_closed:
                env.close()
        self.member_envs = None

    def _streams_state(self) -> dict:
        envs = self.member_envs or [None] * len(self.seeds)
        members = [s.state_dict(env, self._replay_in_checkpoint) for s, env in zip(self.streams, envs)]
        return {"seeds": self.seeds, "members": members}

    def _load_streams(self, state: dict) -> None:
        if state.get("seeds") != self.seeds:
            raise ValueError(f"the checkpoint holds a population of seeds {state.get('seeds')}, not {self.seeds}")
        for stream, member in zip(self.streams, state["members"], strict=True):
            stream.load_state_dict(member)
