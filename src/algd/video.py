"""Evaluation videos: record one deterministic episode as RGB frames, write it to TensorBoard or to a file.

Rendering runs on a separate env built by the factory's ``render_env`` (the training and evaluation envs never
render). MuJoCo renders headless through ``MUJOCO_GL`` (``egl`` by default, set in :mod:`algd.envs`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from algd.envs import reseed, render_frame

RENDER_FIX = ("headless MuJoCo rendering needs MUJOCO_GL=egl (libEGL, e.g. apt-get install libegl1) or "
              "MUJOCO_GL=osmesa (apt-get install libosmesa6)")


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
        reseed(env, seed)
        td = env.reset()
        frames.append(render_frame(env))
        while len(frames) < max_frames:
            td = env.step(policy(td))
            frames.append(render_frame(env))
            if td["next", "done"].any():
                break
            td = step_mdp(td)
    return np.stack(frames)


def render_failure(env_name: str, err: BaseException) -> str:
    """One line: why frames could not be rendered and how to fix it."""
    gl = os.environ.get("MUJOCO_GL", "<unset>")
    first = " ".join(str(err).split())[:200]
    return (f"cannot render {env_name} (MUJOCO_GL={gl}): {type(err).__name__}: {first}; {RENDER_FIX}")


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
