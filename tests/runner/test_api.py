"""The Python API on a pipeline the user already has: apply / remove / calibrate, and the compatibility guard."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import magcache_cli as magcache
from magcache_cli.errors import CompatibilityError
from magcache_cli.runner.loading import LoadOptions, load_pipeline
from magcache_cli.testing.tiny import FAMILIES

KW = {**FAMILIES["flux"].call_kwargs, "num_inference_steps": 8, "output_type": "np"}


@pytest.fixture(scope="module")
def flux(tiny_pipeline_dir):
    pipe, _, _ = load_pipeline(LoadOptions(str(tiny_pipeline_dir("flux"))))
    profile = magcache.calibrate(pipe, ["a cat"], seeds=[0, 1], **KW)
    return pipe, profile


def gen(pipe, seed=0):
    return pipe(prompt="a dog", generator=torch.Generator().manual_seed(seed), **KW).images


def test_calibrate_returns_a_profile_over_all_runs(flux, tmp_path):
    pipe, profile = flux
    assert list(profile.branches) == ["cond", "uncond"]
    assert profile.calibration.seeds == [0, 1] and profile.calibration.steps == 8
    assert all(len(b.run_std) == 8 for b in profile.branches.values())
    assert any(v > 0 for v in profile.branches["cond"].run_std[1:])  # two seeds really differ
    path = magcache.save_profile(profile, tmp_path / "p.yaml")
    assert magcache.load_profile(path) == magcache.load_profile(path)


def test_context_manager_skips_reports_and_restores(flux):
    pipe, profile = flux
    plain = gen(pipe)
    with magcache.apply(pipe, profile, threshold=0.5, max_skip_steps=3, retention_ratio=0.2) as cache:
        cached = gen(pipe)
        second = gen(pipe)
    rep = cache.report
    assert rep.steps == 8 and rep.calls == 16
    assert rep.skipped["cond"] == rep.skipped["uncond"] and rep.skipped["cond"]
    assert rep.computed_calls == 16 - 2 * len(rep.skipped["cond"])
    assert len(cache.reports) == 2 and np.array_equal(cached, second)  # state resets between calls
    assert not np.array_equal(cached, plain)
    assert not pipe.transformer._forward_pre_hooks and not hasattr(pipe, "_magcache_cache")
    assert np.array_equal(gen(pipe), plain)


def test_applying_twice_replaces_never_stacks(flux):
    pipe, profile = flux
    plain = gen(pipe)
    magcache.apply(pipe, profile, threshold=0.5)
    cache = magcache.apply(pipe, profile, threshold=0.0)  # threshold 0: never skip
    try:
        assert len(pipe.transformer._forward_pre_hooks) == 1
        assert np.array_equal(gen(pipe), plain)
        assert cache.report.computed_calls == cache.report.calls
    finally:
        magcache.remove(pipe)
    assert not pipe.transformer._forward_pre_hooks
    assert "step" not in vars(pipe.scheduler)


def test_guard_refuses_another_transformer(flux):
    pipe, profile = flux
    other = dataclasses.replace(profile, model=dataclasses.replace(profile.model, transformer_class="WanTransformer3DModel"))
    with pytest.raises(CompatibilityError, match="model.transformer_class"):
        magcache.apply(pipe, other)
    changed = dataclasses.replace(profile, model=dataclasses.replace(profile.model, config_fingerprint="0" * 16))
    with pytest.raises(CompatibilityError, match="config_fingerprint"):
        magcache.apply(pipe, changed)
    with magcache.apply(pipe, changed, force=True) as cache:
        assert any("config_fingerprint" in w for w in cache.warnings)
    assert not pipe.transformer._forward_pre_hooks


def test_soft_drift_is_named(flux):
    from magcache_cli.api import call_warnings

    _, profile = flux
    warnings = call_warnings(profile, {"guidance_scale": 7.0, "height": 64, "width": 32})
    assert any(w.startswith("calibration.guidance_scale") for w in warnings)
    assert any(w.startswith("calibration.height") for w in warnings)
    assert not any("width" in w for w in warnings)


def test_api_names_are_functions_even_after_all_modules_are_imported():
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(magcache.__path__):
        if mod.name not in ("__main__",):
            importlib.import_module(f"magcache_cli.{mod.name}")
    for name in ("apply", "remove", "calibrate", "load_profile", "save_profile"):
        assert callable(getattr(magcache, name)) and not isinstance(getattr(magcache, name), type(magcache))
