"""Apply the two fixes safety-gymnasium 1.0.0 needs here (see shared stack notes). Idempotent.

1. Python 3.11: dataclass fields ``color: np.array = COLOR['x']`` are mutable defaults and make
   ``import safety_gymnasium`` fail; rewrite them to ``field(default_factory=lambda: COLOR['x'])``.
2. Fast resets: every navigation reset rebuilds the MuJoCo model and decodes six skybox PNGs (~1.4 s).
   Replace the skybox texture by a builtin gradient. Vector observations, rewards and costs are unchanged
   (only rendered sky pixels differ).

The package is located with ``importlib.util.find_spec`` so it is never imported before it is fixed.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

COLOR_RE = re.compile(r"^(\s+color: np\.array = )(COLOR\[['\"][A-Za-z_]+['\"]\])\s*$", re.M)
SKYBOX_RE = re.compile(r"(  skybox:\n    '@type': skybox\n)(?:    '@file\w+': [^\n]+\n)+")
SKYBOX_FAST = (
    "    '@builtin': gradient\n    '@width': 64\n    '@height': 64\n    '@rgb1': '0.2 0.3 0.4'\n    '@rgb2': '0 0 0'\n"
)


def package_dir() -> Path:
    spec = importlib.util.find_spec("safety_gymnasium")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("safety_gymnasium is not installed in this environment (run `make install`)")
    return Path(next(iter(spec.submodule_search_locations)))


def fix_dataclass_colors(root: Path) -> int:
    changed = 0
    for path in sorted((root / "assets").rglob("*.py")):
        text = path.read_text()
        new = COLOR_RE.sub(lambda m: f"{m.group(1)}field(default_factory=lambda: {m.group(2)})", text)
        if new != text:
            if not re.search(r"^from dataclasses import .*\bfield\b", new, re.M):
                new = new.replace("from dataclasses import dataclass", "from dataclasses import dataclass, field", 1)
            path.write_text(new)
            changed += 1
    return changed


def fix_skybox(root: Path) -> int:
    path = root / "configs" / "assets.yaml"
    text = path.read_text()
    new = SKYBOX_RE.sub(lambda m: m.group(1) + SKYBOX_FAST, text)
    if new != text:
        path.write_text(new)
        return 1
    return 0


def is_patched(root: Path) -> bool:
    colors_left = any(COLOR_RE.search(p.read_text()) for p in (root / "assets").rglob("*.py"))
    return not colors_left and "'@builtin': gradient" in (root / "configs" / "assets.yaml").read_text()


def main() -> None:
    root = package_dir()
    n_colors, n_sky = fix_dataclass_colors(root), fix_skybox(root)
    if not is_patched(root):
        sys.exit(f"could not patch safety_gymnasium at {root}: unexpected source layout (is it version 1.0.0?)")
    print(
        f"[patch] safety_gymnasium at {root}: {n_colors} dataclass files fixed, skybox fixed: {bool(n_sky)} "
        "(0 = already patched)"
    )


if __name__ == "__main__":
    main()
