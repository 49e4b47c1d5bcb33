"""The benchmark's printed tables and its JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from algd.bench.learner import ACT, BATCH, OBS


def machine_record(**fields) -> dict:
    """What every benchmark file starts with: the machine, torch, the update's sizes and the heap setting."""
    from algd.launch.runtime import cpu_bf16_flags
    from algd.learner.perf import keep_heap

    return {
        "cpu_bf16_flags": cpu_bf16_flags(),
        **fields,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": BATCH,
        "obs_dim": OBS,
        "act_dim": ACT,
        "keep_heap": keep_heap(),
    }


def write_result(result: dict, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n[bench] wrote {out}")


def print_cpu_report(result: dict) -> None:
    ups, flops = result["updates_per_s"], result["flops_per_update"]
    print(
        f"\n{result['device']} (bf16 flags: {', '.join(result['cpu_bf16_flags']) or 'none'}), {result['threads']} "
        f"threads, torch {result['torch']}; peak matmul (2048²) "
        f"{result['peak_matmul_gflops']:.0f} GFLOP/s fp32, {result['peak_matmul_gflops_bf16']:.0f} bf16"
    )
    print("\nlearner (batch 256, obs 76, act 2)   updates/s   ms/update   GFLOP/update   GFLOP/s   minimal_sac ratio")
    for name, value in ups.items():
        f = flops.get(name)
        fl = f"{f / 1e9:12.2f}   {f * value / 1e9:7.1f}" if f else f"{'':12}   {'':7}"
        print(f"  {name:<34} {value:9.1f}   {1000 / value:9.1f}   {fl}   {ups['minimal_sac'] / value:8.2f}")
    print(
        f"  precision: default {result['precision_default']}; auto here: {result['precision_auto']} "
        f"({result['precision_auto_why']}); bf16-mixed / 32-true "
        f"{ups['diffusion_bf16-mixed'] / ups['diffusion_32-true']:.2f}×"
    )
    if "ratio_ours_to_authors" in result:
        print(
            f"  ours / the authors' DDPM update (same run): {result['ratio_ours_to_authors']:.2f}× with our defaults, "
            f"{result['ratio_ours_32-true_to_authors']:.2f}× in 32-true, "
            f"{result['ratio_ours_bf16-mixed_to_authors']:.2f}× in bf16-mixed, "
            f"{result['ratio_ours_reference_preset_to_authors']:.2f}× under experiment=algd_reference"
        )
    if "population_seed_updates_per_s" in result:
        print("\npopulations (diffusion, S learners in one update): seed-updates/s (per-seed ratio to S = 1)")
        for p, rates in result["population_seed_updates_per_s"].items():
            ratios = result["population_per_seed_ratio"][p]
            print(f"  {p:<11} " + "   ".join(f"S={s} {v:6.1f} ({ratios[s]:.2f}×)" for s, v in rates.items()))
    if "jobs_vs_threads" in result:
        jt = result["jobs_vs_threads"]
        print(f"\none process with {jt['cores']} threads vs two at once (diffusion learner, seed-updates/s, summed):")
        for size, rates in ((k, v) for k, v in jt.items() if isinstance(v, dict)):
            one, two = (v for k, v in rates.items() if k != "ratio")
            print(f"  S={size}  one {one:6.1f}   two {two:6.1f}   ({rates['ratio']:.2f}×)")
    print("\nupdate breakdown (ms per update, profiled):")
    for name, phases in result["update_ms_breakdown"].items():
        print(f"  {name:<12} " + "  ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    print(
        "  matmul floor (the update's matmul-kernel time alone ÷ minimal_sac's ms/update): "
        + ", ".join(f"{k} {v:.2f}" for k, v in result["matmul_floor_ratio"].items())
    )
    for name, value in result.get("options", {}).items():
        print(f"  option {name:<28} {value:6.1f} updates/s")
    for name, c in result.get("options_collect", {}).items():
        print(
            f"  option {name} collector on the lean env {c['lean_fps']:.1f} frames/s vs TorchRL's "
            f"SafetyGymnasiumWrapper + DoubleToFloat {c['torchrl_wrapper_fps']:.1f} ({c['speedup']:.2f}×)"
        )
    print("\ncollection frames/s (random actions, resets included):")
    for name, c in result["collect"].items():
        multi = (
            f"  multi({c['multi_workers']}) {c['multi_fps']:7.1f} ({c['multi_over_single']:.2f}× single)"
            if "multi_fps" in c
            else ""
        )
        print(
            f"  {name:<12} raw {c['raw_fps']:7.1f}  collector {c['collector_fps']:7.1f}  ratio {c['ratio']:.2f}" + multi
        )
    if "render" in result:
        rd = result["render"]
        print(
            f"\nevaluation video ({rd['size']}×{rd['size']}, PointButton1): {rd['render_fps']:.1f} frames/s rendered, "
            f"{rd['step_only_fps']:.1f} steps/s without rendering"
        )
    print("\ntraining loop on PointButton1 (Lightning, UTD 10, after warm-up):")
    for name, fps in result["train_fps"].items():
        inside = result["train_updates_per_s"][name]
        print(f"  {name:<12} {fps:6.2f} frames/s  ({inside:.1f} updates/s inside Lightning)")
    if "train_population" in result:
        pop = result["train_population"]
        print(
            f"  diffusion, seeds=[0..{pop['seeds'] - 1}]: {pop['seed_updates_per_s']:.1f} seed-updates/s "
            f"({pop['per_seed_ratio']:.2f}x the single run's per seed)"
        )


def print_gpu_report(result: dict) -> None:
    ups = result["updates_per_s"]
    print("\nlearner (batch 256, obs 76, act 2)   cuda graphs   cuda eager    cpu   graphs/cpu   minimal_sac(cuda)/x")
    for name in ups["cuda"]:
        g, e, c = ups["cuda_graphs"].get(name, float("nan")), ups["cuda"][name], ups["cpu"][name]
        best = max(g, e) if g == g else e
        print(
            f"  {name:<34} {g:11.1f}   {e:10.1f}   {c:5.1f}   {g / c:10.2f}   {ups['cuda']['minimal_sac'] / best:8.2f}"
        )
    print("\ntraining loop, toy env, UTD 10:")
    for key, loop in result["train_toy"].items():
        print(f"  {key:<16} {loop['fps']:7.2f} frames/s  {loop['updates_per_s']:7.1f} updates/s")
    print("\ntraining loop, PointButton1, UTD 10, diffusion on the GPU (goals: 600 updates/s at S = 1, 3000 at S = 8):")
    for key, label in [("train_population_cuda", ""), ("train_population_cuda_updates_per_graph", ", k per graph")]:
        for seeds, loop in result.get(key, {}).items():
            print(
                f"  S = {seeds:<3} {loop['seed_updates_per_s']:8.1f} seed-updates/s  "
                f"({loop['fps']:.2f} frames/s per member{label})"
            )
