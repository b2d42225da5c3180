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
