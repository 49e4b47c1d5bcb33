"""Benchmarks (``make bench``): every ratio is measured within one run, since these machines vary ±30–50 %.

- ``updates_per_s``: the learner's full update (``SafeActorCritic.update``) per actor, and ``minimal_sac``,
  a deliberately plain eager SAC update (twin Q 2×256, Gaussian actor 2×256) kept as a yardstick;
- ``update_ms_breakdown``: wall time of the update's named phases (``record_function`` ranges in ``update``);
- ``flops_per_update`` (matmul FLOPs, forward and backward, counted by ``FlopCounterMode``), the achieved GFLOP/s
  and ``peak_matmul_gflops``, a 2048² fp32 matmul timed in the same run (bf16 too: ``peak_matmul_gflops_bf16``);
- ``collect``: raw safety-gymnasium steps/s (random actions, resets included) vs the TorchRL ``Collector`` used by
  training (same env, a policy returning random actions), on PointGoal1 and PointButton1 (paper protocol);
- ``train_fps``: env frames/s of the real training loop (DataModule → Lightning ``Trainer`` → ``update``, UTD 10) on
  PointButton1 once learning has started, with the updates/s seen inside Lightning;
- ``options`` (``--options``): directions measured but not used (CPU bf16 autocast, ``torch.compile``), updates/s.
Each timing is repeated and the median reported. Writes ``logs/bench/bench.json``.
"""

from __future__ import annotations

import argparse

import torch

from algd.bench.learner import (
    ACT,
    BATCH,
    OBS,
    autocast_bf16,
    compile_critics,
    flops_per_update,
    learner_updates_per_s,
    update_breakdown,
)
from algd.bench.loops import collect_fps, collector_wrapper_ab, train_fps
from algd.bench.report import print_cpu_report, print_gpu_report, write_result
from algd.bench.sac import minimal_sac_flops, minimal_sac_updates_per_s
from algd.bench.timing import device_name, device_name_cpu, peak_matmul_gflops

FORLOOP_ADAM = ["optim.fused=false"]  # torch's for-loop Adam instead of the fused kernel training uses on CPU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=50, help="updates per timing")
    parser.add_argument("--frames", type=int, default=1200, help="env frames per collection timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--options",
        action="store_true",
        help="also time CPU bf16 autocast and torch.compile of the critics (off: slower here)",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: learner updates/s on the GPU beside the same on this machine's CPU, and the "
        "training loop (toy env) with trainer=gpu vs cpu; writes logs/bench/bench_cuda.json",
    )
    parser.add_argument(
        "--out", default=None, help="default: logs/bench/bench.json (bench_cuda.json with --device cuda)"
    )
    args = parser.parse_args()
    from algd.learner.perf import keep_heap

    if args.device == "cuda":
        return gpu_main(args)

    result = {
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": BATCH,
        "obs_dim": OBS,
        "act_dim": ACT,
        "keep_heap": keep_heap(),
    }
    print(f"[bench] {result['device']}, {result['threads']} threads; timing the learner ...", flush=True)
    result["peak_matmul_gflops"] = peak_matmul_gflops()
    result["peak_matmul_gflops_bf16"] = peak_matmul_gflops(dtype=torch.bfloat16)
    ups = result["updates_per_s"] = {}
    for _ in range(2):  # two interleaved rounds; the better (less disturbed) median of each is kept
        for name in ["diffusion", "diffusion_ve", "gaussian", "minimal_sac"]:
            rate = (
                minimal_sac_updates_per_s(args.updates, args.repeats)
                if name == "minimal_sac"
                else learner_updates_per_s(name, args.updates, args.repeats)
            )
            ups[name] = max(ups.get(name, 0.0), rate)
    result["update_ms_breakdown"] = {
        name: update_breakdown(name, args.updates) for name in ["diffusion", "gaussian", "minimal_sac"]
    }
    # The ratio to minimal_sac if everything but the matmul kernels took no time at all: the update's matmul-kernel
    # time (the profiler barely slows these large kernels) over minimal_sac's unprofiled update time, same run.
    sac_ms = 1000.0 / ups["minimal_sac"]
    result["matmul_floor_ratio"] = {
        name: result["update_ms_breakdown"][name]["matmul"] / sac_ms for name in ["diffusion", "gaussian"]
    }
    flops = result["flops_per_update"] = {name: flops_per_update(name) for name in ["diffusion", "gaussian"]}
    flops["minimal_sac"] = minimal_sac_flops()
    result["achieved_gflops"] = {name: flops[name] * ups[name] / 1e9 for name in flops}
    if args.options:
        print("[bench] options: bf16 autocast, torch.compile, for-loop Adam, TorchRL's env wrapper ...", flush=True)
        u, r = args.updates, args.repeats
        opts = result["options"] = {}
        for _ in range(2):  # two interleaved rounds, the better median kept (as above)
            for name, rate in [
                ("diffusion_bf16_autocast", lambda: learner_updates_per_s("diffusion", u, r, autocast_bf16)),
                ("diffusion_compile_critics", lambda: learner_updates_per_s("diffusion", u, r, compile_critics)),
                ("diffusion_adam_forloop", lambda: learner_updates_per_s("diffusion", u, r, overrides=FORLOOP_ADAM)),
                ("diffusion_default", lambda: learner_updates_per_s("diffusion", u, r)),
                ("gaussian_adam_forloop", lambda: learner_updates_per_s("gaussian", u, r, overrides=FORLOOP_ADAM)),
                ("gaussian_default", lambda: learner_updates_per_s("gaussian", u, r)),
            ]:
                opts[name] = max(opts.get(name, 0.0), rate())
        result["options_collect"] = {
            "PointGoal1": collector_wrapper_ab("SafetyPointGoal1-v0", args.frames, args.repeats)
        }
    result["collect"] = {}
    for name, env_id in [("PointGoal1", "SafetyPointGoal1-v0"), ("PointButton1", "SafetyPointButton1-v0")]:
        print(f"[bench] collection on {env_id} ...", flush=True)
        result["collect"][name] = collect_fps(env_id, args.frames, args.repeats)
    print("[bench] training loop (Lightning, UTD 10) on PointButton1 ...", flush=True)
    loops = {name: train_fps(name) for name in ["diffusion", "gaussian"]}
    result["train_fps"] = {name: loop["fps"] for name, loop in loops.items()}
    result["train_updates_per_s"] = {name: loop["updates_per_s"] for name, loop in loops.items()}
    print_cpu_report(result)
    write_result(result, args.out or "logs/bench/bench.json")


if __name__ == "__main__":
    main()


def gpu_main(args) -> None:
    """The learner on CUDA vs this machine's CPU, in one run (batch 256, PointButton1 sizes)."""
    if not torch.cuda.is_available():
        raise SystemExit(f"error: --device cuda: no CUDA device is visible to torch {torch.__version__}")
    from algd.learner.perf import keep_heap

    cpu = device_name_cpu()
    result = {
        "device": torch.cuda.get_device_name(),
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": BATCH,
        "obs_dim": OBS,
        "act_dim": ACT,
        "keep_heap": keep_heap(),
    }
    print(f"[bench] {result['device']} vs {cpu} ({result['threads']} threads) ...", flush=True)
    ups = result["updates_per_s"] = {"cuda_graphs": {}, "cuda": {}, "cpu": {}}
    for mode in ups:
        device = "cpu" if mode == "cpu" else "cuda"
        for name in ["diffusion", "diffusion_ve", "gaussian", "minimal_sac"]:
            if name == "minimal_sac" and mode == "cuda_graphs":
                continue
            ups[mode][name] = (
                minimal_sac_updates_per_s(args.updates, args.repeats, device)
                if name == "minimal_sac"
                else learner_updates_per_s(
                    name, args.updates, args.repeats, device=device, graphs=mode == "cuda_graphs"
                )
            )
            print(f"  {mode:<11} {name:<13} {ups[mode][name]:8.1f} updates/s", flush=True)
    print("[bench] training loop on the toy env (UTD 10, trainer=gpu vs cpu) ...", flush=True)
    result["train_toy"] = {
        f"{name}_{device}": train_fps(name, env="toy", device=device, learn_frames=100)
        for name in ["diffusion", "gaussian"]
        for device in ["cuda", "cpu"]
    }
    print_gpu_report(result)
    write_result(result, args.out or "logs/bench/bench_cuda.json")


if __name__ == "__main__":
    main()
