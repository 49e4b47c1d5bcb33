"""The critics against the run's own training episodes: ``python -m algd.calibrate <run dir> [--episodes N]``
(``make calibrate RUN=... EPISODES=10``).

For each member of a population (or the single run), the learner saved in its ``checkpoints/last.ckpt`` is set
against the last N complete training episodes in the replay buffer of the run's ``last.ckpt``: the episodes the
stochastic policy actually ran, where the evaluation's calibration (``calibration/*`` in TensorBoard) uses
deterministic episodes. It prints

- Q̂c(s_t, a_t) against the realised discounted cost-to-go Σ_j γc^j·c_{t+j} (and the reward critic against the
  discounted return-to-go), over the steps whose realised sum is the critic's whole target: every step of an
  episode that ended in a termination where the critic stops too, else those whose realised sum misses at most 5 %
  of the discount weight (:func:`algd.callbacks.evaluation.calibration`);
- the action gap at those states, δ = Q̂c(s, a_t) − Q̂c(s, a′) with a′ the policy's action as the critic's Bellman
  target draws it (``actor.target_action``), over c̄, the episodes' cost per step, and the level (c̄ − γ′·δ)/(1 − γ′)
  such a gap holds the critic's mean at (γ′ = γc, or γc·(1 − the fraction of steps that end in a fall) where the
  cost bootstrap stops there) (:func:`algd.reporting.runs.derived` reads the same from the logged curves).

The episodes were run by a policy that changed while they ran (UTD updates per frame), so the realised sums belong
to the policies of those frames, not exactly to the saved one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from algd.errors import ConfigError, OneLineParser, exit_on_error

USAGE = "python -m algd.calibrate <run dir> [--episodes N] [--out FILE.json]"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="algd-calibrate", usage=USAGE, description=__doc__.split("\n\n")[1])
    parser.add_argument("run", nargs="?", help="a run directory (a population's, a member's or a single run's)")
    parser.add_argument("--episodes", type=int, default=10, help="the last N complete training episodes (default 10)")
    parser.add_argument("--out", default=None, help="also write the numbers as JSON to this file")
    args = parser.parse_args(argv)
    if not args.run:
        raise ConfigError(f"no run given (usage: {USAGE})")
    if args.episodes < 1:
        raise ConfigError(f"invalid --episodes {args.episodes}: must be an integer >= 1")
    return args


def split_episodes(data, last: int) -> list:
    """The last ``last`` complete episodes of transitions stored in collection order (ends: ``("next", "done")``);
    the frames after the final end (an unfinished episode) are left out."""
    ends = data["next", "done"].reshape(-1).nonzero().reshape(-1).tolist()
    starts = [0, *[e + 1 for e in ends[:-1]]]
    return [data[s : e + 1] for s, e in zip(starts, ends)][-last:]


def action_gap(learner, episodes, cost_gamma: float) -> dict[str, float]:
    """δ = Q̂c(s, a_data) − Q̂c(s, a′), a′ ~ the policy's Bellman-target action, its ratio to the episodes' cost per
    step c̄, and the level :func:`algd.reporting.runs.qc_level` (with the episodes' terminations where the learner's
    cost bootstrap stops at them)."""
    import torch

    from algd.reporting.runs import qc_level

    obs = torch.cat([td["observation"] for td in episodes])
    data_actions = torch.cat([td["action"] for td in episodes])
    c = torch.cat([td["next", "cost"].reshape(-1) for td in episodes]).float().mean().item()
    stops = 0.0
    if learner.cost_done_mask:
        stops = torch.cat([td["next", "terminated"].reshape(-1) for td in episodes]).float().mean().item()
    with torch.no_grad():
        policy_actions = learner.actor.target_action(obs)[0]
    qc_data = learner.critic_values(obs, data_actions)[1].mean().item()
    qc_policy = learner.critic_values(obs, policy_actions)[1].mean().item()
    gap = qc_data - qc_policy
    out = {"qc_data": qc_data, "qc_policy": qc_policy, "gap": gap, "cost_per_step": c, "cost_stops": stops}
    out["level"] = qc_level(c, gap, cost_gamma, stops)
    if c > 0:
        out["gap_over_cost"] = gap / c
    return out


def replay_of(ckpt: dict, index: int | None):
    """The replay transitions in a run's checkpoint (of a population's member ``index``), as one TensorDict."""
    from tensordict import TensorDict

    if "PopulationDataModule" in ckpt:
        state = ckpt["PopulationDataModule"]["members"][index]
    else:
        state = next((v for k, v in ckpt.items() if k.endswith("DataModule")), None)
    if not state or "replay" not in state or not state["replay"]["size"]:
        raise ConfigError("the checkpoint holds no replay buffer (use the run's checkpoints/last.ckpt)")
    replay = state["replay"]
    return TensorDict(replay["data"], batch_size=[replay["size"]])


def calibrate_run(args: argparse.Namespace) -> list[dict]:
    from algd.launch.population import member_dirs, population_dir
    from algd.launch.resume import load_run

    run_dir, ckpt_path, _ = load_run(args.run, key="run")
    if population_dir(run_dir) is not None:  # a member: the replay is in its population's checkpoint
        population, members = population_dir(run_dir), [run_dir]
    else:
        population, members = run_dir, member_dirs(run_dir) or [run_dir]

    import torch

    from algd import build
    from algd.callbacks.checkpoint import checkpoint_frames, load_checkpoint
    from algd.callbacks.evaluation import calibration
    from algd.launch.runtime import default_threads, quiet_libraries

    quiet_libraries()
    population_path = population / "checkpoints" / "last.ckpt"
    population_ckpt = load_checkpoint(population_path)
    names = [m.name for m in member_dirs(population)]
    results = []
    for member in members:
        member_dir, weights_path, overrides = load_run(str(member), key="run")
        cfg = build.compose(overrides)
        if int(cfg.collector.workers) > 1 and cfg.collector.name != "single":
            raise ConfigError(f"{member_dir}: its collector interleaves several envs' episodes in the replay")
        if threads := default_threads(cfg):
            torch.set_num_threads(threads)
        factory = build.build_env(cfg)
        env = factory(int(cfg.seed))
        # a single run's weights are in the checkpoint already loaded for its replay
        same = weights_path.resolve() == population_path.resolve()
        weights = population_ckpt if same else load_checkpoint(weights_path)
        try:
            learner = build.restore_learner(cfg, env, factory.info, weights, weights_path)
        finally:
            env.close()
        learner.requires_grad_(False).eval()
        data = replay_of(population_ckpt, names.index(member.name) if names else None)
        episodes = split_episodes(data, args.episodes)
        if not episodes:
            raise ConfigError(f"{member_dir}: no complete training episode in the replay")
        torch.manual_seed(0)  # the policy's draws for the action gap
        stats = calibration(
            episodes,
            learner.critic_values,
            float(cfg.gamma),
            float(cfg.cost_gamma),
            learner.cost_done_mask,
            learner.reward_done_on_goal,
        )
        result = {
            "run": str(member_dir),
            "frame": checkpoint_frames(weights),
            "episodes": len(episodes),
            "steps": sum(td.shape[0] for td in episodes),
            **{k.removeprefix("calibration/"): v for k, v in stats.items()},
            **action_gap(learner, episodes, float(cfg.cost_gamma)),
        }
        results.append(result)
        print(report_lines(result), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return results


def report_lines(r: dict) -> str:
    lines = [f"[algd] {r['run']} (frame {r['frame']}): its last {r['episodes']} training episodes ({r['steps']} steps)"]
    for name, what in (("cost", "Q̂c vs realised discounted cost-to-go"), ("reward", "min Q vs return-to-go")):
        if f"{name}_q" in r:
            ratio = f", ratio {r[f'{name}_ratio']:.2f}" if f"{name}_ratio" in r else ""
            lines.append(
                f"  {what}: {r[f'{name}_q']:.3f} vs {r[f'{name}_to_go']:.3f}{ratio} ({int(r[f'{name}_steps'])} steps)"
            )
    gap = f", δ/c̄ {r['gap_over_cost']:.2f}" if "gap_over_cost" in r else ""
    lines.append(
        f"  action gap δ = Q̂c(s, a_data) − Q̂c(s, π) = {r['qc_data']:.3f} − {r['qc_policy']:.3f} = {r['gap']:.3f}"
        f"{gap} (c̄ = {r['cost_per_step']:.4f} per step); level (c̄ − γ′·δ)/(1 − γ′) = {r['level']:.2f}"
        + (f" (γ′ = γc·(1 − {r['cost_stops']:.4f}): the falls stop the cost bootstrap)" if r.get("cost_stops") else "")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    exit_on_error(lambda: calibrate_run(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
