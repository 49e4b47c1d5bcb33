"""Evaluation videos in TensorBoard (callbacks.video) and evaluating a trained policy (algd-eval / make eval)."""

import re
import subprocess
import sys
import tomllib
from types import SimpleNamespace

import imageio
import numpy as np
import pytest
import torch
from conftest import ROOT, overrides, run_dirs, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

VIDEO = [
    "callbacks.video.every_frames=100",
    "callbacks.video.max_frames=20",
    "callbacks.video.width=64",
    "callbacks.video.height=48",
]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A 200-frame toy run (100 updates) with a video every 100 frames."""
    tmp = tmp_path_factory.mktemp("eval")
    proc = run_train(
        *overrides(
            "env=toy total_frames=200 warmup_frames=100 batch_size=32 utd=1 eval_every_frames=200 eval_episodes=1 "
            "log_every_frames=100 trainer.threads=1"
        ),
        *VIDEO,
        tmp_path=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr, proc.stderr
    (run_dir,) = run_dirs(tmp)
    return run_dir


def run_eval(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "algd.evaluate", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stats(stdout: str) -> dict[str, tuple[float, ...]]:
    """The statistics lines of algd-eval, parsed: 'return: m ± s', 'violation rate: r (k of n ...)', ..."""
    num = r"(-?\d+(?:\.\d+)?)"
    patterns = {
        "episodes": r"^episodes: (\d+)$",
        "return": rf"^return: {num} ± {num}$",
        "cost": rf"^cost: {num} ± {num} \(limit {num}\)$",
        "violation": rf"^violation rate: {num} \((\d+) of (\d+) episodes with cost > {num}\)$",
    }
    out = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, stdout, re.MULTILINE)
        assert match, (key, stdout)
        out[key] = tuple(float(g) for g in match.groups())
    return out


def test_video_tag_in_tensorboard(toy_run):
    acc = EventAccumulator(str(toy_run / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert "eval/video" in acc.Tags()["images"], acc.Tags()
    videos = acc.Images("eval/video")
    assert [v.step for v in videos] == [100, 200]  # keyed on environment frames
    assert (videos[-1].width, videos[-1].height) == (64, 48)
    frames = imageio.mimread(videos[-1].encoded_image_string, format="gif")
    assert 2 <= len(frames) <= 20 and frames[0].shape[:2] == (48, 64)


def test_algd_eval_prints_statistics_and_writes_a_video(toy_run, capsys):
    proc = run_eval(toy_run, "--episodes", 3, "--video", "trainer.threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = stats(proc.stdout)
    assert s["episodes"] == (3,) and s["violation"][2] == 3 and s["cost"][2] == 2.0
    assert 0.0 <= s["violation"][0] <= 1.0 and s["violation"][1] == round(s["violation"][0] * 3)
    assert "seed 20000" in proc.stdout  # default: the run's seed (0) + 20000
    (path,) = re.findall(r"^\[algd\] video: (.+)$", proc.stdout, re.MULTILINE)
    video = toy_run / "eval" / "last_seed20000.mp4"
    assert path == str(video) and video.stat().st_size > 0
    frames = imageio.mimread(video)
    assert 2 <= len(frames) <= 20 and frames[0].shape == (48, 64, 3)

    # seeded: the same checkpoint and seed give the same numbers (in-process, the checkpoint file given this time)
    from algd.evaluate import main

    main([str(toy_run / "checkpoints" / "last.ckpt"), "--episodes", "3", "trainer.threads=1"])
    assert stats(capsys.readouterr().out) == s


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["algd-eval"] == "algd.evaluate:main"


@pytest.mark.parametrize("make_bad", ["missing", "not_a_run"])
def test_bad_run_fails_with_one_line_and_exit_2(tmp_path, make_bad):
    target = tmp_path / "no_such_run" if make_bad == "missing" else tmp_path
    expected = "no such run directory or checkpoint file" if make_bad == "missing" else "is not an algd run directory"
    proc = run_eval(target, "--episodes", 2, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: run=") and expected in lines[0], proc.stderr


def test_corrupt_checkpoint_fails_with_one_line_and_exit_2(tmp_path, capsys):
    from algd.evaluate import main

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- env=toy\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--episodes", "2"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: cannot read checkpoint") and "last.ckpt" in lines[0]


def test_toy_rasteriser_draws_hazard_goal_and_point():
    from algd.envs.toy import ToyFactory

    env = ToyFactory().render_env(seed=0, width=40, height=20)
    env.reset()
    frame = env.render_frame()
    assert frame.shape == (20, 40, 3) and frame.dtype == np.uint8
    assert tuple(frame[10, 20]) == (230, 120, 120)  # hazard disc at the origin (the point is outside)
    assert tuple(frame[10, 30]) == (40, 170, 60)  # goal at (1, 0)
    assert (frame == np.array([40, 70, 200], dtype=np.uint8)).all(-1).any()  # the point, near (-1, 0)


def _recorder(factory, monkeypatch, problem=None):
    from algd.actors.gaussian import GaussianActor
    from algd.callbacks import video as video_mod
    from algd.callbacks.video import VideoRecorder

    monkeypatch.setattr(video_mod, "tensorboard_video_problem", lambda: problem)
    writes = []
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(frames=0, env_factory=factory, seed=0),
        logger=SimpleNamespace(experiment=SimpleNamespace(add_video=lambda *a, **k: writes.append(a))),
    )
    actor = GaussianActor(
        obs_dim=6, act_dim=2, action_low=torch.full((2,), -1.0), action_high=torch.ones(2), hidden=[8]
    )
    rec = VideoRecorder(every_frames=100, max_frames=5, width=16, height=16)
    rec.setup(trainer, SimpleNamespace(actor=actor), "fit")
    rec.on_train_start(trainer, SimpleNamespace(actor=actor))
    return rec, trainer, SimpleNamespace(actor=actor), writes


def test_video_turns_off_with_one_warning_when_rendering_fails(monkeypatch, capsys):
    from algd.envs.toy import ToyFactory

    class NoGL(ToyFactory):
        def render_env(self, *args, **kwargs):
            raise RuntimeError("an OpenGL platform library has not been loaded")

    rec, trainer, module, writes = _recorder(NoGL(), monkeypatch)
    rec.fire(trainer, module, 100)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rec._next is None and not writes  # _next None: the callback fires no more
    assert len(lines) == 1 and "evaluation videos are off" in lines[0] and "MUJOCO_GL=egl" in lines[0]
    assert "training continues" in lines[0]

    rec, trainer, module, writes = _recorder(ToyFactory(), monkeypatch)
    rec.fire(trainer, module, 100)
    (args,) = writes
    assert args[0] == "eval/video" and tuple(args[1].shape) == (1, 5, 3, 16, 16) and args[2] == 100


def test_video_turns_off_without_moviepy_1(monkeypatch, capsys):
    from algd.envs.toy import ToyFactory

    rec, *_ = _recorder(
        ToyFactory(), monkeypatch, problem="moviepy 2.2.1 is installed, but TensorBoard's add_video needs moviepy 1.x"
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rec._next is None and len(lines) == 1 and "moviepy==1.0.3" in lines[0]


def test_tensorboard_video_support_is_installed():
    from algd.callbacks.video import tensorboard_video_problem

    assert tensorboard_video_problem() is None


@pytest.mark.safety_gym
def test_point_button_renders_headless():
    from algd.callbacks.video import record_episode
    from algd.envs.safety_gym import SafetyGymFactory

    factory = SafetyGymFactory(  # (its speed is make bench's render_fps)
        "PointButton", "SafetyPointButton1-v0", max_episode_steps=400, cost_limit=10.0, fixed_layout=True
    )
    env = factory.render_env(seed=0, width=64, height=64)
    try:
        frames = record_episode(env, lambda td: td.set("action", env.action_spec.rand()), seed=0, max_frames=6)
    finally:
        env.close()
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 10  # a real picture, not a blank buffer
