"""Steps are positions in the scheduler's full schedule: img2img with strength < 1 begins mid-schedule, and a
pipeline that copies its scheduler or steps it twice still counts each step once.

Every expected schedule here comes from the `reference_skips` fixture (tests/conftest.py), a plain
re-statement of the MagCache rule written for the tests (not the library's simulator), applied to the window of the curve the pipeline executes. The
window's first position is diffusers' own formula for Flux img2img: `int(N - N * strength)`.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

import magcache_cli as magcache
from magcache_cli.errors import InputError
from magcache_cli.profile.schema import InputFile
from magcache_cli.runner.calibrate import calibrate as calibrate_run
from magcache_cli.runner.inputs import read_input
from magcache_cli.runner.run import run
from magcache_cli.testing.tiny import FAMILIES

N = 8
KW = {**FAMILIES["flux"].call_kwargs, "num_inference_steps": N}  # true CFG: cond and uncond calls per step
THRESHOLD, K, R = 0.5, 3, 0.2


def begin_of(strength: float) -> int:
    return int(N - N * strength)  # FluxImg2ImgPipeline.get_timesteps


@pytest.fixture(scope="module")
def base(tiny_pipeline_dir):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(tiny_pipeline_dir("flux")))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def img2img(base):
    from diffusers import FluxImg2ImgPipeline

    pipe = FluxImg2ImgPipeline.from_pipe(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    rng = np.random.RandomState(3)
    path = tmp_path_factory.mktemp("inputs") / "start.png"
    Image.fromarray((rng.rand(32, 32, 3) * 255).astype("uint8")).save(path)
    return path


@pytest.fixture(scope="module")
def t2i_profile(base):
    return magcache.calibrate(base, ["a cat"], seeds=[0], **KW)


def curves_of(profile) -> dict[str, list[float]]:
    return {label: list(b.ratios) for label, b in profile.branches.items()}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("strength", [0.5, 0.8])
def test_img2img_reads_the_t2i_curve_at_the_positions_it_runs(img2img, t2i_profile, picture, strength,
                                                             reference_skips):
    image, _ = read_input("image", picture)
    begin = begin_of(strength)
    assert begin == {0.5: 4, 0.8: 1}[strength]
    with magcache.apply(img2img, t2i_profile, threshold=THRESHOLD, max_skip_steps=K, retention_ratio=R) as cache:
        img2img("a cat", image=image, strength=strength, generator=gen(), **KW)
    report = cache.report
    assert report.window == (begin, N)
    expected = reference_skips(curves_of(t2i_profile), begin, N, THRESHOLD, K, R)
    assert expected, "the settings must skip something for this test to mean anything"
    for label in ("cond", "uncond"):
        assert report.skipped[label] == expected
        assert sorted(report.computed[label] + report.skipped[label]) == list(range(begin, N))
    assert report.uncovered == []
    assert report.calls == 2 * (N - begin)


def test_threshold_zero_is_byte_identical_to_no_cache(img2img, t2i_profile, picture, threshold_zero_check):
    image, _ = read_input("image", picture)
    call = dict(image=image, strength=0.5, output_type="np", **KW)
    cache, _ = threshold_zero_check(img2img, t2i_profile, call, via="apply")
    assert cache.report.skipped == {"cond": [], "uncond": []}


def test_partial_calibration_records_its_window_and_a_lower_start_computes_the_rest(img2img, picture, reference_skips):
    image, info = read_input("image", picture)
    result = calibrate_run(img2img, ["a cat"], [0], {**KW, "image": image, "strength": 0.5}, model_id="tiny",
                           inputs=[info])
    prof = result.profile
    assert result.window == (4, N)
    assert result.notes[0].startswith("calibrated on steps 4–7 of 8: the pipeline began mid-schedule")
    assert result.notes[1].startswith("8 steps: on few-step (distilled or turbo) models skipping rarely pays")
    for b in prof.branches.values():
        assert b.active == [4, N] and b.ratios[4] == 1.0 and b.ratios[:4] == [1.0] * 4
    assert prof.calibration.call_args["strength"] == 0.5
    assert prof.calibration.inputs == [InputFile(arg="image", path=str(picture), kind="image", width=32,
                                                 height=32, sha256=hashlib.sha256(picture.read_bytes()).hexdigest())]
    assert "image" not in prof.calibration.call_args

    from magcache_cli.core.rule import SkipSettings

    res = run(img2img, ["a cat"], [0], {**KW, "image": image, "strength": 0.8}, profile=prof,
              settings=SkipSettings(THRESHOLD, K, R))
    report = res.reports[0]
    assert report.window == (1, N) and res.window == (1, N)
    assert report.uncovered == [1, 2, 3]
    expected = reference_skips(curves_of(prof), 4, N, THRESHOLD, K, R)  # the rule runs on the covered steps only
    assert report.skipped["cond"] == expected and expected
    assert all(s not in report.skipped["cond"] for s in (1, 2, 3))
    warning = next(w for w in res.warnings if "not covered" in w)
    assert warning.startswith("steps 1–3 of 8 are not covered") and "calibrated on steps 4–7 of 8" in warning
    assert res.to_json()["window"] == [1, N]
    assert res.notes == [result.notes[1]]  # 8 steps: the few-step note


def test_in_memory_images_get_a_provenance_and_unstorable_arguments_fail_before_running(base, img2img):
    img = Image.new("RGB", (32, 32), (10, 20, 30))
    prof = magcache.calibrate(img2img, ["a cat"], seeds=[0], image=img, strength=0.5, **KW)
    (entry,) = prof.calibration.inputs
    pixels = hashlib.sha256(b"RGB:32x32:" + img.tobytes()).hexdigest()
    assert entry == InputFile(arg="image", path=None, sha256=pixels, kind="image", width=32, height=32)

    calls = []
    handle = base.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(InputError, match="call argument latents is a Tensor"):
            magcache.calibrate(base, ["a cat"], seeds=[0], latents=torch.zeros(1, 64, 16), **KW)
    finally:
        handle.remove()
    assert calls == []


class _TwoStreamFlux:
    """Builds a FluxPipeline subclass that, like LTX2Pipeline, deep-copies its scheduler inside `__call__`
    (after the hooks are installed) for a second stream, sets its timesteps and steps it every step; and, like
    Cosmos, calls `step()` on its own scheduler a second time per step and rewinds `_step_index`."""

    @staticmethod
    def make(base):
        from diffusers import FluxPipeline

        class TwoStreamFlux(FluxPipeline):
            def __call__(self, *args, **kwargs):
                audio = copy.deepcopy(self.scheduler)
                audio.set_timesteps(kwargs["num_inference_steps"], mu=1.0)
                zeros = torch.zeros(1, 4)

                def on_step(pipe, i, t, tensors):
                    audio.step(zeros, audio.timesteps[i], zeros)
                    if i + 1 < len(pipe.scheduler.timesteps):  # step twice, then rewind (Cosmos)
                        pipe.scheduler.step(torch.zeros_like(tensors["latents"]), t, tensors["latents"])
                        pipe.scheduler._step_index -= 1
                    return {}

                return super().__call__(*args, callback_on_step_end=on_step, **kwargs)

        pipe = TwoStreamFlux(**base.components)
        pipe.set_progress_bar_config(disable=True)
        return pipe


def test_copied_and_repeatedly_stepped_scheduler_counts_each_step_once(base, t2i_profile, reference_skips,
                                                                         threshold_zero_check):
    pipe = _TwoStreamFlux.make(base)
    prof = magcache.calibrate(pipe, ["a cat"], seeds=[0], **KW)
    assert curves_of(prof) == curves_of(t2i_profile)  # same model, same steps: the copy changes nothing
    call = dict(output_type="np", **KW)
    plain = pipe("a cat", generator=gen(), **call).images
    with magcache.apply(pipe, prof, threshold=THRESHOLD, max_skip_steps=K, retention_ratio=R) as cache:
        pipe("a cat", generator=gen(), **call)
    report = cache.report
    assert report.window == (0, N) and report.calls == 2 * N
    assert report.skipped["cond"] == reference_skips(curves_of(prof), 0, N, THRESHOLD, K, R)
    assert sorted(report.computed["cond"] + report.skipped["cond"]) == list(range(N))
    threshold_zero_check(pipe, prof, call, plain=plain, via="apply")
