"""Evaluation videos: record one deterministic episode as RGB frames, write it to TensorBoard (``VideoRecorder``)
or to a file (``algd-eval --video``).

Rendering runs on a separate env built by the factory's ``render_env`` (the training and evaluation envs never
render). MuJoCo renders headless through ``MUJOCO_GL`` (``egl`` unless set:
:func:`algd.launch.runtime.headless_rendering`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp
from tqdm.auto import tqdm

from algd.callbacks.evaluation import EVAL_SEED_OFFSET, refreshed_copy
from algd.callbacks.frames import EveryFrames, tb_writer

RENDER_FIX = (
    "headless MuJoCo rendering needs MUJOCO_GL=egl (libEGL, e.g. apt-get install libegl1) or "
    "MUJOCO_GL=osmesa (apt-get install libosmesa6)"
)


def tensorboard_video_problem() -> str | None:
    """Why ``SummaryWriter.add_video`` would log nothing (it prints a note and returns without raising), or None.
    It needs moviepy 1.x (``moviepy.editor``, gone in 2.x)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("moviepy")
    except PackageNotFoundError:
        return "moviepy is not installed"
    if not found.startswith("1."):
        return f"moviepy {found} is installed, but TensorBoard's add_video needs moviepy 1.x"
    return None


def record_episode(env, policy, seed: int, max_frames: int) -> np.ndarray:
    """One deterministic episode of ``policy`` on a render env, seeded like the evaluation episodes (``seed``), in
    a forked torch RNG; its frames (the reset state, then one per step, at most ``max_frames``) as uint8
    [T, H, W, 3]. Raises whatever the renderer raises."""
    frames = []
    with torch.random.fork_rng(devices=[]), torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.manual_seed(seed)
        env.reseed(seed)
        td = env.reset()
        frames.append(env.render_frame())
        while len(frames) < max_frames:
            td = env.step(policy(td))
            frames.append(env.render_frame())
            if td["next", "done"].any():
                break
            td = step_mdp(td)
    return np.stack(frames)


def render_failure(env_name: str, err: BaseException) -> str:
    """One line: why frames could not be rendered and how to fix it."""
    gl = os.environ.get("MUJOCO_GL", "<unset>")
    first = " ".join(str(err).split())[:200]
    return f"cannot render {env_name} (MUJOCO_GL={gl}): {type(err).__name__}: {first}; {RENDER_FIX}"


def write_video_file(frames: np.ndarray, stem: Path, fps: int) -> Path:
    """``<stem>.mp4`` (H.264 through imageio-ffmpeg), or ``<stem>.gif`` where imageio-ffmpeg is missing."""
    import imageio

    stem.parent.mkdir(parents=True, exist_ok=True)
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        path = stem.with_suffix(".gif")
        imageio.mimwrite(path, list(frames), duration=1000 / fps, loop=0)
        return path
    path = stem.with_suffix(".mp4")
    # macro_block_size=1: small frames (e.g. 64×64 or 100×100) are written as they are, not rescaled to 16-multiples
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1, quality=7)
    return path


class VideoRecorder(EveryFrames):
    """Every ``every_frames`` frames (0 or None: never) one deterministic evaluation episode (the Evaluator's first,
    same seed), rendered at ``width`` × ``height`` on its own render env (at most ``max_frames`` frames), logged to
    TensorBoard as ``eval/video`` at ``fps``. When videos cannot be made (no renderer, no moviepy 1.x) it prints one
    warning naming the cause and the fix, and training goes on without videos."""

    per_member = True  # a population runs one per member (algd.callbacks.population)

    TAG = "eval/video"

    def __init__(
        self,
        every_frames: int | None,
        max_frames: int = 400,
        width: int = 128,
        height: int = 128,
        fps: int = 30,
        camera: str | None = "track",
    ):
        super().__init__(every_frames or 0)
        self.env_factory = self.info = self.seed = None  # the training task's, from the DataModule at setup
        self.max_frames, self.width, self.height, self.fps = int(max_frames), int(width), int(height), int(fps)
        self.camera = camera
        self.env = self.actor = None

    def _turn_off(self, why: str) -> None:
        self._next = None
        tqdm.write(f"[algd] warning: evaluation videos are off: {why}; training continues", file=sys.stderr)
        self._close()

    def setup(self, trainer, pl_module, stage):
        self.env_factory, self.seed = trainer.datamodule.env_factory, trainer.datamodule.seed
        self.info = self.env_factory.info

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        problem = tensorboard_video_problem() if self._next is not None else None
        if problem:
            self._turn_off(f"{problem} (fix: pip install -c constraints.txt moviepy==1.0.3)")

    def fire(self, trainer, pl_module, frames):
        writer = tb_writer(trainer)
        if writer is None:
            return
        seed = self.seed + EVAL_SEED_OFFSET
        self.actor = refreshed_copy(self.actor, pl_module.actor)
        try:
            if self.env is None:
                self.env = self.env_factory.render_env(seed, self.width, self.height, self.camera)
            video = record_episode(self.env, self.actor.policy(), seed, self.max_frames)
        except Exception as err:  # noqa: BLE001  (a missing GL library must not stop a long run)
            self._turn_off(render_failure(self.info.name, err))
            return
        writer.add_video(self.TAG, torch.from_numpy(video).permute(0, 3, 1, 2).unsqueeze(0), frames, fps=self.fps)

    def _close(self):
        if self.env is not None:
            self.env.close()
            self.env = None

    def on_train_end(self, trainer, pl_module):
        self._close()

    def on_exception(self, trainer, pl_module, exception):
        self._close()
