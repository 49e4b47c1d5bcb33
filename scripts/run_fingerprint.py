"""Fingerprint a finished run, to check that a refactor changed no number: its final evaluation (``status.json``) and
a hash of every tensor of ``checkpoints/last.ckpt`` (weights, optimiser states, replay buffer).

    .venv/bin/python -m algd.train env=toy seed=3 total_frames=400 warmup_frames=100 utd=1 batch_size=32 \\
        eval_every_frames=200 eval_episodes=3 trainer.threads=1 paths.log_dir=/tmp/fp
    .venv/bin/python scripts/run_fingerprint.py /tmp/fp       # the same lines before and after = the same run
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch


def digest(obj) -> str:
    h = hashlib.sha256()

    def walk(o):
        if torch.is_tensor(o):
            h.update(o.detach().contiguous().cpu().numpy().tobytes())
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            for x in o:
                walk(x)
        else:
            h.update(repr(o).encode())

    walk(obj)
    return h.hexdigest()[:16]


def main(root: str) -> None:
    for path in sorted(Path(root).rglob("checkpoints/last.ckpt")):
        run = path.parent.parent
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        final = json.loads((run / "status.json").read_text()).get("final")
        print(f"{run}\n  final: {json.dumps(final)}")
        print(
            f"  frames {ckpt['RLDataModule']['frames']}, updates {ckpt.get('updates')}; state_dict "
            f"{digest(ckpt['state_dict'])}, optimizers {digest(ckpt['optimizer_states'])}, replay "
            f"{digest(ckpt['RLDataModule'].get('replay'))}"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "logs")
