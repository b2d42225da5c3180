"""Image-conditioned workflows from the command line: --image / --mask-image / --control-image / --set KEY=@PATH,
--strength, --pipeline, --component; inputs recorded as provenance and reused by `run`; every input checked
before the model loads."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from magcache_cli.testing.helpers import invoke
from magcache_cli.testing.tiny.conditioned import build_flux_controlnet, sample_image

FLUX = ["--height", 32, "--width", 32, "--guidance-scale", 3.5, "--set", "max_sequence_length=12", "--steps", 8]


@pytest.fixture(scope="module")
def img2img_profile(tiny_pipeline_dir, files):
    out = files["root"] / "img2img.yaml"
    r = invoke("calibrate", "--model", tiny_pipeline_dir("flux"), "--pipeline", "FluxImg2ImgPipeline", "-p", "a cat",
               "--image", files["image"], "--strength", 0.5, *FLUX, "--threshold", 0.5, "--out", out)
    assert r.exit_code == 0, r.output
    return out, r.output


def test_calibrate_records_class_strength_window_and_input_provenance(img2img_profile, files):
    out, output = img2img_profile
    data = yaml.safe_load(out.read_text())
    assert data["model"]["pipeline_class"] == "FluxImg2ImgPipeline"
    assert data["calibration"]["call_args"] == {"max_sequence_length": 12, "strength": 0.5}
    assert data["calibration"]["inputs"] == [{
        "arg": "image", "path": str(files["image"]), "sha256": hashlib.sha256(files["image"].read_bytes()).hexdigest(),
        "kind": "image", "width": 32, "height": 32}]
    assert data["branches"]["main"]["active"] == [4, 8]
    text = " ".join(output.split())
    assert "calibrated on steps 4–7 of 8" in text and "skipping rarely pays" in text


def test_run_reuses_the_recorded_image_and_computes_steps_the_profile_does_not_cover(img2img_profile, tmp_path,
                                                                                       reference_skips):
    out, _ = img2img_profile
    prof = yaml.safe_load(out.read_text())
    r = invoke("run", "--profile", out, "--strength", 0.8, "--output", tmp_path / "a.png", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["window"] == [1, 8]
    expected = reference_skips({"main": prof["branches"]["main"]["ratios"]}, 4, 8, 0.5, 3, 0.2)
    assert data["branches"]["main"]["skipped"] == expected
    assert data["branches"]["main"]["computed"] == sorted(set(range(1, 8)) - set(expected))
    (warning,) = [w for w in data["warnings"] if "not covered" in w]
    assert warning.startswith("steps 1–3 of 8 are not covered")


def test_threshold_zero_is_byte_identical_to_no_cache(img2img_profile, tmp_path):
    out, _ = img2img_profile
    for flag, name in (("--no-cache", "plain.png"), ("--threshold", "zero.png")):
        args = [flag, 0] if flag == "--threshold" else [flag]
        r = invoke("run", "--profile", out, *args, "--output", tmp_path / name)
        assert r.exit_code == 0, r.output
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("plain.png", "zero.png"))
    assert a.tobytes() == b.tobytes()


def test_an_unreadable_or_changed_input_fails_before_the_model_loads(img2img_profile, files, tmp_path, monkeypatch):
    out, _ = img2img_profile

    def no_loading(*a, **k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("magcache_cli.runner.loading.load_pipeline", no_loading)
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    r = invoke("run", "--profile", out, "--image", bad, "--output", tmp_path / "x.png")
    assert r.exit_code == 1
    assert r.output.strip().startswith(f"Error: --image: cannot read {bad} as an image")
    r = invoke("run", "--profile", out, "--pipeline", "FluxImg2ImgPipeline", "--mask-image", files["mask"])
    assert r.exit_code == 1 and "--mask-image: FluxImg2ImgPipeline does not take `mask_image`" in r.output
    moved = yaml.safe_load(out.read_text())
    copy = tmp_path / "start.png"
    sample_image(copy, seed=99)  # same name, other pixels
    moved["calibration"]["inputs"][0]["path"] = "start.png"
    (tmp_path / "moved.yaml").write_text(yaml.safe_dump(moved))
    monkeypatch.chdir(tmp_path)
    r = invoke("run", "--profile", tmp_path / "moved.yaml")
    assert r.exit_code == 1 and "image start.png changed since calibration" in " ".join(r.output.split())


def test_inpainting_with_set_at_path_and_a_dropped_inherited_argument(tiny_pipeline_dir, img2img_profile, files,
                                                                       tmp_path):
    out = tmp_path / "inpaint.yaml"
    r = invoke("calibrate", "--model", tiny_pipeline_dir("flux"), "--pipeline", "FluxInpaintPipeline", "-p", "a cat",
               "--image", files["image"], "--set", f"mask_image=@{files['mask']}", "--strength", 0.75, *FLUX,
               "--out", out)
    assert r.exit_code == 0, r.output
    inputs = yaml.safe_load(out.read_text())["calibration"]["inputs"]
    assert [(i["arg"], i["sha256"]) for i in inputs] == [
        ("image", hashlib.sha256(files["image"].read_bytes()).hexdigest()),
        ("mask_image", hashlib.sha256(files["mask"].read_bytes()).hexdigest())]
    # the img2img profile on the text-to-image class: strength and the image are dropped with a note
    r = invoke("run", "--profile", img2img_profile[0], "--pipeline", "FluxPipeline", "--output", tmp_path / "t.png",
               "--json")
    assert r.exit_code == 0, r.output
    notes = json.loads(r.stdout)["notes"]
    assert "calibration.inputs: image dropped (this pipeline does not take it)" in notes
    assert "calibration: strength dropped (this pipeline does not take it)" in notes
    assert json.loads(r.stdout)["window"] == [0, 8]


def test_controlnet_component_is_recorded_and_reused(tiny_pipeline_dir, files, tmp_path):
    net = build_flux_controlnet(tmp_path / "net")
    out = tmp_path / "cn.yaml"
    r = invoke("calibrate", "--model", tiny_pipeline_dir("flux"), "--pipeline", "FluxControlNetPipeline",
               "--component", f"controlnet={net}", "--control-image", files["control"], "-p", "a cat", *FLUX,
               "--out", out)
    assert r.exit_code == 0, r.output
    model = yaml.safe_load(out.read_text())["model"]
    assert model["pipeline_class"] == "FluxControlNetPipeline" and model["components"] == {"controlnet": str(net)}
    r = invoke("run", "--profile", out, "--threshold", 1.0, "--output", tmp_path / "c.png", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["branches"]["main"]["skipped"]


def test_a_text_to_video_profile_drives_video_to_video_from_a_gif(tiny_pipeline_dir, tmp_path, reference_skips):
    frames = [Image.new("RGB", (64, 64), (i * 30, 50, 90)) for i in range(5)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "wan.yaml"
    r = invoke("calibrate", "--model", tiny_pipeline_dir("wan"), "-p", "a cat", "--steps", 8, "--height", 64,
               "--width", 64, "--num-frames", 5, "--guidance-scale", 5.0, "--negative-prompt", "blurry",
               "--set", "max_sequence_length=16", "--out", out)
    assert r.exit_code == 0, r.output
    r = invoke("run", "--profile", out, "--pipeline", "WanVideoToVideoPipeline", "--video", tmp_path / "clip.gif",
               "--strength", 0.5, "--threshold", 1.0, "--output", tmp_path / "v2v.gif", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert "calibration: num_frames dropped (this pipeline does not take it)" in data["notes"]
    begin = 8 - min(int(8 * 0.5), 8)  # WanVideoToVideoPipeline.get_timesteps
    assert data["window"] == [begin, 8]
    curves = {label: b["ratios"] for label, b in yaml.safe_load(out.read_text())["branches"].items()}
    expected = reference_skips(curves, begin, 8, 1.0, 3, 0.2)
    assert expected and data["branches"]["cond"]["skipped"] == expected == data["branches"]["uncond"]["skipped"]


def test_the_shipped_kontext_profile_runs_with_an_image(tiny_pipeline_dir, files, tmp_path):
    """flux1-kontext-dev names FluxKontextPipeline: run loads that class (here on the tiny Flux weights) and
    takes --image; the published curve (28 steps) is resampled to 8."""
    r = invoke("run", "--profile", "flux1-kontext-dev", "--model", tiny_pipeline_dir("flux"), "-p", "make it red",
               "--image", files["image"], *FLUX, "--set", "max_area=1024", "--set", "_auto_resize=false",
               "--output", tmp_path / "edit.png", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["window"] == [0, 8] and data["branches"]["main"]["skipped"]
    assert Image.open(tmp_path / "edit.png").size == (32, 32)
