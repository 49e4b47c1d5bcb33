"""Nothing lost, nothing surprising: resume, atomic checkpoints, non-finite guard, bad input, sweep isolation.

Every run here is the real Hydra entry point in a subprocess on ``env=toy`` (CPU, one thread each).
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, overrides, run_dirs, run_train

from algd.callbacks.checkpoint import atomic_save_checkpoint, load_checkpoint
from algd.errors import CheckpointError
from test_end_to_end import scalars

SMALL = [
    "env=toy",
    "warmup_frames=100",
    "batch_size=32",
    "utd=1",
    "eval_episodes=2",
    "log_every_frames=100",
    "trainer.threads=1",
]


def ckpt(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def lam(state_dict: dict) -> float:
    return state_dict["multiplier.log_lambda"].exp().item()


def assert_one_point_per_frame(run_dir: Path) -> dict:
    tags = scalars(run_dir)
    for tag in ["eval/return", "loss/critic", "train/episode_return", "lagrange/lambda"]:
        steps = [e.step for e in tags[tag]]
        assert steps == sorted(set(steps)), (tag, steps)
    return tags


def wait_for_checkpoint(proc: subprocess.Popen, tmp_path: Path, name: str, seconds: float = 240) -> None:
    """Wait until the training process ``proc`` has written ``checkpoints/<name>`` (and is still running)."""
    deadline = time.time() + seconds
    while not list(tmp_path.rglob(name)):
        assert proc.poll() is None, f"training exited before writing {name}"
        assert time.time() < deadline, f"no {name} within {seconds:g} s"
        time.sleep(0.1)


def test_resumed_run_equals_straight_run_and_seeds_determine_runs(tmp_path):
    """400 frames straight vs 200 frames, stop, resume to 400 (the same seed in other processes): same counters,
    same parameters (≤ 1e-6), same evaluations, same replay buffer. Another seed gives other parameters."""
    common = [*SMALL, "eval_every_frames=200", "checkpoint_every_frames=200"]
    straight = run_train(*common, "seed=5", "total_frames=400", tmp_path=tmp_path / "straight")
    first = run_train(*common, "seed=5", "total_frames=200", tmp_path=tmp_path / "split")
    other = run_train(*common, "seed=6", "total_frames=400", tmp_path=tmp_path / "other")
    for proc in (straight, first, other):
        assert proc.returncode == 0, proc.stderr[-2000:]
    (a,), (b,) = run_dirs(tmp_path / "straight"), run_dirs(tmp_path / "split")
    resumed = run_train(f"resume={b}", "total_frames=400", tmp_path=tmp_path / "split")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {b / 'checkpoints' / 'last.ckpt'} at frame 200: 100 updates" in resumed.stdout
    assert run_dirs(tmp_path / "split") == [b]  # the same run directory, no new one

    ca, cb = ckpt(a), ckpt(b)
    assert ca["RLDataModule"]["frames"] == cb["RLDataModule"]["frames"] == 400
    assert ca["updates"] == cb["updates"] == 300  # the learner's counter, the only one
    assert "updates" not in ca["RLDataModule"] and "updates" not in cb["RLDataModule"]
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for key, value in ca["state_dict"].items():
        torch.testing.assert_close(cb["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    for sa, sb in zip(ca["optimizer_states"], cb["optimizer_states"]):
        for pa, pb in zip(sa["state"].values(), sb["state"].values()):
            torch.testing.assert_close(pb["exp_avg"], pa["exp_avg"], rtol=0, atol=1e-6)
    (c,) = run_dirs(tmp_path / "other")
    cc = ckpt(c)["state_dict"]
    assert any(not torch.equal(cc[k], v) for k, v in ca["state_dict"].items())  # another seed, another run
    ra, rb = ca["RLDataModule"]["replay"], cb["RLDataModule"]["replay"]
    assert ra["size"] == rb["size"] == 400
    assert torch.equal(ra["data"]["observation"], rb["data"]["observation"])

    ta, tb = scalars(a), assert_one_point_per_frame(b)
    assert [(e.step, e.value) for e in tb["eval/return"]] == [(e.step, e.value) for e in ta["eval/return"]]
    assert [e.step for e in tb["eval/return"]] == [200, 400]
    assert len(tb["train/episode_return"]) == 400 // 50  # every episode once, across the two processes


def test_sigkill_then_resume_continues_from_the_checkpoint(tmp_path):
    """A real training process killed with SIGKILL after a checkpoint: the resumed run starts at the checkpoint's
    frame with its replay buffer and λ, finishes, and the TensorBoard curves have no duplicate points."""
    args = [
        *SMALL,
        "seed=1",
        "total_frames=20000",
        "eval_every_frames=300",
        "checkpoint_every_frames=300",
        "eval_episodes=1",
    ]
    cmd = [sys.executable, "-m", "algd.train", f"paths.log_dir={tmp_path}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_checkpoint(proc, tmp_path, "frame_600.ckpt")
        time.sleep(1.0)  # let it run on past the checkpoint (and log points the resumed run must purge)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (run_dir,) = [p.parent.parent for p in tmp_path.rglob("checkpoints/last.ckpt")]
    saved = ckpt(run_dir)
    frames, updates = saved["RLDataModule"]["frames"], saved["updates"]
    size, lam_saved = saved["RLDataModule"]["replay"]["size"], lam(saved["state_dict"])
    assert frames >= 600 and frames % 300 == 0 and size == frames and 0 < updates <= frames - 100

    resumed = run_train(f"resume={run_dir}", f"total_frames={frames + 200}", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        f"at frame {frames}: {updates} updates, replay buffer {size} transitions, lambda {lam_saved:.6g}"
        in resumed.stdout
    ), resumed.stdout
    final = ckpt(run_dir)
    assert final["RLDataModule"]["frames"] == frames + 200 and final["updates"] == frames + 100  # utd 1
    tags = assert_one_point_per_frame(run_dir)
    assert tags["eval/return"][-1].step == frames + 200
    assert [e.step for e in tags["train/episode_return"]] == list(range(50, frames + 201, 50))


class _InterruptedTrainer:
    """Stands in for a Lightning trainer whose checkpoint write is cut off half-way."""

    def save_checkpoint(self, path, weights_only=False):
        Path(path).write_bytes(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt


def test_interrupted_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    good = {"state_dict": {"w": torch.arange(3.0)}, "optimizer_states": [], "RLDataModule": {"frames": 7}}
    torch.save(good, path)
    with pytest.raises(KeyboardInterrupt):
        atomic_save_checkpoint(_InterruptedTrainer(), path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.arange(3.0))
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    path.write_bytes(b"PK\x03\x04 half a zip file")  # a corrupt file gives one clear error
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*last.ckpt"):
        load_checkpoint(path)


def test_non_finite_loss_stops_cleanly_and_resumes_after_a_config_change(tmp_path):
    """A Boltzmann temperature of 1e-45 overflows the Monte-Carlo score target: the run stops at the first update
    with a message naming the loss and the frame, the last finite state is saved, and it resumes with β = 1."""
    args = [*SMALL, "total_frames=300", "eval_every_frames=100", "checkpoint_every_frames=100", "eval_episodes=1"]
    proc = run_train(*args, "actor.beta_temperature=1e-45", tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: non-finite loss/actor (nan) at frame 110, update 1"), message
    assert f"saved in {run_dir / 'checkpoints' / 'last.ckpt'}" in message and f"resume={run_dir}" in message
    saved = ckpt(run_dir)
    assert saved["RLDataModule"]["frames"] == 110 and saved["updates"] == 0
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"

    resumed = run_train(f"resume={run_dir}", "actor.beta_temperature=1.0", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = ckpt(run_dir)
    assert final["RLDataModule"]["frames"] == 300 and final["updates"] == 200
    assert all(torch.isfinite(v).all() for v in final["state_dict"].values())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    history = run_dir / ".hydra" / "history" / "0" / "overrides.yaml"
    assert "actor.beta_temperature=1e-45" in history.read_text()  # the earlier config is kept


def _corrupt_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "corrupt"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- env=toy\n")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    return run_dir


BAD_INPUTS = [
    (["env=NoSuchTask"], "unknown env 'NoSuchTask'; valid env names: Ant, CarButton"),
    (["actor=transformer"], "unknown actor 'transformer'; valid actor names: diffusion, diffusion_ve, gaussian"),
    (["energy=quadratic"], "unknown energy 'quadratic'; valid energy names: augmented, lagrangian"),
    (["actor.steps=0"], "invalid actor.steps=0: must be an integer >= 1 (K, the number of denoising steps)"),
    (["actor.mc_samples=0"], "invalid actor.mc_samples=0: must be an integer >= 1"),
    (["ensemble=0"], "invalid ensemble=0: must be an integer >= 1"),
    (["env.cost_limit=-1"], "invalid env.cost_limit=-1: must be a number >= 0"),
    (["batch_size=512"], "invalid batch_size=512: must be <= warmup_frames (300)"),
    (["utd=0"], "invalid utd=0: must be a number > 0"),
    (["utd=-2"], "invalid utd=-2: must be a number > 0"),
    (["total_frames=200"], "invalid warmup_frames=300: must be < total_frames (200)"),
    (["gamma=1.5"], "invalid gamma=1.5: must be a number > 0 and <= 1"),
    (["k=-1"], "invalid k=-1: must be a number >= 0"),
    (["seed=-3"], "invalid seed=-3: must be an integer >= 0"),
    (["energy.rho=0"], "invalid energy.rho=0: must be a number > 0"),
    (["optim.lr=-0.001"], "invalid optim.lr=-0.001: must be a number > 0"),
    (["multiplier.init_lambda=-1"], "invalid multiplier config: multiplier.init_lambda must be > 0"),
    (
        ["collector=multi", "collector.frames_per_batch=15"],
        "invalid collector.frames_per_batch=15: must be a multiple of collector.workers (2)",
    ),
    (["trainer.accelerator=tpu"], "invalid trainer.accelerator=tpu: must be one of cpu, gpu, auto"),
    (["resume=/no/such/run"], "resume=/no/such/run: no such run directory or checkpoint file"),
    (["resume={corrupt}"], "cannot read checkpoint {corrupt}/checkpoints/last.ckpt"),
    (["env=PointButton", "resume={corrupt}"], "the run was trained with env=toy; env=PointButton would not fit"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((["trainer.accelerator=gpu"], "invalid trainer.accelerator=gpu: no CUDA device is visible"))


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_input_fails_before_any_work_with_one_line(tmp_path, args, message):
    corrupt = str(_corrupt_run(tmp_path))
    args = [a.format(corrupt=corrupt) for a in args]
    proc = run_train("env=toy", "warmup_frames=300", *args, tmp_path=tmp_path, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and message.format(corrupt=corrupt) in lines[0], lines[0]
    assert not list(tmp_path.rglob("tb")) and not list(tmp_path.rglob("frame_*.ckpt"))  # no work was done


def test_joblib_sweep_isolates_a_failing_job(tmp_path):
    """Two parallel joblib jobs, one of which diverges: the other completes with complete logs, the sweep prints
    a summary naming the failed job and exits non-zero."""
    proc = run_train(
        *overrides("-m hydra/launcher=joblib hydra.launcher.n_jobs=2"),
        *SMALL[:-1],
        *overrides(
            "total_frames=300 eval_every_frames=150 checkpoint_every_frames=150 actor.beta_temperature=1.0,1e-45"
        ),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs completed, 1 failed" in proc.stdout, proc.stdout[-2000:]
    assert "failed    actor.beta_temperature=1e-45: non-finite loss/actor" in proc.stdout
    statuses = {json.loads(f.read_text())["status"]: f.parent for f in tmp_path.rglob("status.json")}
    assert set(statuses) == {"completed", "failed"}
    good = statuses["completed"]
    assert "actor.beta_temperature=1.0" in good.name
    assert ckpt(good)["RLDataModule"]["frames"] == 300 and ckpt(good)["updates"] == 200
    tags = assert_one_point_per_frame(good)
    assert [e.step for e in tags["eval/return"]] == [150, 300]
    assert "[algd] done: 300 frames" in proc.stdout


INTERRUPT = [*SMALL, "seed=2", "eval_every_frames=300", "checkpoint_every_frames=300", "eval_episodes=1"]
INTERRUPT_BUDGET = 800


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_saves_the_frame_reached_and_the_run_resumes(tmp_path, sig):
    """A signal mid-run: the update in progress finishes, ``last.ckpt`` holds the frame reached (past the periodic
    checkpoint), status.json says interrupted, the last stderr line gives the resume command, the exit code is 4;
    ``resume=`` continues from that frame to the budget with one point per frame in TensorBoard. (Not yet bit for
    bit with an uninterrupted run: a resumed env restarts the episode the signal cut.)"""
    cmd = [sys.executable, "-m", "algd.train", f"paths.log_dir={tmp_path}", *INTERRUPT, "total_frames=20000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_checkpoint(proc, tmp_path, "frame_300.ckpt")
        time.sleep(0.5)
        sent = time.time()
        proc.send_signal(getattr(signal, sig))
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.time() - sent < 15, "the interrupted run took too long to stop"
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("train:")]
    (run_dir,) = run_dirs(tmp_path)
    assert proc.returncode == 4, stderr[-3000:]
    assert lines[-1].startswith(f"error: {sig} at frame") and f"resume={run_dir}" in lines[-1], lines[-3:]
    saved = ckpt(run_dir)
    frames, updates = saved["RLDataModule"]["frames"], saved["updates"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["frame"] == frames and 300 < frames < INTERRUPT_BUDGET
    assert saved["RLDataModule"]["replay"]["size"] == frames

    resumed = run_train(f"resume={run_dir}", f"total_frames={INTERRUPT_BUDGET}", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at frame {frames}: {updates} updates" in resumed.stdout, resumed.stdout
    final = ckpt(run_dir)
    assert final["RLDataModule"]["frames"] == INTERRUPT_BUDGET and final["updates"] == INTERRUPT_BUDGET - 100
    tags = assert_one_point_per_frame(run_dir)
    assert [e.step for e in tags["eval/return"]] == [300, 600, INTERRUPT_BUDGET]  # no evaluation at the cut
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
