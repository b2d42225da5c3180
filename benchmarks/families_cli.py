"""Every tiny DiT family through the CLI, as a user would: `magcache calibrate`, then `magcache run` at threshold 0
and with `--no-cache` (the two output files must be byte-identical), and a run that skips.

    .venv/bin/python benchmarks/families_cli.py [family ...]      # default: every family but sdxl

Each family's call arguments (magcache_cli.testing.tiny FAMILIES) become --height / --width / --num-frames /
--guidance-scale / --negative-prompt, and --set KEY=VALUE (YAML) for the rest. 8 steps, one CPU thread, one
process per command (about a minute per family on a loaded 2-core machine). One line per family.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

from magcache_cli.testing.tiny import FAMILIES, build_tiny_pipeline  # noqa: E402

FLAGS = {"height": "--height", "width": "--width", "num_frames": "--num-frames",
         "guidance_scale": "--guidance-scale", "negative_prompt": "--negative-prompt"}
SKIP = ["--threshold", "0.3", "--max-skip-steps", "2", "--retention-ratio", "0.25"]
ROOT = Path(tempfile.gettempdir()) / "magcache_families_cli"


def magcache(*args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-m", "magcache_cli", *args, "--json"], capture_output=True, text=True,
                          env=env, timeout=900)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit {done.returncode}")
    return json.loads(done.stdout)


def call_flags(family: str) -> list[str]:
    out = []
    for key, value in FAMILIES[family].call_kwargs.items():
        if key in FLAGS:
            out += [FLAGS[key], str(value)]
        else:
            out += ["--set", f"{key}={json.dumps(list(value) if isinstance(value, tuple) else value)}"]
    return out


def digests(stem: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(stem.parent.glob(stem.name + "*"))]


def check(family: str) -> str:
    folder = ROOT / family
    if not folder.exists():
        build_tiny_pipeline(family, folder)
    call = ["--model", str(folder), "-p", "a cat", "-s", "0", "--steps", "8", *call_flags(family)]
    profile = ROOT / f"{family}.yaml"
    cal = magcache("calibrate", *call, "--out", str(profile), "--force")
    runs = {}
    for name, extra in (("t0", ["--threshold", "0"]), ("plain", ["--no-cache"]), ("skip", SKIP)):
        out = ROOT / f"{family}-{name}"
        runs[name] = magcache("run", "--profile", str(profile), *call, *extra, "--output", f"{out}.png")
        runs[name]["digests"] = digests(out)
    exact = bool(runs["t0"]["digests"]) and runs["t0"]["digests"] == runs["plain"]["digests"]
    skip = runs["skip"]
    return (f"{family:20s} stack={'→'.join(cal['stack'])} mode={cal['guidance_mode']} branches={list(cal['branches'])} "
            f"t0==no-cache={exact} passes={skip['transformer_calls']}/{skip['total_calls']}")


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    for family in sys.argv[1:] or [f for f in FAMILIES if f != "sdxl"]:
        try:
            print(check(family), flush=True)
        except Exception as e:  # one line per family, whatever happens
            print(f"{family:20s} FAIL {type(e).__name__}: {str(e)[:300]}", flush=True)


if __name__ == "__main__":
    main()
