"""Two denoisers that hand over mid-run (Wan 2.2: `transformer` for high noise, `transformer_2` after the
boundary): one curve set per denoiser and branch, retention applied per denoiser."""

from __future__ import annotations

import copy

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


def test_two_expert_threshold_zero_is_exact_and_hooks_leave(wan22, threshold_zero_check):
    prof = magcache.calibrate(wan22, ["a cat"], seeds=[0], **KW)
    threshold_zero_check(wan22, prof, KW, prompt="a dog", seed=2, max_skip_steps=2, retention_ratio=0.2)
    for t in (wan22.transformer, wan22.transformer_2):
        assert not t._forward_pre_hooks and not t._forward_hooks
    assert "step" not in vars(wan22.scheduler)


def test_each_expert_forecasts_from_its_own_window(wan22):
    """A skipped step of either expert is its stack input plus the forecast from that expert's own computed
    residuals of that branch (magcache_cli/testing/residuals.py); right after the hand-over the second expert
    has one computed residual, so its first skip is plain reuse, never a forecast through the first expert's."""
    from magcache_cli.testing.residuals import StackRecorder, expected_outputs

    prof = magcache.calibrate(wan22, ["a cat"], seeds=[0], **KW)
    owner = expert_steps(wan22)
    with StackRecorder(wan22.transformer) as first, StackRecorder(wan22.transformer_2) as second:
        res = run(wan22, ["a cat"], [1], KW, profile=prof, settings=SkipSettings(10.0, 2, 0.2, forecast=0.5))
    for k, (rec, prefix) in enumerate(((first, ""), (second, "transformer_2."))):
        steps = [s for s in range(STEPS) if owner[s] == k]
        assert len(rec.calls) == 2 * len(steps)  # cond then uncond on each of the expert's steps
        for i, label in enumerate(("cond", "uncond")):
            computed = res.schedule[prefix + label]["computed"]
            hist = [(s, s in computed, *rec.calls[2 * j + i]) for j, s in enumerate(steps)]
            flags = [c for _, c, _, _ in hist]
            # what each window shows: expert 1 forecasts (a skip after two computed steps); expert 2 skips its
            # second step with one computed residual of its own, where a shared history would forecast
            assert flags[:3] == [True, True, False] if k == 0 else flags == [True, False]
            for (_, _, _, y), w in zip(hist, expected_outputs(hist, 0.5)):
                if w is not None:
                    torch.testing.assert_close(y, w, atol=1e-6, rtol=1e-6)
