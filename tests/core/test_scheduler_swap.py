"""A scheduler replaced after `apply` (`pipe.scheduler = X.from_config(pipe.scheduler.config)`, the commonest
diffusers habit) is followed: the hooks read the scheduler the pipeline holds at each call (tiny Flux, CPU)."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from magcache_cli import api
from magcache_cli.testing.helpers import load_tiny, media
from magcache_cli.testing.tiny import FAMILIES

STEPS = 8


def _call(pipe, kw):
    return media(pipe("a cat", generator=torch.Generator().manual_seed(0), **kw))


def _swap(pipe):
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)


def test_a_scheduler_swapped_between_calls_is_followed(tiny_pipeline_dir):
    pipe = load_tiny(tiny_pipeline_dir("flux"))
    kw = {**FAMILIES["flux"].call_kwargs, "num_inference_steps": STEPS, "output_type": "np"}
    profile = api.calibrate(pipe, ["a cat"], 0, **kw)
    plain = _call(pipe, kw)
    settings = {"threshold": 1.0, "max_skip_steps": 2, "retention_ratio": 0.25}
    with api.apply(pipe, profile, **settings) as cache:  # no swap: the reference for the runs below
        unswapped = _call(pipe, kw)
    expected = cache.report
    assert expected.skipped["cond"]  # the setting skips something (steps 2, 3, 5, 6 on this tiny model)

    cache = api.apply(pipe, profile, **settings)
    try:
        _swap(pipe)  # after apply, before the first call
        first = _call(pipe, kw)
        _swap(pipe)  # and again between calls
        second = _call(pipe, kw)
    finally:
        cache.remove()
    assert len(cache.reports) == 2
    for r in cache.reports:
        assert r.steps == STEPS and r.window == (0, STEPS)
        assert r.skipped == expected.skipped and r.computed == expected.computed
    assert first.tobytes() == unswapped.tobytes() and second.tobytes() == unswapped.tobytes()

    with api.apply(pipe, profile, threshold=0.0) as cache:  # threshold 0: the plain pipeline, byte for byte
        _swap(pipe)
        zero = _call(pipe, kw)
    assert cache.report.skipped == {"cond": [], "uncond": []}
    assert zero.tobytes() == plain.tobytes()
    assert not np.array_equal(unswapped, plain)  # skipping did change the output above
