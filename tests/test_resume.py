"""Nothing lost, nothing surprising: resume, atomic checkpoints, non-finite guard, bad input, sweep isolation.

Every run here is the real Hydra entry point in a subprocess on ``env=toy`` (CPU, one thread each).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, overrides, run_dirs, run_train, wait_until

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


def points(tags: dict, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in tags[tag]]


def wait_for_checkpoint(proc: subprocess.Popen, tmp_path: Path, name: str, seconds: float = 240) -> None:
    """Wait until the training process ``proc`` has written ``checkpoints/<name>`` (and is still running)."""
    wait_until(lambda: list(tmp_path.rglob(name)), proc, seconds, name)


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
    assert points(tb, "eval/return") == points(ta, "eval/return")
    assert [e.step for e in tb["eval/return"]] == [200, 400]
    assert len(tb["train/episode_return"]) == 400 // 50  # every episode once, across the two processes


@pytest.mark.slow  # (≈ 30 s each: make test stays within its 10 minutes; make test-slow and CI run them)
def test_sigkill_then_resume_continues_from_the_checkpoint(tmp_path):
    """A real training process killed with SIGKILL after a checkpoint: the resumed run starts at the checkpoint's
    frame with its replay buffer and λ, finishes, and the TensorBoard curves have no duplicate points. While it
    was alive, a second ``resume=`` of its run was refused with one line naming its pid, before touching anything;
    the lock file its death left behind is taken over."""
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
        (run_dir,) = run_dirs(tmp_path)
        config_files = sorted(p.name for p in (run_dir / ".hydra").iterdir())
        busy = run_train(f"resume={run_dir}", "total_frames=30000", tmp_path=tmp_path)
        assert proc.poll() is None  # (the refusal happened while it was alive)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert busy.returncode == 6, busy.stderr[-3000:]
    assert busy.stderr.strip().splitlines() == [
        f"error: run directory {run_dir} is in use by pid {proc.pid} on {socket.gethostname()} (it holds "
        f"{run_dir / '.lock'}); stop that process first, or wait for it to finish"
    ]
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == config_files  # no config history written
    assert (run_dir / ".lock").read_text().split()[0] == str(proc.pid)  # the dead holder's (stale) lock file
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
    (["seeds=[0,1]", "resume={corrupt}"], "the run was trained with seeds=null; seeds=[0,1] would not fit"),
    (["seeds=[0,0]"], "invalid seeds=[0, 0]: must be null or a list of at least two distinct integers >= 0"),
    (["seeds=3"], "invalid seeds=3: must be null or a list of at least two distinct integers >= 0"),
    (["seeds=[0,1]", "collector=multi"], "invalid collector=multi with seeds=[0, 1]: a population steps its envs"),
    (["seeds=[0,1]", "grad_clip=1.0"], "invalid grad_clip=1.0 with seeds=[0, 1]: a population has no gradient-norm"),
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


# Episodes of 83 steps: a cut (always at a multiple of the 10-frame collection) before frame 830 lands mid-episode.
INTERRUPT = [*SMALL, "seed=2", "env.max_episode_steps=83", "eval_every_frames=300", "checkpoint_every_frames=300"]
INTERRUPT_BUDGET = 800


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The run the interrupted ones must equal: the same seed and config, straight to the budget."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc = run_train(*INTERRUPT, f"total_frames={INTERRUPT_BUDGET}", tmp_path=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(tmp)
    return {"ckpt": ckpt(run_dir), "scalars": scalars(run_dir)}


# One handler serves the three signals: SIGTERM in `make test`, the other two with the slow tests.
SIGNALS = ["SIGTERM", pytest.param("SIGINT", marks=pytest.mark.slow), pytest.param("SIGUSR1", marks=pytest.mark.slow)]


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_saves_the_frame_reached_and_the_run_resumes(tmp_path, sig, uninterrupted):
    """A signal mid-run (mid-episode): the update in progress finishes, ``last.ckpt`` holds the frame reached (past
    the periodic checkpoint), status.json says interrupted, the last stderr line gives the resume command, the exit
    code is 4 (a second signal while it stops is ignored); ``resume=`` continues from that frame to the budget with
    one point per frame in TensorBoard, and ends with the parameters, optimiser states, replay buffer, evaluations
    and training episodes of the uninterrupted run, bit for bit (the resumed env replays the episode the signal
    cut)."""
    cmd = [sys.executable, "-m", "algd.train", f"paths.log_dir={tmp_path}", *INTERRUPT, "total_frames=20000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_checkpoint(proc, tmp_path, "frame_300.ckpt")
        time.sleep(0.5)
        sent = time.time()
        proc.send_signal(getattr(signal, sig))
        time.sleep(0.2)
        proc.send_signal(getattr(signal, sig))  # a second one (an impatient Ctrl-C) while it stops changes nothing
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

    straight = uninterrupted["ckpt"]
    assert final["updates"] == straight["updates"]
    for key, value in straight["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    for sa, sb in zip(straight["optimizer_states"], final["optimizer_states"]):
        for pa, pb in zip(sa["state"].values(), sb["state"].values()):
            assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])
    for key in ("observation", "action"):
        assert torch.equal(
            final["RLDataModule"]["replay"]["data"][key], straight["RLDataModule"]["replay"]["data"][key]
        )
    for tag in ("eval/return", "eval/cost", "train/episode_return", "train/episode_cost"):
        assert points(tags, tag) == points(uninterrupted["scalars"], tag), tag


def _factory(task: str):
    from algd.envs.safety_gym import SafetyGymFactory
    from algd.envs.toy import ToyFactory
    from algd.envs.velocity import VelocityFactory

    return {
        "toy": lambda: ToyFactory(max_episode_steps=30),
        "PointButton": lambda: SafetyGymFactory(
            "PointButton", "SafetyPointButton1-v0", max_episode_steps=30, cost_limit=25.0, fixed_layout=True
        ),
        "PointGoal": lambda: SafetyGymFactory(
            "PointGoal", "SafetyPointGoal1-v0", max_episode_steps=30, cost_limit=25.0, fixed_layout=False
        ),
        "Hopper": lambda: VelocityFactory(
            "Hopper", "paper", "Hopper-v4", cost_limit=82.75, max_episode_steps=30, cost_gamma=0.99
        ),
    }[task]()


@pytest.mark.parametrize(
    "task",
    [
        "toy",
        pytest.param("PointButton", marks=pytest.mark.safety_gym),
        pytest.param("PointGoal", marks=pytest.mark.safety_gym),
        pytest.param("Hopper", marks=pytest.mark.safety_gym),
    ],
)
def test_a_rebuilt_env_replays_the_interrupted_episode_exactly(task):
    """What a resume does mid-episode, on the real envs: a second env from the same factory, given the first one's
    episode RNG snapshot and the actions since its latest reset, resets into the same state (observation equal, bit
    for bit) and then makes the same transitions as the first for the same actions (every key)."""
    factory = _factory(task)
    first, second = factory(3), factory(3)
    gen = torch.Generator().manual_seed(0)
    actions = torch.rand(30 + 17 + 25, *first.action_spec.shape, generator=gen) * 2 - 1

    def play(env, acts, td=None):
        it = iter(acts)
        return env.rollout(
            len(acts),
            lambda td: td.set("action", next(it)),
            break_when_any_done=False,
            auto_reset=td is None,
            tensordict=td,
        )

    before = play(first, actions[:47])  # at least one episode boundary (30 steps or a fall), then a part episode
    ends = before["next", "done"].reshape(-1).nonzero().reshape(-1).tolist()
    assert ends and ends[-1] < 46, ends
    current = before[-1]["next"].exclude("reward")
    second.resume_episode(first.episode_rng_state(), actions[ends[-1] + 1 : 47], current["observation"])
    start = second.reset()
    assert second.replay_error == 0.0
    assert torch.equal(start["observation"], current["observation"])
    after_first, after_second = play(first, actions[47:], current), play(second, actions[47:], start)
    for key in after_first.keys(True, True):
        assert torch.equal(after_first[key], after_second[key]), key
    first.close(), second.close()


@pytest.mark.slow  # (≈ 30 s each: make test stays within its 10 minutes; make test-slow and CI run them)
def test_submitit_job_saves_on_its_preemption_signal_requeues_and_finishes(tmp_path, uninterrupted):
    """``hydra/launcher=submitit_local``: the job's pre-emption / time-out signal (SIGUSR2, what submitit asks Slurm
    for) mid-run saves ``last.ckpt`` at the frame reached, submitit requeues the job, and the requeued job continues
    it in the same run directory to the budget, ending bit for bit where the uninterrupted run ends."""
    cmd = [
        sys.executable,
        "-m",
        "algd.train",
        "-m",
        "hydra/launcher=submitit_local",
        f"paths.log_dir={tmp_path}",
        *INTERRUPT,
        f"total_frames={INTERRUPT_BUDGET}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_checkpoint(proc, tmp_path, "frame_300.ckpt")
        (run_dir,) = run_dirs(tmp_path)
        job_pid = int((run_dir / ".lock").read_text().split()[0])  # the job process (the lock's holder)
        assert job_pid != proc.pid
        time.sleep(0.5)
        os.kill(job_pid, signal.SIGUSR2)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "1 of 1 jobs completed, 0 failed" in out
    logs = "\n".join(f.read_text() for f in tmp_path.rglob(".submitit/*/*_log.*"))
    assert "saved; the job is requeued" in logs and "Requeued job" in logs, logs[-3000:]
    assert "already holds last.ckpt: continuing that run" in logs
    cut = int(logs.split("[algd] SIGUSR2 at frame ")[1].split(":")[0])
    assert 300 < cut < INTERRUPT_BUDGET and cut % 83  # mid-episode
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    final, straight = ckpt(run_dir), uninterrupted["ckpt"]
    assert final["RLDataModule"]["frames"] == INTERRUPT_BUDGET and final["updates"] == straight["updates"]
    for key, value in straight["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    tags = assert_one_point_per_frame(run_dir)
    assert points(tags, "eval/return") == points(uninterrupted["scalars"], "eval/return")


# The entry point with Lightning's checkpoint writer failing from its N-th call on: half a file, then ENOSPC.
FULL_DISK = """
import errno, sys
from pathlib import Path
from lightning.pytorch import Trainer
save, calls = Trainer.save_checkpoint, []
def save_until_full(self, path, *args, **kwargs):
    calls.append(path)
    if len(calls) >= {fail_at}:
        Path(path).write_bytes(b"PK half a zip file")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return save(self, path, *args, **kwargs)
Trainer.save_checkpoint = save_until_full
from algd.train import main
sys.argv = ["algd.train", *sys.argv[1:]]
main()
"""


def test_a_failed_save_keeps_the_previous_checkpoint_and_stops_with_one_line(tmp_path):
    """The disk fills up at the frame-600 save (writes 1 and 2 are last.ckpt and frame_300.ckpt at frame 300): the
    run stops at once with exit code 5 and one line naming the file and the cause, status.json says failed and why,
    no temporary file is left, and last.ckpt still holds frame 300 and loads; ``resume=`` then continues from it."""
    args = [*INTERRUPT, "total_frames=1000", f"paths.log_dir={tmp_path}"]
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK.format(fail_at=3), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 5, proc.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("train:")]
    assert lines == [
        f"error: cannot write checkpoint {last}: No space left on device (errno ENOSPC); training stopped at frame "
        f"600 ({last} (frame 300) is intact and resumes the run)"
    ], proc.stderr[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["exit_code"] == 5 and "No space left" in status["error"]
    assert sorted(p.name for p in last.parent.iterdir()) == ["frame_300.ckpt", "last.ckpt"]
    assert ckpt(run_dir)["RLDataModule"]["frames"] == 300
    resumed = run_train(f"resume={run_dir}", "total_frames=400", tmp_path=tmp_path)
    assert resumed.returncode == 0 and f"{last} at frame 300:" in resumed.stdout, resumed.stderr[-3000:]


def test_wall_clock_cadence_saves_last_ckpt_between_frame_checkpoints(tmp_path):
    """``checkpoint_every_minutes`` alone (frame checkpoints off): ``last.ckpt`` appears within seconds and a
    SIGKILL then loses at most that much work; no frame snapshots are written."""
    args = [*SMALL, "seed=1", "total_frames=20000", "checkpoint_every_frames=0", "checkpoint_every_minutes=0.02"]
    cmd = [sys.executable, "-m", "algd.train", f"paths.log_dir={tmp_path}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_checkpoint(proc, tmp_path, "last.ckpt")
        first = ckpt(run_dirs(tmp_path)[0])["RLDataModule"]["frames"]
        deadline = time.time() + 60
        while ckpt(run_dirs(tmp_path)[0])["RLDataModule"]["frames"] == first:  # and again 1.2 s later
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (run_dir,) = run_dirs(tmp_path)
    assert 0 < first < ckpt(run_dir)["RLDataModule"]["frames"] < 20000
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]


def test_checkpointed_replay_holds_the_filled_rows_only_and_every_bit(tmp_path):
    """The replay buffer in ``last.ckpt`` costs its filled rows, not the storage's capacity (a slice saved as is
    would write the whole 1 M-row storage: 643 MB for 600 PointButton frames), and reloads bit for bit, signed zeros
    included."""
    import io

    from tensordict import TensorDict

    from algd.data.replay import buffer_state, load_buffer_state, make_buffer

    rows = TensorDict(
        {"observation": torch.tensor([[0.0, -0.0, 1.5]] * 10), "action": torch.randn(10, 2)}, batch_size=[10]
    )
    buffer = make_buffer(100_000, 4)
    buffer.extend(rows)
    saved = io.BytesIO()
    torch.save(buffer_state(buffer), saved)
    assert saved.tell() < 20_000  # 100k rows × 5 floats would be 2 MB
    saved.seek(0)
    again = make_buffer(100_000, 4)
    load_buffer_state(again, torch.load(saved, weights_only=True))
    for key in ("observation", "action"):
        a, b = buffer.storage[:10][key], again.storage[:10][key]
        assert torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b)), key
