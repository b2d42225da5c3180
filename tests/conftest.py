"""Shared test setup: offline hub, one CPU thread, tiny pipelines built once per session, and the helpers several
test files use (one copy each):

* `tiny_pipeline_dir(family)`: the saved tiny pipeline folder (built once per session);
* `load(family_or_folder, **options)`: a pipeline loaded through the real loading code;
* `files`: input images for the image-conditioned tests (written once per session);
* `threshold_zero_check(pipe, profile, call, ...)`: the byte-identical check (threshold 0 never skips, so the
  cached call returns the plain pipeline's exact bytes);
* `reference_skips(...)`: the joint MagCache rule on a window of the curves, written out plainly.

Tests marked `slow` (pyproject.toml) are left out by `scripts/test.sh -m "not slow"`; CI runs everything."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Callable[[str], Path]:
    """`get(family) -> Path`: the saved tiny pipeline for `family` (seed 0), built once per session."""
    from magcache_cli.testing.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny_pipelines")
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = build_tiny_pipeline(family, root / family, seed=0)
        return cache[family]

    return get


@pytest.fixture(scope="session")
def load(tiny_pipeline_dir) -> Callable[..., Any]:
    """`load(family_or_folder, **options) -> pipeline`, through the real loading code (`load_pipeline` with
    `LoadOptions(folder, **options)`). A tiny family's name loads its session folder with the family's own load
    options (allegro: `vae_tiling=True`) under the given ones; anything else is a folder."""
    from magcache_cli.runner.loading import LoadOptions, load_pipeline
    from magcache_cli.testing.tiny import FAMILIES

    def get(what, **options):
        folder = what
        if isinstance(what, str) and what in FAMILIES:
            folder, options = tiny_pipeline_dir(what), {**FAMILIES[what].load, **options}
        pipe, _, _ = load_pipeline(LoadOptions(str(folder), **options))
        return pipe

    return get


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, Path]:
    """Deterministic noise images (PNG) for image-conditioned workflows: `image`, `mask` (grey), `control` (32x32)
    and `wide` (64x64, a first video frame), and `root`, their folder (a test may write its own files there)."""
    from magcache_cli.testing.tiny.conditioned import sample_image

    root = tmp_path_factory.mktemp("inputs")
    return {"image": sample_image(root / "image.png", seed=1),
            "mask": sample_image(root / "mask.png", seed=2, mode="L"),
            "wide": sample_image(root / "frame.png", (64, 64), seed=3),
            "control": sample_image(root / "edges.png", seed=4),
            "root": root}


def _same_bytes(plain, cached) -> None:
    plain, cached = np.asarray(plain), np.asarray(cached)
    assert (cached.dtype, cached.shape) == (plain.dtype, plain.shape)
    assert cached.tobytes() == plain.tobytes(), "threshold 0 changed the output"


def _threshold_zero_check(pipe, profile, call: dict, *, prompt: str = "a cat", seed: int = 0, plain=None,
                          via: str = "run", max_skip_steps: int = 3, retention_ratio: float = 0.2):
    """Threshold 0 never skips, so a cached call must give the plain call's bytes (dtype, shape and every byte).

    The plain call comes first (or `plain`, its pixels, when the test already has them from a call with
    reference hooks; then no plain call runs and None is returned for it). `via="run"`: the runner's
    `run(pipe, [prompt], [seed], call, profile=..., settings=SkipSettings(0.0, max_skip_steps,
    retention_ratio))` against `run(..., no_cache=True)`; returns (cached RunResult, plain RunResult or None).
    `via="apply"`: the public `with magcache.apply(pipe, profile, threshold=0.0)` around
    `pipe(prompt=prompt, generator=<seed>, **call)` against the same call without it; returns (the MagCache,
    plain output or None)."""
    import magcache_cli as magcache
    from magcache_cli.core.rule import SkipSettings
    from magcache_cli.runner.run import run
    from magcache_cli.testing.helpers import media

    def plain_call():
        if via == "run":
            return run(pipe, [prompt], [seed], call, profile=profile, no_cache=True)
        return pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **call)

    plain_result = None if plain is not None else plain_call()
    if plain is None:
        plain = media(plain_result.outputs[0] if via == "run" else plain_result)
    if via == "run":
        cached = run(pipe, [prompt], [seed], call, profile=profile,
                     settings=SkipSettings(0.0, max_skip_steps, retention_ratio))
        _same_bytes(plain, media(cached.outputs[0]))
        return cached, plain_result
    with magcache.apply(pipe, profile, threshold=0.0, max_skip_steps=max_skip_steps,
                        retention_ratio=retention_ratio) as cache:
        out = pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **call)
    _same_bytes(plain, media(out))
    return cache, plain_result


@pytest.fixture(scope="session")
def threshold_zero_check() -> Callable[..., tuple]:
    """`check(pipe, profile, call, *, prompt="a cat", seed=0, plain=None, via="run", max_skip_steps=3,
    retention_ratio=0.2)`: the byte-identical check, see `_threshold_zero_check`."""
    return _threshold_zero_check


def _reference_skips(curves: dict[str, list[float]], begin: int, stop: int, threshold: float, k: int,
                     retention: float) -> list[int]:
    """Positions skipped by the joint rule run on curves[begin:stop] as a run of its own: after the retained
    steps, per branch acc_ratio *= ratio, acc_steps += 1, acc_err += |1 - acc_ratio|; skip when every branch
    has acc_err <= threshold and acc_steps <= k; otherwise compute and reset every branch."""
    n = stop - begin
    retain = max(1, int(retention * n + 0.5))  # and the first step always computes: nothing is cached yet
    acc = {lb: [1.0, 0.0, 0] for lb in curves}  # ratio, error, steps
    skipped = []
    for i in range(n):
        may = []
        for lb, curve in curves.items():
            if i < retain:
                may.append(False)
                continue
            a = acc[lb]
            a[0] *= curve[begin + i]
            a[1] += abs(1 - a[0])
            a[2] += 1
            may.append(threshold > 0 and a[1] <= threshold and a[2] <= k)
        if all(may):
            skipped.append(begin + i)
        else:
            acc = {lb: [1.0, 0.0, 0] for lb in curves}
    return skipped


@pytest.fixture(scope="session")
def reference_skips() -> Callable[..., list[int]]:
    """`f(curves, begin, stop, threshold, max_skip_steps, retention_ratio)`: the positions the joint MagCache
    rule skips on curves[begin:stop] run as a run of its own, written out plainly for the tests (not the
    library's simulator)."""
    return _reference_skips
