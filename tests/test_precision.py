"""trainer.precision: bf16-mixed runs the hidden layers' matmuls in bf16 and keeps everything else in fp32; auto
picks it only where the hardware has fast bf16; a bad value is one clear line."""

import pytest
import torch
from conftest import run_dirs, run_train

from algd import build
from algd.bench.learner import random_batch
from algd.callbacks.checkpoint import load_checkpoint
from algd.errors import ConfigError
from algd.launch.validate import validate

OBS, ACT, BATCH = 6, 2, 32


def learner(precision: str, actor: str = "diffusion", seed: int = 0):
    cfg = build.compose(
        [
            "env=toy",
            f"actor={actor}",
            "critic.hidden=[64,64]",
            "critic.cost_hidden=[64,64]",
            "actor.hidden=[64,64]" if actor == "gaussian" else "actor.hidden=[64,64,64]",
            "trainer.accelerator=cpu",
            f"trainer.precision={precision}",
            "optim.fused=false",
        ]
    )
    device = build.resolve_device(cfg)
    specs = {"obs_dim": OBS, "act_dim": ACT, "action_low": -torch.ones(ACT), "action_high": torch.ones(ACT)}
    torch.manual_seed(seed)
    return build.build_learner(cfg, specs, build.build_env(cfg).info, device).standalone()


def batch():
    return random_batch(BATCH, obs=OBS, act=ACT, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("actor", ["diffusion", "diffusion_ve", "gaussian"])
def test_bf16_mixed_casts_hidden_matmuls_and_keeps_the_state_fp32(actor):
    model, data = learner("bf16-mixed", actor), batch()
    assert model.precision == "bf16-mixed"
    for _ in range(3):
        metrics = model.update(data)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for opt in model.optimizer_list():
        for state in opt.state.values():
            assert all(t.dtype == torch.float32 for t in state.values() if torch.is_tensor(t) and t.is_floating_point())
    obs, act = data["observation"], data["action"]
    with model.autocast():
        x = torch.cat([obs, act], -1)
        assert model.q.net[0](x.expand(2, *x.shape)).dtype == torch.bfloat16  # hidden layers: bf16
        assert model.q(obs, act).dtype == torch.float32  # output layer: fp32
        assert model.qc(obs, act).dtype == torch.float32
        assert model.energy_fn(obs, act).dtype == torch.float32
        if actor != "gaussian":
            eps, phi = model.actor.net(obs, torch.tanh(act), torch.tensor(0))
            assert phi.dtype == torch.float32 and (eps is None or eps.dtype == torch.float32)
        with torch.no_grad():
            assert model.actor.act(obs).dtype == torch.float32


def test_bf16_mixed_is_close_to_fp32_but_not_equal():
    """Same weights, batch and random draws: the first update's losses agree to bf16 accuracy, and they differ
    (bf16 is really used)."""
    data = batch()
    out = {}
    for precision in ("32-true", "bf16-mixed"):
        model = learner(precision)
        torch.manual_seed(5)
        out[precision] = model.update(data), [p.detach().clone() for p in model.parameters()]
    (m32, p32), (m16, p16) = out["32-true"], out["bf16-mixed"]
    for key in ("loss/critic", "loss/cost_critic", "loss/actor", "lagrange/qc_hat"):
        rel = abs(float(m16[key] - m32[key])) / max(abs(float(m32[key])), 1e-3)
        assert rel < 0.01, (key, float(m32[key]), float(m16[key]))
    assert any(not torch.equal(a, b) for a, b in zip(p32, p16))
    # every parameter moved by about one Adam step (lr 3e-4) in both precisions, in the same direction mostly
    init = [p.detach().clone() for p in learner("32-true").parameters()]
    agree = torch.cat([((a - i).sign() == (b - i).sign()).flatten().float() for a, b, i in zip(p32, p16, init)])
    assert agree.mean() > 0.95, float(agree.mean())


def test_auto_precision_follows_the_hardware(monkeypatch):
    from algd.launch import runtime

    monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", lambda: 4.2)  # the AMD EPYC's measured ratio
    assert build.resolve_precision("auto", "cpu") == (
        "bf16-mixed",
        "auto: the CPU has avx512_bf16 and its bf16 matmul runs 4.2x fp32 (>= 1.3x)",
    )
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", lambda: 0.6)  # flags but slow bf16 (an Intel Xeon measured)
    precision, why = build.resolve_precision("auto", "cpu")
    assert precision == "32-true" and "runs 0.6x fp32 (< 1.3x)" in why
    monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda: ["amx_tile"])  # tiles alone are not bf16
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", lambda: pytest.fail("no bf16 flags: nothing to measure"))
    precision, why = build.resolve_precision("auto", "cpu")
    assert precision == "32-true" and "neither avx512_bf16 nor amx_bf16" in why
    precision, why = build.resolve_precision("bf16-mixed", "cpu")  # as asked, with a warning in the reason
    assert precision == "bf16-mixed" and "likely slower" in why
    assert build.resolve_precision("32-true", "cpu") == ("32-true", "as set")
    monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda: ["avx512_bf16"])  # 32-true set: no probe at start-up
    assert build.resolve_precision("32-true", "cpu") == ("32-true", "as set")


def test_the_bf16_probe_measures_this_cpu():
    from algd.launch import runtime

    speedup = runtime.cpu_bf16_speedup()
    assert 0.01 < speedup < 100.0  # a ratio of two real timings
    assert runtime.cpu_bf16_speedup() == speedup  # measured once per process: auto cannot flip within a run


def test_the_run_says_which_device_and_precision_it_chose():
    cfg = build.compose(["env=toy", "trainer.precision=auto"])
    device = build.resolve_device(cfg)
    assert device.precision in ("32-true", "bf16-mixed")
    assert device.why.startswith("learner on ") and f"precision {device.precision} (auto: the " in device.why


def test_a_bad_precision_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"invalid trainer.precision=16: must be one of 32-true, bf16-mixed, auto"):
        validate(build.compose(["env=toy", "trainer.precision=16"]))


def test_a_resumed_auto_run_keeps_its_checkpoints_precision(tmp_path):
    """``auto`` is decided by a timing at start-up, which can read differently on the next start: a resumed run keeps
    the precision its checkpoint was trained in (here the checkpoint is edited to the other one)."""
    small = ["env=toy", "warmup_frames=100", "batch_size=32", "utd=1", "eval_episodes=2", "trainer.threads=1"]
    first = run_train(*small, "trainer.precision=auto", "total_frames=200", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    path = run_dir / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(path)
    chosen = saved["precision"]
    assert f"precision {chosen} (auto: " in first.stdout
    other = {"32-true": "bf16-mixed", "bf16-mixed": "32-true"}[chosen]
    torch.save({**saved, "precision": other}, path)
    resumed = run_train(f"resume={run_dir}", "total_frames=300", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"precision {other} (auto: " in resumed.stdout  # the checkpoint's (or, by chance, this start's too)
    assert load_checkpoint(path)["precision"] == other


def test_keeping_the_checkpoints_precision_says_so():
    device = build.Device("cpu", False, "bf16-mixed", "learner on CPU; precision bf16-mixed (auto: the CPU has x)")
    kept = build.keep_precision(device, {"precision": "32-true"}, "auto")
    assert kept.precision == "32-true"
    assert kept.why == (
        "learner on CPU; precision 32-true (auto: the checkpoint's; this start alone would take bf16-mixed, "
        "the CPU has x)"
    )


def test_an_explicit_precision_is_used_as_set_on_resume():
    device = build.Device("cpu", False, "32-true", "learner on CPU; precision 32-true (as set)")
    assert build.keep_precision(device, {"precision": "bf16-mixed"}, "32-true") is device
    assert build.keep_precision(device, {}, "auto") is device  # a checkpoint from before the key: this start's
