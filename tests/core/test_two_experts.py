"""Two denoisers that hand over mid-run (Wan 2.2: `transformer` for high noise, `transformer_2` after the
boundary): one curve set per denoiser and branch, retention applied per denoiser."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import magcache_cli as magcache
from magcache_cli.core.rule import SkipSettings
from magcache_cli.runner.loading import LoadOptions, load_pipeline
from magcache_cli.runner.run import run
from magcache_cli.testing.tiny import FAMILIES

STEPS = 10
KW = {**FAMILIES["wan"].call_kwargs, "num_inference_steps": STEPS, "output_type": "np"}


@pytest.fixture(scope="module")
def wan22(tiny_pipeline_dir, tmp_path_factory):
    from diffusers import DiffusionPipeline, WanPipeline

    base = DiffusionPipeline.from_pretrained(str(tiny_pipeline_dir("wan")))
    expert = copy.deepcopy(base.transformer)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in expert.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    comps = {k: v for k, v in base.components.items() if k != "transformer_2"}
    pipe = WanPipeline(**comps, transformer_2=expert, boundary_ratio=0.5)
    out = tmp_path_factory.mktemp("wan22") / "pipe"
    pipe.save_pretrained(out, safe_serialization=True)
    loaded, _, _ = load_pipeline(LoadOptions(str(out)))
    return loaded


def expert_steps(pipe):
    """Which expert runs each step, read from the pipeline's own rule (t >= boundary -> transformer)."""
    pipe.scheduler.set_timesteps(STEPS)
    boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
    return [0 if t >= boundary else 1 for t in pipe.scheduler.timesteps]


def test_calibrate_gives_one_curve_set_per_expert(wan22):
    owner = expert_steps(wan22)
    switch = owner.index(1)
    assert 0 < switch < STEPS
    prof = magcache.calibrate(wan22, ["a cat"], seeds=[0], **KW)
    assert list(prof.branches) == ["cond", "uncond", "transformer_2.cond", "transformer_2.uncond"]
    assert prof.model.stack == ["blocks", "transformer_2.blocks"]
    first, second = prof.branches["cond"], prof.branches["transformer_2.cond"]
    assert first.active == [0, switch] and second.active == [switch, STEPS]
    assert second.ratios[switch] == 1.0 and all(r == 1.0 for r in second.ratios[:switch])
    assert all(r == 1.0 for r in first.ratios[switch:])
    assert first.ratios[1:switch] != second.ratios[1:switch]


def test_run_applies_retention_per_expert(wan22):
    prof = magcache.calibrate(wan22, ["a cat"], seeds=[0], **KW)
    switch = prof.branches["transformer_2.cond"].active[0]
    res = run(wan22, ["a cat"], [1], KW, profile=prof, settings=SkipSettings(10.0, 2, 0.4))
    first, second = res.schedule["cond"], res.schedule["transformer_2.cond"]
    assert sorted(first["computed"] + first["skipped"]) == list(range(switch))
    assert sorted(second["computed"] + second["skipped"]) == list(range(switch, STEPS))
    # retention per expert: the first round(0.4 * n) steps of EACH expert's window are computed
    keep1, keep2 = int(0.4 * switch + 0.5), int(0.4 * (STEPS - switch) + 0.5)
    assert all(s in first["computed"] for s in range(keep1))
    assert all(s in second["computed"] for s in range(switch, switch + keep2))
    assert first["skipped"] and second["skipped"]  # the huge threshold skips up to K=2 in a row
    assert res.schedule["uncond"] == first and res.schedule["transformer_2.uncond"] == second  # joint


def test_two_expert_threshold_zero_is_exact_and_hooks_leave(wan22):
    prof = magcache.calibrate(wan22, ["a cat"], seeds=[0], **KW)
    cached = run(wan22, ["a dog"], [2], KW, profile=prof, settings=SkipSettings(0.0, 2, 0.2))
    plain = run(wan22, ["a dog"], [2], KW, profile=prof, no_cache=True)
    assert np.array_equal(np.asarray(cached.outputs[0].frames), np.asarray(plain.outputs[0].frames))
    for t in (wan22.transformer, wan22.transformer_2):
        assert not t._forward_pre_hooks and not t._forward_hooks
    assert "step" not in vars(wan22.scheduler)
