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
- ``jobs_vs_threads``: one process with every core against two with half each (``make reproduce JOBS=``);
- ``options`` (``--options``): directions measured but not used (CPU bf16 autocast, ``torch.compile``), updates/s;
- ``--ref <checkout>``: the authors' DDPM update (github Wenxuan52/ALGD, their learner only, CPU-patched at run time)
  and ours under ``experiment=algd_reference``, in the same interleaved rounds; ``ratio_ours_to_authors``.
Each timing is repeated and the median reported. Writes ``logs/bench/bench.json``.
"""

from __future__ import annotations

import argparse


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
        "--ref",
        default=None,
        help="a checkout of github Wenxuan52/ALGD: also time the authors' DDPM update (their learner, on the CPU) in "
        "the same rounds, and our learner under experiment=algd_reference; bench.json gets ratio_ours_to_authors",
    )
    parser.add_argument(
        "--out", default=None, help="default: logs/bench/bench.json (bench_cuda.json with --device cuda)"
    )
    args = parser.parse_args()
    from algd.launch.runtime import headless_rendering

    headless_rendering()
    if args.device == "cuda":
        from algd.bench.gpu import run_gpu

        return run_gpu(args)
    from algd.bench.cpu import run_cpu

    return run_cpu(args)


if __name__ == "__main__":
    main()
