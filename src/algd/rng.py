"""Random-number-generator states in a form ``torch.load(weights_only=True)`` accepts (for checkpoints)."""

from __future__ import annotations

import random

import numpy as np
import torch


def mt19937_to_dict(state: tuple) -> dict:
    """A numpy MT19937 state tuple as a dict of a tensor and plain numbers."""
    _, keys, pos, has_gauss, cached = state
    return {
        "keys": torch.from_numpy(keys.astype("int64")),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def mt19937_from_dict(state: dict) -> tuple:
    return "MT19937", state["keys"].numpy().astype("uint32"), state["pos"], state["has_gauss"], state["cached"]


def rng_states() -> dict:
    """Global RNG states: torch CPU and CUDA, numpy, Python."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": mt19937_to_dict(np.random.get_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    np.random.set_state(mt19937_from_dict(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
