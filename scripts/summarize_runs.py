"""Print the last eval/return, eval/cost and λ of every run directory under the given folders (TensorBoard events).

Usage: .venv/bin/python scripts/summarize_runs.py logs/runs/toy [more dirs ...]
"""

import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def last_scalars(tb_dir: Path, tags: list[str]) -> dict[str, tuple[int, float]]:
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    have = set(acc.Tags()["scalars"])
    return {t: (acc.Scalars(t)[-1].step, acc.Scalars(t)[-1].value) for t in tags if t in have}


def main() -> None:
    tags = ["eval/return", "eval/cost", "lagrange/lambda", "lagrange/violation"]
    for root in sys.argv[1:] or ["logs"]:
        for tb in sorted(Path(root).rglob("tb")):
            values = last_scalars(tb, tags)
            cells = "  ".join(f"{t.split('/')[1]}={v:.3f}@{s}" for t, (s, v) in values.items())
            print(f"{tb.parent}: {cells}")


if __name__ == "__main__":
    main()
