"""One rank of the two-process gloo job that tests/runner/test_distributed.py starts with torchrun.

Usage: torchrun --standalone --nproc-per-node 2 dist_worker.py OUT FLUX_DIR PROFILE

In order, in the same two processes (imports and the process group are paid for once):
  tokens  each rank takes its slice of the tokens of two fixed residuals and reduces the statistics over both
  run     `magcache run` over 4 prompts, sharded (files under OUT/run, --json per rank)
  tune    `magcache tune`, sharded (--json per rank)
  cp      diffusers' Ulysses context parallelism over both ranks (testing/context_parallel.py), library
          calibrate and run under MagCache's hooks
  fail    `magcache calibrate` in which rank 1's first pipeline call raises; the job's exit code is its code
Each rank writes what it saw to OUT/<step>-r<rank>.json for the test to compare with one process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
RANK = int(os.environ.get("RANK", "0"))

FLUX_CALL = ["--height", "32", "--width", "32", "--negative-prompt", "bad", "--set", "max_sequence_length=12",
             "--set", "true_cfg_scale=4"]
RUN_ARGS = ["-p", "a", "-p", "b", "-p", "c", "-p", "d", "-s", "0", "--json"]
TUNE_ARGS = ["--min-psnr", "20", "-p", "a", "-p", "b", "-p", "c", "-s", "0", "--steps", "8", "--thresholds",
             "0.05,0.1,0.2,0.4", "--max-skips", "2,3", "--retentions", "0.2", "--grid", "--dry-run", "--json"]
CALIBRATE_ARGS = ["-p", "a", "-p", "b", "-p", "c", "-s", "0", "-s", "1", "-s", "2", "--steps", "4", *FLUX_CALL]  # 9 runs: 5 + 4


def residual_pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    prev = torch.randn(2, 37, 8, generator=g)
    return prev, 1.1 * prev + 0.3 * torch.randn(2, 37, 8, generator=g)


TOKEN_SPLIT = 20  # rank 0: tokens [0, 20), rank 1: [20, 37) — unequal shares


def cli(args: list[str]) -> tuple[int, str]:
    from magcache_cli.cli.app import app

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = app(args, standalone_mode=False)
    return int(code or 0), out.getvalue()


def write(out: Path, step: str, data) -> None:
    (out / f"{step}-r{RANK}.json").write_text(json.dumps(data))


def main(out: Path, flux: str, profile: str) -> int:
    import torch.distributed as dist

    from magcache_cli.core.distributed import sharded_residual_stats

    dist.init_process_group("gloo")
    prev, cur = residual_pair()
    part = slice(0, TOKEN_SPLIT) if RANK == 0 else slice(TOKEN_SPLIT, None)
    write(out, "tokens", sharded_residual_stats(prev[:, part], cur[:, part], dist.group.WORLD))

    code, text = cli(["run", "--profile", profile, *RUN_ARGS, "-o", str(out / "run" / "out.png")])
    write(out, "run", {"code": code, "stdout": text})
    code, text = cli(["tune", "--profile", profile, *TUNE_ARGS])
    write(out, "tune", {"code": code, "stdout": text})

    from magcache_cli.core.rule import SkipSettings
    from magcache_cli.profile.schema import profile_to_dict
    from magcache_cli.runner.calibrate import calibrate
    from magcache_cli.runner.run import run
    from magcache_cli.testing.context_parallel import enable_ulysses_on_cpu
    from magcache_cli.testing.helpers import load_tiny, media

    pipe = load_tiny(flux)
    enable_ulysses_on_cpu(pipe.transformer, 2)
    kwargs = dict(num_inference_steps=6, height=32, width=32, negative_prompt="bad", max_sequence_length=12,
                  true_cfg_scale=4.0)
    prof = calibrate(pipe, ["a", "b"], [0], kwargs, model_id=flux).profile
    res = run(pipe, ["a"], [0], kwargs, profile=prof, settings=SkipSettings(0.3, 2, 0.2))
    write(out, "cp", {"branches": profile_to_dict(prof)["branches"], "schedule": res.schedule,
                      "image": media(res.outputs[0]).astype(float).tolist()})

    if RANK == 1:
        import magcache_cli.runner.calibrate as calibration

        def fail(seed):
            raise RuntimeError("injected failure on rank 1")

        calibration.generator_for = fail
    code, _ = cli(["calibrate", "--model", flux, *CALIBRATE_ARGS, "--out", str(out / "failed.yaml")])
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
