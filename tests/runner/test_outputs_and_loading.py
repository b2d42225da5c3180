"""Outputs picked by type, not by field name; `--set KEY=null`; the VAE switches of LoadOptions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from magcache_cli.cli.preflight import parse_set
from magcache_cli.errors import OutputError, UsageError
from magcache_cli.runner.loading import (
    LoadOptions,
    build_call_kwargs,
    configure_vae,
    load_pipeline,
)
from magcache_cli.runner.outputs import first_item, media_field, save
from magcache_cli.testing.tiny import FAMILIES


def test_kandinsky_style_image_field_is_found():
    from diffusers.pipelines.kandinsky5.pipeline_output import (
        KandinskyImagePipelineOutput,
    )

    pixels = np.full((1, 8, 6, 3), 0.5, dtype=np.float32)
    out = KandinskyImagePipelineOutput(image=pixels)
    assert media_field(out)[0] == "image"
    kind, img = first_item(out)
    assert kind == "image" and img.size == (6, 8) and img.getpixel((0, 0)) == (128, 128, 128)


@dataclass
class _AudioVideo:  # a custom output: text first, audio, then the video
    caption: str
    audio: np.ndarray
    video: np.ndarray


def test_audio_and_text_fields_are_passed_over_for_the_video(tmp_path):
    video = np.zeros((1, 3, 8, 8, 3), dtype=np.float32)
    video[0, 1] = 1.0
    out = _AudioVideo("a cat", np.zeros((1, 2, 16000), dtype=np.float32), video)
    kind, frames = first_item(out)
    assert kind == "video" and len(frames) == 3
    assert [f.getpixel((0, 0)) for f in frames] == [(0, 0, 0), (255, 255, 255), (0, 0, 0)]
    assert save(out, tmp_path / "clip.png").suffix in (".mp4", ".gif")


def test_pil_lists_and_tuples():
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    assert first_item(([img],))[1].getpixel((0, 0)) == (1, 2, 3)
    assert first_item(_AudioVideo("x", np.zeros(4), [[img, img]]))[0] == "video"


def test_nothing_to_save_is_a_clear_error():
    out = _AudioVideo("a cat", np.zeros((1, 2, 16000), dtype=np.float32), np.zeros((1, 16), dtype=np.float32))
    with pytest.raises(OutputError, match="no image or video.*caption, audio, video"):
        first_item(out)


def test_set_null_passes_none_but_unset_named_settings_are_left_out():
    class Pipe:
        def __call__(self, prompt=None, num_inference_steps=2, intermediate_timesteps=1.3, guidance_scale=4.5):
            pass

    extra = parse_set(["intermediate_timesteps=null"])
    assert extra == {"intermediate_timesteps": None}
    kw = build_call_kwargs(Pipe(), steps=4, guidance_scale=None, extra=extra)
    assert kw == {"num_inference_steps": 4, "intermediate_timesteps": None}


class _VAE:
    def __init__(self):
        self.use_tiling = self.use_slicing = False

    def enable_tiling(self):
        self.use_tiling = True

    def enable_slicing(self):
        self.use_slicing = True


class _Pipe:
    def __init__(self, vae):
        self.vae = vae


def test_vae_switches():
    pipe = _Pipe(_VAE())
    configure_vae(pipe, tiling=True)
    assert pipe.vae.use_tiling and not pipe.vae.use_slicing
    configure_vae(pipe, slicing=True)
    assert pipe.vae.use_slicing
    with pytest.raises(UsageError, match="`vae_tiling`: .* has no enable_tiling"):
        configure_vae(_Pipe(object()), tiling=True)


def test_allegro_loads_with_vae_tiling(tiny_pipeline_dir):
    assert FAMILIES["allegro"].load == {"vae_tiling": True}
    pipe, _, _ = load_pipeline(LoadOptions(str(tiny_pipeline_dir("allegro")), vae_tiling=True))
    assert pipe.vae.use_tiling
    plain, _, _ = load_pipeline(LoadOptions(str(tiny_pipeline_dir("allegro"))))
    assert not plain.vae.use_tiling  # runtime state: save_pretrained does not keep it
