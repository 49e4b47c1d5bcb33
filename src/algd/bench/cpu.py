"""``make bench`` on the CPU: learner updates/s per actor beside the yardstick SAC, the update's phases, FLOPs and
the matmul peak, collection, the training loop, and (``--options``) the directions measured and not taken."""

from __future__ import annotations

from functools import partial

import torch

from algd.bench.learner import autocast_bf16, compile_critics, flops_per_update, learner_updates_per_s, update_breakdown
from algd.bench.loops import collect_fps, collector_wrapper_ab, render_fps, train_fps
from algd.bench.parallel import jobs_vs_threads
from algd.bench.report import machine_record, print_cpu_report, write_result
from algd.bench.sac import minimal_sac_flops, minimal_sac_updates_per_s
from algd.bench.timing import device_name, peak_matmul_gflops
from algd.schema import PRECISIONS

FORLOOP_ADAM = ["optim.fused=false"]  # torch's for-loop Adam instead of the fused kernel training uses on CPU
TIMED_PRECISIONS = PRECISIONS[:2]  # 32-true, bf16-mixed (auto picks one of them)
POPULATIONS = (1, 2, 4, 8)  # S learners per process (seed-updates/s = S × population updates/s)
LOOP_POPULATION = 4  # the whole training loop of a population of 4 beside the single run's


def run_cpu(args) -> None:
    result = machine_record(device=device_name())
    print(f"[bench] {result['device']}, {result['threads']} threads; timing the learner ...", flush=True)
    result["peak_matmul_gflops"] = peak_matmul_gflops()
    result["peak_matmul_gflops_bf16"] = peak_matmul_gflops(dtype=torch.bfloat16)
    ups = result["updates_per_s"] = {}
    u, r = args.updates, args.repeats
    from algd import build

    result["precision_default"] = build.compose([]).trainer.precision
    result["precision_auto"], result["precision_auto_why"] = build.resolve_precision("auto", "cpu")
    default = build.resolve_precision(result["precision_default"], "cpu")[0]  # what `diffusion` (the default) runs
    timings = {
        **{
            f"diffusion_{p}": partial(learner_updates_per_s, "diffusion", u, r, overrides=[f"trainer.precision={p}"])
            for p in TIMED_PRECISIONS
        },
        "diffusion_ve": lambda: learner_updates_per_s("diffusion_ve", u, r),
        "gaussian": lambda: learner_updates_per_s("gaussian", u, r),
        "minimal_sac": lambda: minimal_sac_updates_per_s(u, r),
    }
    if args.ref:
        from algd.bench.learner import ACT, BATCH, OBS
        from algd.bench.reference import authors_updates_per_s

        timings["diffusion_algd_reference"] = lambda: learner_updates_per_s(
            "diffusion", u, r, overrides=["experiment=algd_reference"]
        )
        timings["authors_ddpm"] = lambda: authors_updates_per_s(args.ref, OBS, ACT, BATCH, u, r)
    for _ in range(2):  # two interleaved rounds; the better (less disturbed) median of each is kept
        for name, timing in timings.items():
            ups[name] = max(ups.get(name, 0.0), timing())
    ups = result["updates_per_s"] = {"diffusion": ups[f"diffusion_{default}"], **ups}  # (timed once, in its row)
    if args.ref:
        result["ratio_ours_to_authors"] = ups["diffusion"] / ups["authors_ddpm"]
        for p in TIMED_PRECISIONS:
            result[f"ratio_ours_{p}_to_authors"] = ups[f"diffusion_{p}"] / ups["authors_ddpm"]
        result["ratio_ours_reference_preset_to_authors"] = ups["diffusion_algd_reference"] / ups["authors_ddpm"]
    print("[bench] populations: S learners in one update ...", flush=True)
    pop = result["population_seed_updates_per_s"] = {}
    for _ in range(2):  # two interleaved rounds, the better median kept
        for p in TIMED_PRECISIONS:
            for size in POPULATIONS:
                rate = size * learner_updates_per_s(
                    "diffusion", max(5, u // size), r, overrides=[f"trainer.precision={p}"], population=size
                )
                pop.setdefault(p, {})[size] = max(pop.get(p, {}).get(size, 0.0), rate)
    result["population_per_seed_ratio"] = {
        p: {size: rates[size] / rates[1] for size in POPULATIONS} for p, rates in pop.items()
    }
    print("[bench] one process with every core vs two with half each (make reproduce JOBS=) ...", flush=True)
    result["jobs_vs_threads"] = jobs_vs_threads()
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
    print("[bench] evaluation video rendering on PointButton1 ...", flush=True)
    result["render"] = render_fps(100, args.repeats)
    print("[bench] training loop (Lightning, UTD 10) on PointButton1 ...", flush=True)
    loops = {name: train_fps(name) for name in ["diffusion", "gaussian"]}
    result["train_fps"] = {name: loop["fps"] for name, loop in loops.items()}
    result["train_updates_per_s"] = {name: loop["updates_per_s"] for name, loop in loops.items()}
    print(f"[bench] training loop of a population (seeds=[0..{LOOP_POPULATION - 1}]) on PointButton1 ...", flush=True)
    loop = train_fps("diffusion", seeds=LOOP_POPULATION)
    result["train_population"] = {
        "seeds": LOOP_POPULATION,
        "seed_updates_per_s": loop["seed_updates_per_s"],
        "per_seed_ratio": loop["seed_updates_per_s"] / loops["diffusion"]["updates_per_s"],
    }
    print_cpu_report(result)
    write_result(result, args.out or "logs/bench/bench.json")
