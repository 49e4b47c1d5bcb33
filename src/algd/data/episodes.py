"""Training-episode statistics: running undiscounted return, cost and length per env, recent finished episodes."""

from __future__ import annotations

from collections import deque

from tensordict import TensorDictBase


class EpisodeTracker:
    """Running undiscounted return, cost and length of the current episode of each env; recent finished episodes."""

    def __init__(self, window: int = 10):
        self.running: dict[int, list] = {}  # trajectory id → [return, cost, length] of an unfinished episode
        self.finished: deque[tuple[float, float, int]] = deque(maxlen=window)
        self.episodes = 0
        self.new: list[tuple[float, float, int, int]] = []
        self._carry: list | None = None  # a resumed run's unfinished episode, continued by the next new trajectory

    def update(self, data: TensorDictBase, first_frame: int) -> None:
        """Accumulate a batch of frames in counting order; ``first_frame`` is the frame count before the batch. Frames
        are grouped into episodes by TorchRL's trajectory ids (unique across collector workers), so frames of several
        envs may interleave."""
        rewards = data["next", "reward"].reshape(-1).tolist()
        costs = data["next", "cost"].reshape(-1).tolist()
        dones = data["next", "done"].reshape(-1).tolist()
        ids = data.get(("collector", "traj_ids"), None)
        ids = ids.reshape(-1).tolist() if ids is not None else [0] * len(rewards)
        for i, (r, c, d, e) in enumerate(zip(rewards, costs, dones, ids)):
            run = self.running.get(e)
            if run is None:
                run, self._carry = self._carry or [0.0, 0.0, 0], None
                self.running[e] = run
            run[0] += r
            run[1] += c
            run[2] += 1
            if d:
                episode = (run[0], run[1], run[2])
                self.finished.append(episode)
                self.new.append((*episode, first_frame + i + 1))
                self.episodes += 1
                del self.running[e]

    def pop_new(self) -> list[tuple[float, float, int, int]]:
        """Episodes finished since the last call: (return, cost, length, frame at which it ended)."""
        new, self.new = self.new, []
        return new

    def recent(self) -> tuple[float, float] | None:
        if not self.finished:
            return None
        n = len(self.finished)
        return sum(e[0] for e in self.finished) / n, sum(e[1] for e in self.finished) / n

    def state_dict(self) -> dict:
        return {
            "episodes": self.episodes,
            "finished": list(self.finished),
            "new": list(self.new),
            "running": [list(run) for run in self.running.values()],
        }

    def load_state_dict(self, state: dict, resume_running: bool = False) -> None:
        """With ``resume_running`` (one env, whose interrupted episode the resumed env replays) the unfinished
        episode's sums carry on; otherwise the resumed env starts a new episode and they start again at 0."""
        self.running = {}
        running = state.get("running", [])
        self._carry = list(running[0]) if resume_running and len(running) == 1 else None
        self.episodes = state["episodes"]
        self.finished.clear()
        self.finished.extend(tuple(e) for e in state["finished"])
        self.new = [tuple(e) for e in state.get("new", [])]
