"""Shared test setup: offline hub, one CPU thread, tiny pipelines built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

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
