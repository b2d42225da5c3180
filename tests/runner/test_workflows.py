"""Image-conditioned workflows on tiny pipelines, loaded as users load them (`load_pipeline` with another
pipeline class on the same weights, or an extra component): inpainting with a mask, Kontext editing, SD3
img2img (batched guidance), Wan image-to-video, and a Flux ControlNet.

For each: a calibration on the workflow itself, then a cached run whose skipped steps equal the
`reference_skips` fixture (a plain statement of the rule) on the window of the curve the pipeline executes,
and `threshold=0` byte-identical to the plain pipeline.
"""

from __future__ import annotations

import torch

import magcache_cli as magcache
from magcache_cli.runner.inputs import read_input
from magcache_cli.testing.tiny import FAMILIES
from magcache_cli.testing.tiny.conditioned import (
    WAN_I2V_CALL,
    build_flux_controlnet,
    build_wan_i2v,
)

N = 8
THRESHOLD, K, R = 1.0, 3, 0.2


def check(pipe, call: dict, begin: int, reference_skips, threshold_zero_check) -> magcache.MagCache:
    """Calibrate on `call`, run cached, compare with the reference rule on [begin, N) and threshold 0 with the
    plain pipeline. Returns the cached run's MagCache."""
    prof = magcache.calibrate(pipe, ["a cat"], seeds=[0], **call)
    for b in prof.branches.values():
        assert (b.active or [0, N]) == [begin, N]
    curves = {label: list(b.ratios) for label, b in prof.branches.items()}
    with magcache.apply(pipe, prof, threshold=THRESHOLD, max_skip_steps=K, retention_ratio=R) as cache:
        pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **call)
    report = cache.report
    expected = reference_skips(curves, begin, N, THRESHOLD, K, R)
    assert expected, "the settings must skip something for this test to mean anything"
    assert report.window == (begin, N)
    for label in curves:
        assert report.skipped[label] == expected
    threshold_zero_check(pipe, prof, {**call, "output_type": "np"}, via="apply")
    return cache


def test_flux_inpainting_with_a_mask(load, files, reference_skips, threshold_zero_check):
    pipe = load("flux", pipeline="FluxInpaintPipeline")
    assert type(pipe).__name__ == "FluxInpaintPipeline"
    image, _ = read_input("image", files["image"])
    mask, _ = read_input("mask_image", files["mask"])
    call = {**FAMILIES["flux-nocfg"].call_kwargs, "num_inference_steps": N, "image": image, "mask_image": mask,
            "strength": 0.6}
    check(pipe, call, int(N - N * 0.6), reference_skips, threshold_zero_check)


def test_flux_kontext_edits_an_image(load, files, reference_skips, threshold_zero_check):
    pipe = load("flux", pipeline="FluxKontextPipeline")
    image, _ = read_input("image", files["image"])
    call = {**FAMILIES["flux-nocfg"].call_kwargs, "num_inference_steps": N, "image": image, "max_area": 32 * 32,
            "_auto_resize": False}  # else the image is resized to a preferred Kontext resolution (1024 px)
    check(pipe, call, 0, reference_skips, threshold_zero_check)


def test_sd3_img2img_with_batched_guidance(load, files, reference_skips, threshold_zero_check):
    pipe = load("sd3", pipeline="AutoPipelineForImage2Image")
    assert type(pipe).__name__ == "StableDiffusion3Img2ImgPipeline"
    image, _ = read_input("image", files["image"])
    call = {**FAMILIES["sd3"].call_kwargs, "num_inference_steps": N, "image": image, "strength": 0.75}
    cache = check(pipe, call, int(N - N * 0.75), reference_skips, threshold_zero_check)
    assert cache.profile.calibration.guidance_mode == "batched"
    assert list(cache.profile.branches) == ["uncond", "cond"]


def test_wan_image_to_video(load, tmp_path_factory, files, reference_skips, threshold_zero_check):
    pipe = load(build_wan_i2v(tmp_path_factory.mktemp("wan-i2v") / "pipe"))
    assert type(pipe).__name__ == "WanImageToVideoPipeline"
    image, _ = read_input("image", files["wide"])
    call = {**WAN_I2V_CALL, "num_inference_steps": N, "image": image}
    cache = check(pipe, call, 0, reference_skips, threshold_zero_check)
    assert list(cache.profile.branches) == ["cond", "uncond"]


def test_flux_controlnet_as_an_extra_component(load, tmp_path_factory, files, reference_skips, threshold_zero_check):
    net = build_flux_controlnet(tmp_path_factory.mktemp("controlnet") / "net")
    pipe = load("flux", pipeline="FluxControlNetPipeline", components={"controlnet": str(net)})
    assert type(pipe.controlnet).__name__ == "FluxControlNetModel"
    control, _ = read_input("control_image", files["control"])
    call = {**FAMILIES["flux-nocfg"].call_kwargs, "num_inference_steps": N, "control_image": control}
    check(pipe, call, 0, reference_skips, threshold_zero_check)
