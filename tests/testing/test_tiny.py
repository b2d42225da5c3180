"""The tiny offline pipelines build, reload, run, are not identity maps, and match their documented
guidance mode and token counts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from magcache_cli.testing.tiny import FAMILIES, build_tiny_pipeline

CORE = ["flux", "sd3", "wan", "cogvideox", "hunyuanvideo", "chroma", "qwenimage", "lumina2", "sdxl"]
STRETCH = ["pixart", "sana", "auraflow", "ltx", "mochi", "cogview4", "hidream"]
STEPS = 2

# cache_context name around each denoiser call, per guidance mode (None: no cache_context).
BATCHED_CONTEXT = {"cogvideox": "cond_uncond", "ltx": "cond_uncond", "mochi": "cond_uncond"}


def _load(path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _denoiser(pipe):
    return getattr(pipe, "transformer", None) or pipe.unet


def _get_module(root, dotted):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


class _Recorder:
    """Records, per denoiser call: cache_context name, batch size, text length; and per block whether
    it changed its `hidden_states` input and how many tokens it saw."""

    def __init__(self, pipe, blocks):
        self.den = _denoiser(pipe)
        self.context = None
        self.calls = []  # (context name, batch, text tokens)
        self.valid_text = []  # per call: unpadded text tokens, when an encoder_attention_mask is passed
        self.block_delta = {}  # "list.i" -> max relative change over the run
        self.block_tokens = {}  # "list.i" -> hidden_states.shape[1] (first call)
        self._handles = []
        self._orig_cc = None
        if hasattr(self.den, "cache_context"):
            orig = self.den.cache_context
            self._orig_cc = orig

            @contextlib.contextmanager
            def recording_cache_context(name, **kwargs):
                self.context = name
                try:
                    with orig(name, **kwargs):
                        yield
                finally:
                    self.context = None

            self.den.cache_context = recording_cache_context
        self._handles.append(self.den.register_forward_pre_hook(self._on_call, with_kwargs=True))
        for list_name in blocks:
            for i, block in enumerate(_get_module(self.den, list_name)):
                key = f"{list_name}.{i}"
                self._handles.append(block.register_forward_hook(self._on_block(key), with_kwargs=True))

    def _on_call(self, module, args, kwargs):
        hs = kwargs.get("hidden_states", kwargs.get("sample", args[0] if args else None))
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        mask = kwargs.get("encoder_attention_mask")
        self.valid_text.append(None if mask is None else int(mask[0].sum()))
        self.calls.append((self.context, hs.shape[0], None if ehs is None else ehs.shape[1]))

    def _on_block(self, key):
        def hook(module, args, kwargs, output):
            hs = kwargs.get("hidden_states", args[0] if args else None)
            outs = output if isinstance(output, (tuple, list)) else (output,)
            same = [o for o in outs if isinstance(o, torch.Tensor) and o.shape == hs.shape]
            assert same, f"{key}: no output with the shape of hidden_states {tuple(hs.shape)}"
            delta = max(((o - hs).norm() / hs.norm().clamp_min(1e-12)).item() for o in same)
            self.block_delta[key] = max(self.block_delta.get(key, 0.0), delta)
            self.block_tokens.setdefault(key, hs.shape[1])

        return hook

    def close(self):
        for h in self._handles:
            h.remove()
        if self._orig_cc is not None:
            del self.den.cache_context


def _run(pipe, fam, steps=STEPS, output_type="np"):
    out = pipe(
        prompt="a cat",
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type=output_type,
        **fam.call_kwargs,
    )
    return np.asarray(out.frames if hasattr(out, "frames") else out.images)


@pytest.mark.parametrize("family", CORE + STRETCH)
def test_tiny_pipeline_builds_loads_and_runs(family, tiny_pipeline_dir):
    fam = FAMILIES[family]
    pipe = _load(tiny_pipeline_dir(family))
    assert type(pipe).__name__ == fam.pipeline_class_name

    rec = _Recorder(pipe, fam.blocks)
    try:
        t0 = time.perf_counter()
        out = _run(pipe, fam)
        elapsed = time.perf_counter() - t0
    finally:
        rec.close()

    assert out.shape == fam.output_shape
    assert np.isfinite(out).all()
    assert out.std() > 0
    assert elapsed < 5.0, f"{family}: {STEPS}-step call took {elapsed:.2f}s"

    # Guidance mode, as documented.
    names = [c[0] for c in rec.calls]
    batches = [c[1] for c in rec.calls]
    if fam.guidance == "sequential-named":
        assert len(rec.calls) == 2 * STEPS
        assert names == ["cond", "uncond"] * STEPS
        assert set(batches) == {1}
    elif fam.guidance == "sequential-unnamed":
        assert len(rec.calls) == 2 * STEPS
        assert names == [None] * (2 * STEPS)
        assert set(batches) == {1}
    elif fam.guidance == "batched":
        assert len(rec.calls) == STEPS
        assert set(batches) == {2}
        assert names == [BATCHED_CONTEXT.get(family)] * STEPS
    elif fam.guidance == "none":
        assert len(rec.calls) == STEPS
        assert set(batches) == {1}
        assert names == ["cond"] * STEPS
    else:
        pytest.fail(f"unknown guidance mode {fam.guidance!r}")

    # Token counts: the first call's text length, the first main block's hidden_states length.
    if family == "hidream":  # text comes as encoder_hidden_states_t5 / _llama3; single blocks see it
        assert rec.block_tokens["single_stream_blocks.0"] == fam.image_tokens + fam.text_tokens
    else:
        assert rec.calls[0][2] == fam.text_tokens
    if fam.blocks:
        first = f"{fam.blocks[0]}.0"
        expected_image = fam.image_tokens
        if family == "lumina2":  # 'layers' see the joint [image, unpadded text] sequence
            expected_image = fam.image_tokens + rec.valid_text[0]
        assert rec.block_tokens[first] == expected_image
        assert fam.text_tokens != fam.image_tokens

        # Not identity maps: every main block changes its input.
        assert set(rec.block_delta) == {
            f"{b}.{i}" for b in fam.blocks for i in range(len(_get_module(rec.den, b)))
        }
        for key, delta in rec.block_delta.items():
            assert delta > 1e-3, f"{family}: block {key} is (nearly) an identity map (rel change {delta:.2e})"


@pytest.mark.parametrize("family", ["flux-nocfg", "hunyuanvideo-truecfg"])
def test_variant_guidance(family, tiny_pipeline_dir):
    fam = FAMILIES[family]
    pipe = _load(tiny_pipeline_dir(family))
    rec = _Recorder(pipe, ())
    try:
        out = _run(pipe, fam, output_type="latent")
    finally:
        rec.close()
    assert np.isfinite(out).all()
    if fam.guidance == "none":
        assert [c[1] for c in rec.calls] == [1] * STEPS
    else:
        assert [c[0] for c in rec.calls] == ["cond", "uncond"] * STEPS


def test_families_are_documented():
    modes = {"sequential-named", "sequential-unnamed", "batched", "none"}
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert fam.guidance in modes
        assert fam.notes
        assert not {"prompt", "num_inference_steps", "generator", "output_type"} & set(fam.call_kwargs)


def test_unknown_family():
    with pytest.raises(KeyError, match="unknown tiny family"):
        build_tiny_pipeline("no-such-family", "/nonexistent")


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_is_deterministic(tmp_path):
    a = _files(build_tiny_pipeline("flux", tmp_path / "a", seed=0))
    b = _files(build_tiny_pipeline("flux", tmp_path / "b", seed=0))
    c = _files(build_tiny_pipeline("flux", tmp_path / "c", seed=1))
    key = "transformer/diffusion_pytorch_model.safetensors"
    assert key in a
    assert a[key] == b[key]
    assert a == b  # every file: weights, configs, tokenizers
    assert c[key] != a[key]


_HASH_EVERY_FAMILY = """
import hashlib, sys, tempfile
from pathlib import Path
import torch
torch.set_num_threads(1)
from magcache_cli.testing.tiny import FAMILIES, build_tiny_pipeline
with tempfile.TemporaryDirectory() as d:
    for name in FAMILIES:
        root = build_tiny_pipeline(name, Path(d) / name, seed=0)
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(root).as_posix().encode() + b"\\0" + p.read_bytes())
        print(name, h.hexdigest())
"""


@pytest.mark.slow
def test_every_family_saves_the_same_bytes_in_another_process():
    """A parameter left uninitialised (torch.empty) holds other bytes in every process: build every family in two
    fresh processes and compare the saved folders (lumina-next's pad_token did differ)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = [subprocess.run([sys.executable, "-c", _HASH_EVERY_FAMILY], capture_output=True, text=True, env=env,
                           timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    first, second = (dict(line.split() for line in r.stdout.splitlines()) for r in runs)
    assert list(first) == list(FAMILIES)
    assert {name for name in first if first[name] != second[name]} == set()


def test_tokenizers_are_character_level(tiny_pipeline_dir):
    pipe = _load(tiny_pipeline_dir("flux"))
    t5_ids = pipe.tokenizer_2("a cat").input_ids
    assert pipe.tokenizer_2.convert_ids_to_tokens(t5_ids) == ["\u2581", "a", "\u2581", "c", "a", "t", "</s>"]
    clip_ids = pipe.tokenizer("a cat").input_ids
    assert pipe.tokenizer.convert_ids_to_tokens(clip_ids) == [
        "<|startoftext|>", "a</w>", "c", "a", "t</w>", "<|endoftext|>"
    ]
