"""``make bench`` with ``--device cuda``: the learner on CUDA (CUDA graphs, eager) beside this machine's CPU, and
the training loop on the toy env with the learner on each, in one run."""

from __future__ import annotations

import torch

from algd.bench.learner import learner_updates_per_s
from algd.bench.loops import train_fps
from algd.bench.report import machine_record, print_gpu_report, write_result
from algd.bench.sac import minimal_sac_updates_per_s
from algd.bench.timing import device_name_cpu

UPDATES_PER_GRAPH = 50  # the loop's updates in one graph (UTD 10, 10 frames per collection: 100 per collection)


def run_gpu(args) -> None:
    """The learner on CUDA vs this machine's CPU, in one run (batch 256, PointButton1 sizes)."""
    if not torch.cuda.is_available():
        raise SystemExit(f"error: --device cuda: no CUDA device is visible to torch {torch.__version__}")
    cpu = device_name_cpu()
    result = machine_record(device=torch.cuda.get_device_name(), cpu=cpu)
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
    print("[bench] training loop of populations on PointButton1 (UTD 10, the GPU) ...", flush=True)
    result["train_population_cuda"] = {
        seeds: train_fps("diffusion", device="cuda", seeds=seeds, learn_frames=100) for seeds in (1, 8)
    }
    print(f"[bench] the same with trainer.updates_per_graph={UPDATES_PER_GRAPH} ...", flush=True)
    many = [f"trainer.updates_per_graph={UPDATES_PER_GRAPH}"]
    result["train_population_cuda_updates_per_graph"] = {
        seeds: train_fps("diffusion", device="cuda", seeds=seeds, learn_frames=100, overrides=many) for seeds in (1, 8)
    }
    print_gpu_report(result)
    write_result(result, args.out or "logs/bench/bench_cuda.json")
