"""Many processes (issue 11): two gloo ranks started by torchrun give what one process gives.

Two torchrun jobs in all (starting processes dominates the cost): `torchrun -m magcache_cli calibrate`, and
`dist_worker.py`, which runs the sharded `run` and `tune`, diffusers' Ulysses context parallelism, the
split-token reduction and a job in which one rank fails, in the same two processes. Every one-process
reference below is computed in this process, by the CLI or the library, not by the code under test's merge.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from magcache_cli.core.distributed import (
    RankInfo,
    combine_moments,
    my_share,
    rank_info,
    slots,
    token_moments,
)
from magcache_cli.core.rule import residual_stats
from magcache_cli.errors import DistributedError
from magcache_cli.testing.helpers import invoke

sys.path.insert(0, str(Path(__file__).parent))
import dist_worker as worker  # noqa: E402

pytestmark = pytest.mark.slow  # torchrun and several processes

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # a guard against a hang, not a timing assertion


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MAGCACHE_DIST_TIMEOUT="120")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def flux(tiny_pipeline_dir) -> str:
    return str(tiny_pipeline_dir("flux"))


@pytest.fixture(scope="module")
def single(flux, tmp_path_factory) -> dict:
    """One process: the calibration (its profile feeds the sharded run and tune too), run and tune."""
    d = tmp_path_factory.mktemp("single")
    cal = invoke("calibrate", "--model", flux, *worker.CALIBRATE_ARGS, "--out", d / "profile.yaml", "--json")
    assert cal.exit_code == 0, cal.output
    run = invoke("run", "--profile", d / "profile.yaml", *worker.RUN_ARGS, "-o", d / "run" / "out.png")
    assert run.exit_code == 0, run.output
    tune = invoke("tune", "--profile", d / "profile.yaml", *worker.TUNE_ARGS)
    assert tune.exit_code == 0, tune.output
    return {"dir": d, "profile": d / "profile.yaml", "calibrate": json.loads(cal.stdout),
            "run": json.loads(run.stdout), "tune": json.loads(tune.stdout)}


@pytest.fixture(scope="module")
def sharded_calibration(flux, tmp_path_factory):
    d = tmp_path_factory.mktemp("sharded_calibration")
    proc = torchrun("-m", "magcache_cli", "calibrate", "--model", flux, *worker.CALIBRATE_ARGS,
                    "--out", str(d / "profile.yaml"), "--json", cwd=d)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, d / "profile.yaml"


@pytest.fixture(scope="module")
def job(flux, single, tmp_path_factory):
    d = tmp_path_factory.mktemp("job")
    proc = torchrun(str(Path(worker.__file__)), str(d), flux, str(single["profile"]), cwd=d)
    return proc, d


def _read(d: Path, step: str) -> list:
    return [json.loads((d / f"{step}-r{r}.json").read_text()) for r in (0, 1)]


# --------------------------------------------------------------------------------- data parallel, by the CLI


def test_sharded_calibration_equals_the_single_process_profile(single, sharded_calibration):
    proc, path = sharded_calibration
    sharded = json.loads(proc.stdout)  # rank 0 alone prints: stdout is one JSON object
    assert sharded["runs"] == single["calibrate"]["runs"] == 9  # rank 0 runs 5, rank 1 runs 4
    assert sharded["denoiser_calls"] == single["calibrate"]["denoiser_calls"]
    for label, curves in single["calibrate"]["branches"].items():
        for key, values in curves.items():
            assert np.allclose(sharded["branches"][label][key], values, rtol=0, atol=1e-6), (label, key)
    lines = [line for line in path.read_text().splitlines() if not line.strip().startswith("created:")]
    assert lines == [line for line in single["profile"].read_text().splitlines()
                     if not line.strip().startswith("created:")]


def test_sharded_run_writes_the_files_one_process_writes(single, job):
    proc, d = job
    assert all(Path(p).name.startswith("out-p") for p in single["run"]["outputs"])
    names = sorted(p.name for p in (single["dir"] / "run").iterdir())
    assert names == ["out-p0-s0.png", "out-p1-s0.png", "out-p2-s0.png", "out-p3-s0.png"]
    assert sorted(p.name for p in (d / "run").iterdir()) == names
    for name in names:
        assert (d / "run" / name).read_bytes() == (single["dir"] / "run" / name).read_bytes(), name
    rank0, rank1 = _read(d, "run")
    assert rank0["code"] == rank1["code"] == 0
    assert rank1["stdout"] == ""  # only rank 0 prints
    sharded = json.loads(rank0["stdout"])
    for key in ("branches", "transformer_calls", "total_calls", "settings", "steps"):
        assert sharded[key] == single["run"][key], key
    assert [Path(p).name for p in sharded["outputs"]] == names


def test_sharded_tune_picks_the_same_setting(single, job):
    rank0, rank1 = _read(job[1], "tune")
    assert rank0["code"] == rank1["code"] == 0 and rank1["stdout"] == ""
    sharded, alone = json.loads(rank0["stdout"]), single["tune"]
    assert alone["chosen"] is not None
    keys = ("threshold", "max_skip_steps", "retention_ratio", "passes_per_run", "psnr", "ssim")
    assert {k: sharded["chosen"][k] for k in keys} == {k: alone["chosen"][k] for k in keys}
    assert [(p["threshold"], p["psnr"]) for p in sharded["points"]] == [(p["threshold"], p["psnr"]) for p in alone["points"]]
    assert sharded["pipeline_runs"] == alone["pipeline_runs"]


def test_one_failing_rank_ends_the_job_with_one_error_line(job):
    proc, d = job
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith("Error: rank 1 failed: RuntimeError: injected failure on rank 1 — ")
    assert not (d / "failed.yaml").exists()


# ---------------------------------------------------------------------------- context parallelism, reductions


def test_split_token_reduction_gives_the_unsharded_statistics(job):
    prev, cur = worker.residual_pair()
    expected = residual_stats(prev, cur)
    rank0, rank1 = _read(job[1], "tokens")
    assert rank0 == rank1  # every rank gets the same numbers
    assert np.allclose(rank0, expected, rtol=0, atol=1e-6)


def test_ulysses_context_parallel_calibrates_and_skips_like_one_process(flux, job):
    """A real sequence split (diffusers' Ulysses hooks, on CPU via testing/context_parallel.py): the curves
    are those of all tokens, and both ranks skip the same steps as one process does."""
    from magcache_cli.core.rule import SkipSettings
    from magcache_cli.profile.schema import profile_to_dict
    from magcache_cli.runner.calibrate import calibrate
    from magcache_cli.runner.run import run
    from magcache_cli.testing.helpers import load_tiny, media

    pipe = load_tiny(flux)
    kwargs = dict(num_inference_steps=6, height=32, width=32, negative_prompt="bad", max_sequence_length=12,
                  true_cfg_scale=4.0)
    prof = calibrate(pipe, ["a", "b"], [0], kwargs, model_id=flux).profile
    alone = run(pipe, ["a"], [0], kwargs, profile=prof, settings=SkipSettings(0.3, 2, 0.2))
    rank0, rank1 = _read(job[1], "cp")
    assert rank0["schedule"] == rank1["schedule"] == alone.schedule
    assert any(s["skipped"] for s in alone.schedule.values())  # the check has skips to agree on
    for label, curves in profile_to_dict(prof)["branches"].items():
        for key, values in curves.items():
            for r in (rank0, rank1):
                assert np.allclose(r["branches"][label][key], values, rtol=0, atol=1e-6), (label, key)
    # the split attention sums in another order: pixels agree to one level of 255
    assert np.abs(np.asarray(rank0["image"]) - media(alone.outputs[0]).astype(float)).max() <= 1


def test_context_parallel_is_refused_on_cpu_before_loading(tmp_path):
    r = invoke("calibrate", "--model", tmp_path / "nowhere", "-p", "a", "--context-parallel", "ulysses=2",
               "--device", "cpu", "--out", tmp_path / "p.yaml")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: context parallelism needs GPUs: diffusers' enable_parallelism divides by the accelerator count, "
        "which is 0 on CPU — run on GPUs, or split prompts and seeds across CPU processes instead"]
    r = invoke("calibrate", "-p", "a", "--context-parallel", "ulysses", "--out", tmp_path / "p.yaml")
    assert r.exit_code == 1 and "--context-parallel 'ulysses'" in r.output


def test_token_moments_merge_exactly():
    # two shards of per-token ratios {1, 2} and {3, 4, 5}: all five have mean 3 and population variance 2
    parts = torch.tensor([[2, 1.5, 0.5, 0.2], [3, 4.0, 2.0, 0.3]], dtype=torch.float64)
    mean, std, cos = combine_moments(parts)
    assert (mean, cos) == (3.0, 0.1) and math.isclose(std, math.sqrt(2), rel_tol=1e-15)
    prev, cur = worker.residual_pair()
    halves = torch.stack([token_moments(prev[:, :5], cur[:, :5]), token_moments(prev[:, 5:], cur[:, 5:])])
    assert np.allclose(combine_moments(halves), residual_stats(prev, cur), rtol=0, atol=1e-6)


def test_shares_and_rank_environment():
    info = RankInfo(rank=1, world_size=3)
    assert my_share(list("abcdefg"), info) == [(1, "b"), (4, "e")]
    assert slots(7, info) == 3 and slots(0, info) == 0
    assert rank_info({}) == RankInfo(0, 1, 0)
    assert rank_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == RankInfo(3, 4, 1)
    with pytest.raises(DistributedError, match="inconsistent"):
        rank_info({"RANK": "4", "WORLD_SIZE": "4"})
