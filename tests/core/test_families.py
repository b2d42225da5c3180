"""Generality: every DiT family magcache_cli.tiny can build offline, not only the ones named in the issue.

The expected stack of each family is written down by hand from the diffusers source (which block lists
carry the image tokens from the patch embedding to the final norm); the tool must find it by itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from magcache_cli.core.rule import SkipSettings
from magcache_cli.runner.calibrate import calibrate
from magcache_cli.runner.run import run
from magcache_cli.testing.helpers import media
from magcache_cli.testing.tiny import FAMILIES

pytestmark = pytest.mark.slow  # every stretch family, end to end

DUAL = ["transformer_blocks", "single_transformer_blocks"]
EXPECTED = {
    "flux": (DUAL, "sequential"),
    "flux-nocfg": (DUAL, "none"),
    "sd3": (["transformer_blocks"], "batched"),
    "wan": (["blocks"], "sequential"),
    "qwenimage": (["transformer_blocks"], "sequential"),
    "cogvideox": (["transformer_blocks"], "batched"),
    "hunyuanvideo": (DUAL, "none"),  # the token refiner's blocks only see text
    "hunyuanvideo-truecfg": (DUAL, "sequential"),
    "chroma": (DUAL, "sequential"),  # single-stream blocks run on cat([text, image])
    "lumina2": (["noise_refiner", "layers"], "sequential"),  # context_refiner only sees the caption
    "pixart": (["transformer_blocks"], "batched"),
    "sana": (["transformer_blocks"], "batched"),
    "auraflow": (["joint_transformer_blocks", "single_transformer_blocks"], "batched"),
    "ltx": (["transformer_blocks"], "batched"),
    "mochi": (["transformer_blocks"], "batched"),
    "cogview4": (["transformer_blocks"], "sequential"),
    "hidream": (["double_stream_blocks", "single_stream_blocks"], "batched"),
}
LABELS = {"sequential": ["cond", "uncond"], "batched": ["uncond", "cond"], "none": ["main"]}


def frames(result):
    return media(result.outputs[0])


@pytest.mark.parametrize("family", [f for f in EXPECTED if f in FAMILIES])
def test_family_stack_branches_and_exactness(load, threshold_zero_check, family):
    stack, mode = EXPECTED[family]
    pipe = load(family)
    kw = {**FAMILIES[family].call_kwargs, "num_inference_steps": 6, "output_type": "np"}
    prof = calibrate(pipe, ["a cat"], [0], kw, model_id=family).profile
    assert prof.model.stack == stack
    assert prof.calibration.guidance_mode == mode
    assert list(prof.branches) == LABELS[mode]
    assert all(0.05 < r < 20 for b in prof.branches.values() for r in b.ratios)
    _, plain = threshold_zero_check(pipe, prof, kw, prompt="a dog", seed=1, max_skip_steps=3, retention_ratio=0.2)
    cached = run(pipe, ["a dog"], [1], kw, profile=prof, settings=SkipSettings(10.0, 2, 0.2))
    assert cached.transformer_calls < cached.total_calls == plain.total_calls
    assert np.isfinite(frames(cached)).all()
