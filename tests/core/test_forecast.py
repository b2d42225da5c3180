"""The residual forecast on skipped steps, against an independent computation.

`StackRecorder` (magcache_cli/testing/residuals.py) hooks the modules around the block stack — the patch
embedding that feeds it and the output norm that reads it — and records the stack's input x and output y on
every denoiser call, computed or skipped. On a computed step the residual is r = y − x. On a skipped step t of
a branch whose last two computed steps are c and p < c, the stack output must be
x + r_c + A·(t − c)/(c − p)·(r_c − r_p), from that branch's own residuals (with one computed residual so far:
x + r_c). The hooks compute it with the same float32 operations, so the tolerance is float32 rounding.
"""

from __future__ import annotations

import pytest
import torch

import magcache_cli as magcache
from magcache_cli.core.forecast import ResidualCache, forecast_weight
from magcache_cli.core.rule import SkipSettings
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.runner.run import run
from magcache_cli.testing.helpers import load_tiny
from magcache_cli.testing.residuals import StackRecorder, expected_outputs
from magcache_cli.testing.tiny import FAMILIES

STEPS = 10


def kwargs(family):
    return {**FAMILIES[family].call_kwargs, "num_inference_steps": STEPS, "output_type": "np"}


@pytest.fixture(scope="module")
def tiny(tiny_pipeline_dir):
    """Per family: the loaded pipeline and its calibration profile (one prompt, one seed)."""
    cache = {}

    def get(family):
        if family not in cache:
            pipe = load_tiny(tiny_pipeline_dir(family))
            cache[family] = pipe, calibrate(pipe, ["a cat"], [0], kwargs(family), model_id=family).profile
        return cache[family]

    return get


def recorded_run(pipe, profile, settings, policy="joint"):
    with StackRecorder(pipe.transformer) as rec:
        res = run(pipe, ["a dog"], [5], kwargs(pipe_family(pipe)), profile=profile, settings=settings, policy=policy)
    return res, rec.calls


def pipe_family(pipe):
    return {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux"}[type(pipe.transformer).__name__]


def histories(schedule, calls, labels):
    """Split the recorded calls by branch; `labels` are the branch(es) of each call of a step, in call order."""
    assert len(calls) == STEPS * len(labels)
    out = {}
    for i, (x, y) in enumerate(calls):
        step, label = i // len(labels), labels[i % len(labels)]
        out.setdefault(label, []).append((step, step in schedule[label.split("+")[0]]["computed"], x, y))
    return out


def check(history, a):
    """Assert every skipped call's output; return how many used the forecast (two computed residuals)."""
    forecasts, computed = 0, 0
    for (step, is_computed, x, y), want in zip(history, expected_outputs(history, a)):
        computed += is_computed
        if want is not None:
            torch.testing.assert_close(y, want, atol=1e-6, rtol=1e-6)
            forecasts += computed >= 2
    return forecasts


def test_weight_and_history_by_hand():
    """r_c = 3 at step 4, r_p = 1 at step 2: at t = 5, A = 0.5 gives 3 + 0.5·(1/2)·2 = 3.5; at t = 6, 4."""
    assert forecast_weight(0.5, 5, 4, 2) == 0.25
    cache = ResidualCache(0.5)
    cache.store("cond", torch.tensor([1.0]), 2)
    assert cache.replay("cond", 3)[1:] == (None, 0.0)  # one computed residual: reuse
    cache.begin_compute("cond")
    cache.store("cond", torch.tensor([3.0]), 4)
    for t, want in ((5, 3.5), (6, 4.0)):
        r, d, w = cache.replay("cond", t)
        assert float(r + w * d) == want
    assert cache.held_bytes() == {"cond": 8}  # r_c and r_c - r_p, 4 bytes each
    reuse = ResidualCache(0.0)
    reuse.store("cond", torch.tensor([1.0]), 2)
    reuse.begin_compute("cond")
    assert reuse.held_bytes() == {}  # while the new residual is computed, the old one is already gone
    reuse.store("cond", torch.tensor([3.0]), 4)
    assert reuse.replay("cond", 5)[1:] == (None, 0.0) and reuse.held_bytes() == {"cond": 4}
    with pytest.raises(ValueError, match="forecast must be in"):
        SkipSettings(0.1, 2, 0.2, forecast=1.5)


def test_batched_guidance_skips_are_input_plus_the_forecast(tiny):
    pipe, profile = tiny("sd3")
    res, calls = recorded_run(pipe, profile, SkipSettings(0.5, 3, 0.2, forecast=0.5))
    assert res.schedule["cond"] == res.schedule["uncond"]  # one call serves both branches (batch rows)
    assert check(histories(res.schedule, calls, ("uncond+cond",))["uncond+cond"], 0.5) >= 2


def test_sequential_branches_forecast_from_their_own_history(tiny):
    """Independent policy: cond and uncond compute on different steps; each forecast uses only its own."""
    pipe, profile = tiny("flux")
    res, calls = recorded_run(pipe, profile, SkipSettings(0.1, 2, 0.2, forecast=0.5), "independent")
    assert res.schedule["cond"]["computed"] != res.schedule["uncond"]["computed"]
    hist = histories(res.schedule, calls, ("cond", "uncond"))
    assert check(hist["cond"], 0.5) >= 2 and check(hist["uncond"], 0.5) >= 2
    # the check tells histories apart: cond's skipped steps forecast from uncond's residuals fail it
    mixed = sorted([h for h in hist["uncond"] if h[1]] + [h for h in hist["cond"] if not h[1]], key=lambda h: h[0])
    with pytest.raises(AssertionError):
        check(mixed, 0.5)


def test_forecast_zero_is_plain_reuse_bit_for_bit(tiny):
    pipe, profile = tiny("sd3")
    res, calls = recorded_run(pipe, profile, SkipSettings(0.5, 3, 0.2))
    last, skipped = None, 0
    for step, computed, x, y in histories(res.schedule, calls, ("uncond+cond",))["uncond+cond"]:
        if computed:
            last = y - x
        else:
            assert torch.equal(y, x + last)  # MagCache's reuse exactly: stack input + the last residual
            skipped += 1
    assert skipped >= 2


@pytest.mark.parametrize("a", [0.0, 0.5])
def test_held_memory_is_one_residual_per_branch_and_one_more_with_a_forecast(tiny, a):
    pipe, profile = tiny("flux")
    held = []
    with magcache.apply(pipe, profile, threshold=0.1, max_skip_steps=2, retention_ratio=0.2, forecast=a,
                        branch_policy="independent") as cache:
        cache.hooks.on_step = lambda _: held.append(cache.hooks.held_bytes())
        pipe(prompt="a dog", generator=torch.Generator().manual_seed(5), **kwargs("flux"))
        skipped = cache.report.skipped
    residual = FAMILIES["flux"].image_tokens * pipe.transformer.inner_dim * 4  # batch 1, float32
    per_branch = residual * (2 if a else 1)
    assert skipped["cond"] and skipped["uncond"]
    assert held[-1] == {"cond": per_branch, "uncond": per_branch}
    assert all(v <= per_branch for h in held for v in h.values())
