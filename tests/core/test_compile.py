"""Skipping composed with torch.compile, on tiny pipelines (CPU).

Backends: ``aot_eager`` for the compile modes magcache offers (dynamo traces the graph and AOTAutograd
functionalises it, as for inductor, but the aten ops run eagerly: seconds instead of minutes on one core);
plain ``eager`` for the user-wrapped ``torch.compile(transformer)`` case. Inductor was tried by hand (see
docs/benchmarks.md). Graphs are counted with dynamo's own counter, ``counters["stats"]["unique_graphs"]``.

Tolerance: these backends run the same aten kernels as eager mode, so the compiled run reproduces the eager
cached run to float32 rounding (measured difference: 0.0); 1e-5 leaves room for decompositions while skipping
moves the tiny pipelines' images by 4e-3 (SD3) and 1e-2 (Flux) from the uncached ones (asserted: > 100x TOL).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from magcache_cli.core.compile import compile_pipeline, graph_count
from magcache_cli.core.rule import SkipSettings
from magcache_cli.errors import MagCacheError, UsageError
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.runner.run import run
from magcache_cli.testing.tiny import FAMILIES

pytestmark = pytest.mark.slow  # torch.compile (dynamo traces every graph)

STEPS = 10
SETTINGS = SkipSettings(threshold=0.5, max_skip_steps=3, retention_ratio=0.2)  # computes, skips, computes again
TOL = 1e-5


def call_kwargs(family):
    return {**FAMILIES[family].call_kwargs, "num_inference_steps": STEPS, "output_type": "np"}


def images(result):
    return torch.from_numpy(np.asarray(result.outputs[0].images))


@pytest.fixture(scope="module")
def eager(load):
    """Per family: the eager calibration profile, the eager cached run and the uncached images."""
    cache = {}

    def get(family):
        if family not in cache:
            pipe = load(family)
            profile = calibrate(pipe, ["a cat"], [0], call_kwargs(family), model_id=family).profile
            cached = run(pipe, ["a dog"], [5], call_kwargs(family), profile=profile, settings=SETTINGS)
            plain = run(pipe, ["a dog"], [5], call_kwargs(family), profile=None, no_cache=True)
            cache[family] = (profile, cached, images(plain))
        return cache[family]

    return get


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def run_counting(pipe, family, profile):
    """A cached run that records the number of compiled graphs after every step."""
    per_step: list[int] = []
    result = run(pipe, ["a dog"], [5], call_kwargs(family), profile=profile, settings=SETTINGS,
                 on_step=lambda _: per_step.append(graph_count()))
    return result, per_step


def check_against_eager(result, per_step, eager_cached, plain_images):
    assert result.schedule == eager_cached.schedule
    skipped = sorted({s for b in result.schedule.values() for s in b["skipped"]})
    computed = sorted({s for b in result.schedule.values() for s in b["computed"]})
    assert skipped and computed[-1] > skipped[0]  # the computed layout comes back after a skip
    assert len(per_step) == STEPS
    # after the first computed and the first skipped step, no graph is ever compiled again
    assert per_step[skipped[0]:] == [per_step[-1]] * (STEPS - skipped[0])
    torch.testing.assert_close(images(result), images(eager_cached), atol=TOL, rtol=TOL)
    assert (images(eager_cached) - plain_images).abs().max() > 100 * TOL  # the tolerance can see skipping


@pytest.mark.parametrize("family,mode", [("flux", "repeated"), ("flux", "full"), ("sd3", "full")])
def test_compiled_calibration_and_cached_run_match_eager(load, eager, family, mode):
    profile, eager_cached, plain = eager(family)
    pipe = load(family)
    compile_pipeline(pipe, mode, fullgraph=True, backend="aot_eager")
    assert type(pipe.transformer).__name__ == profile.model.transformer_class  # still the real model class

    compiled_profile = calibrate(pipe, ["a cat"], [0], call_kwargs(family), model_id=family).profile
    for label, branch in profile.branches.items():
        assert compiled_profile.branches[label].ratios == pytest.approx(branch.ratios, abs=1e-5), label
    after_calibration = graph_count()

    result, per_step = run_counting(pipe, family, profile)
    check_against_eager(result, per_step, eager_cached, plain)
    assert counters["graph_break"] == {}  # fullgraph held: nothing of magcache was traced as a break
    if mode == "repeated":
        # the blocks are the only compiled regions: skipping and replaying add no graph at all
        block_classes = {type(b).__name__ for path in FAMILIES[family].blocks for b in getattr(pipe.transformer, path)}
        assert per_step[-1] == after_calibration == len(block_classes)
    else:
        # one graph per layout: computed (calibration already compiled it) and skipped
        assert (after_calibration, per_step[-1]) == (1, 2)


def test_user_wrapped_torch_compile(load, eager):
    """`pipe.transformer = torch.compile(pipe.transformer)`: hooks go on the inner model, two graphs."""
    profile, eager_cached, plain = eager("flux")
    pipe = load("flux")
    inner = pipe.transformer
    pipe.transformer = torch.compile(inner, fullgraph=True, backend="eager")
    compiled_forward = vars(pipe.transformer)["forward"]
    result, per_step = run_counting(pipe, "flux", profile)  # the profile's class check sees the inner model
    check_against_eager(result, per_step, eager_cached, plain)
    assert per_step[-1] == 2
    # removing the hooks restored the compiled entry and the block lists
    assert vars(pipe.transformer)["forward"] is compiled_forward
    assert all(type(b).__name__ == "FluxTransformerBlock" for b in inner.transformer_blocks)


def test_repeated_needs_declared_blocks(load):
    pipe = load("sd3")  # SD3Transformer2DModel has no `_repeated_blocks` in diffusers 0.42
    with pytest.raises(MagCacheError, match="no repeated blocks") as e:
        compile_pipeline(pipe, "repeated", backend="eager")
    assert "full" in e.value.hint
    with pytest.raises(UsageError, match="unknown compile mode"):
        compile_pipeline(pipe, "everything")


def test_forecast_keeps_one_graph_per_layout(load, eager):
    """The forecast weight A·(t−c)/(c−p) changes on every skipped step; it enters the graph as a tensor, so a
    whole-model compile still makes one graph per layout (computed, skipped) and matches eager."""
    import dataclasses

    profile, reuse, plain = eager("sd3")
    settings = dataclasses.replace(SETTINGS, forecast=0.5)
    pipe = load("sd3")
    forecast = run(pipe, ["a dog"], [5], call_kwargs("sd3"), profile=profile, settings=settings)
    assert (images(forecast) - images(reuse)).abs().max() > 100 * TOL  # the tolerance can see the forecast
    compile_pipeline(pipe, "full", fullgraph=True, backend="aot_eager")
    per_step: list[int] = []
    result = run(pipe, ["a dog"], [5], call_kwargs("sd3"), profile=profile, settings=settings,
                 on_step=lambda _: per_step.append(graph_count()))
    check_against_eager(result, per_step, forecast, plain)
    assert counters["graph_break"] == {}
    assert per_step[-1] == 2
