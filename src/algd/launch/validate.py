"""Impossible config values rejected before any work, one clear line each (key, value, what is allowed)."""

from __future__ import annotations

from algd.errors import ConfigError


def _check(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {key}={value}: must be {rule}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(cfg) -> None:
    """Reject impossible values before any work, one clear line each (key, value, what is allowed)."""

    def get(key):
        node = cfg
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        return node

    def integer(key, low, rule=None):
        v = get(key)
        _check(_is_int(v) and v >= low, key, v, rule or f"an integer >= {low}")

    def number(key, low, high=None, low_open=False, rule=None):
        v = get(key)
        ok = _is_num(v) and (v > low if low_open else v >= low) and (high is None or v <= high)
        bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        _check(ok, key, v, rule or f"a number {bounds}")

    for key in ["seed", "warmup_frames", "eval_every_frames", "eval_episodes", "checkpoint_every_frames"]:
        integer(key, 0)
    for key in [
        "total_frames",
        "batch_size",
        "log_every_frames",
        "ensemble",
        "polyak_every",
        "buffer_capacity",
        "collector.frames_per_batch",
        "collector.workers",
        "env.max_episode_steps",
    ]:
        integer(key, 1)
    _check(
        cfg.collector.name in ("single", "multi", "async"),
        "collector.name",
        cfg.collector.name,
        "one of single, multi, async",
    )
    if cfg.collector.name == "multi":  # the workers step together and share each batch
        _check(
            cfg.collector.frames_per_batch % cfg.collector.workers == 0,
            "collector.frames_per_batch",
            cfg.collector.frames_per_batch,
            f"a multiple of collector.workers ({cfg.collector.workers})",
        )
    if get("callbacks.video.every_frames") is not None:
        integer("callbacks.video.every_frames", 0, "null or 0 (off) or an integer >= 1 (frames between videos)")
    for key in ["callbacks.video.max_frames", "callbacks.video.width", "callbacks.video.height", "callbacks.video.fps"]:
        integer(key, 1)
    if get("collector.sync_every_frames") is not None:
        integer("collector.sync_every_frames", 1, "null (refresh before every collection) or an integer >= 1")
    _check(
        cfg.warmup_frames < cfg.total_frames,
        "warmup_frames",
        cfg.warmup_frames,
        f"< total_frames ({cfg.total_frames}), or no update would ever run",
    )
    _check(
        cfg.batch_size <= cfg.warmup_frames,
        "batch_size",
        cfg.batch_size,
        f"<= warmup_frames ({cfg.warmup_frames}), so the first update samples a full batch of warm-up data",
    )
    _check(
        cfg.buffer_capacity >= cfg.batch_size,
        "buffer_capacity",
        cfg.buffer_capacity,
        f">= batch_size ({cfg.batch_size})",
    )
    number("utd", 0, low_open=True, rule="a number > 0 (gradient updates per environment frame)")
    number("k", 0, rule="a number >= 0 (risk coefficient: Q̂c = mean + k·std)")
    for key in ["gamma", "cost_gamma", "tau"]:
        number(key, 0, 1, low_open=True)
    if get("grad_clip") is not None:
        number("grad_clip", 0, low_open=True, rule="null or a number > 0")
    if get("env.cost_limit") is not None:
        number("env.cost_limit", 0, rule="a number >= 0 (episode cost limit)")
    actor = cfg.actor
    if "steps" in actor:
        low = 2 if actor.name == "diffusion_ve" else 1
        integer("actor.steps", low, f"an integer >= {low} (K, the number of denoising steps)")
    if "mc_samples" in actor:
        integer("actor.mc_samples", 1, "an integer >= 1 (N, Monte-Carlo samples for the score target)")
    if "beta_temperature" in actor:
        number("actor.beta_temperature", 0, low_open=True)
    for key in ["guidance_weight", "c_energy", "c_score"]:
        if key in actor:
            number(f"actor.{key}", 0)
    for key in ["hidden", "critic.hidden", "critic.cost_hidden"]:
        full = key if "." in key else f"actor.{key}"
        v = get(full)
        if v is not None:
            _check(
                len(v) >= 1 and all(_is_int(w) and w >= 1 for w in v),
                full,
                list(v),
                "a non-empty list of positive layer widths",
            )
    if "rho" in cfg.energy:
        number("energy.rho", 0, low_open=True)
    if "lr" in cfg.optim:
        number("optim.lr", 0, low_open=True)
    accelerator = cfg.trainer.accelerator
    _check(accelerator in ("cpu", "gpu", "cuda", "auto"), "trainer.accelerator", accelerator, "one of cpu, gpu, auto")
    _check(
        cfg.trainer.get("cuda_graphs", False) in (True, False),
        "trainer.cuda_graphs",
        cfg.trainer.get("cuda_graphs"),
        "true or false",
    )
    if cfg.trainer.threads is not None:
        integer("trainer.threads", 1, "null (torch's default) or an integer >= 1")
