"""The bundled demo model loads offline, generates the prompted digits, and the digit classifier is sound."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

pytest.importorskip("sklearn")

from magcache_cli.testing import digits  # noqa: E402

# The call settings the demo uses (docs/demo-model.md).
STEPS = 28
GUIDANCE = 4.0
SIZE = 32


@pytest.fixture(scope="module")
def pipe():
    from diffusers import DiffusionPipeline

    assert (digits.DEMO_MODEL_DIR / "model_index.json").is_file(), "bundled demo model missing"
    p = DiffusionPipeline.from_pretrained(str(digits.DEMO_MODEL_DIR))
    p.set_progress_bar_config(disable=True)
    return p


def _gens(seeds):
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def test_bundle_is_small_and_safetensors_only():
    files = [f for f in digits.DEMO_MODEL_DIR.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 5_000_000
    weights = [f for f in files if f.suffix in {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    index = json.loads((digits.DEMO_MODEL_DIR / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"


def test_prompts():
    assert digits.prompt_for(7) == "a handwritten digit seven"
    assert len(digits.DIGIT_PROMPTS) == 10
    with pytest.raises(ValueError):
        digits.prompt_for(10)


def test_classifier_on_heldout_real_digits():
    clf = digits.train_classifier(seed=0)
    images, labels = digits.load_digit_images(32)
    held = clf.heldout_idx_
    assert len(held) > 300
    train_idx, held_again = digits.heldout_split(seed=0)
    np.testing.assert_array_equal(held, held_again)
    assert np.intersect1d(train_idx, held).size == 0
    acc = digits.adherence(images[held], labels[held])
    assert acc >= 0.95
    assert digits.train_classifier(seed=0) is clf  # cached in-process


def test_classify_accepts_pil_and_channel_arrays():
    from PIL import Image

    images, labels = digits.load_digit_images(32)
    sel = images[:10]
    rgb = np.repeat(sel[..., None], 3, axis=-1)
    pil = [Image.fromarray((im * 255).round().astype(np.uint8)) for im in rgb]
    small = digits.load_digit_images(8)[0][:10]
    expected = digits.classify(sel)
    np.testing.assert_array_equal(digits.classify(rgb), expected)
    np.testing.assert_array_equal(digits.classify(pil), expected)
    assert (digits.classify(small) == labels[:10]).mean() >= 0.9
    assert digits.adherence(pil, labels[:10]) >= 0.9


@pytest.mark.slow  # 20 demo-model images at 28 steps in one call
def test_demo_model_follows_prompts(pipe):
    """10 digits x 2 seeds, 28 steps, one batched call: the classifier must read the prompted digit >= 90%."""
    digit_list = [d for _ in range(2) for d in range(10)]
    seeds = [s for s in range(2) for _ in range(10)]
    out = pipe(
        [digits.prompt_for(d) for d in digit_list],
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        height=SIZE,
        width=SIZE,
        generator=_gens(seeds),
    )
    images = out.images
    assert len(images) == 20 and images[0].size == (SIZE, SIZE)
    acc = digits.adherence(images, digit_list)
    assert acc >= 0.9, f"adherence {acc:.2f}: {digits.classify(images).tolist()} vs {digit_list}"


def test_placeholder_t5_is_exactly_no_t5(pipe):
    """text_encoder_3 only outputs zeros: same images as the SD3 pipeline without T5."""
    from diffusers import StableDiffusion3Pipeline

    no_t5 = StableDiffusion3Pipeline(**{**pipe.components, "text_encoder_3": None, "tokenizer_3": None})
    no_t5.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=4, guidance_scale=GUIDANCE, height=SIZE, width=SIZE, output_type="np")
    a = pipe(digits.prompt_for(3), generator=_gens([5])[0], **kw).images
    b = no_t5(digits.prompt_for(3), generator=_gens([5])[0], **kw).images
    np.testing.assert_allclose(a, b, atol=1e-5)
