"""Issue 13's families from the command line: `--set KEY=null` reaches the pipeline as None (and is stored in
the profile, so `run` passes it again), a second model's pass is the `uncond` branch, a guider's passes are
`cond` / `uncond`, and outputs are saved whatever their field is called."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from magcache_cli.testing.helpers import invoke


def _calibrate(model, out, *args):
    r = invoke("calibrate", "--model", model, "-p", "a cat", "--steps", 4, "--height", 32, "--width", 32,
               "--out", out, *args)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(out.read_text())


def test_sana_sprint_set_null(tiny_pipeline_dir, tmp_path):
    model, prof = tiny_pipeline_dir("sana-sprint"), tmp_path / "sprint.yaml"
    data = _calibrate(model, prof, "--set", "intermediate_timesteps=null", "--set", "use_resolution_binning=false",
                      "--set", "max_sequence_length=12")
    assert data["calibration"]["call_args"]["intermediate_timesteps"] is None
    assert list(data["branches"]) == ["main"]
    r = invoke("run", "--profile", prof, "--model", model, "--output", tmp_path / "img.png", "--json")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["branches"]) == {"main"}
    assert Image.open(tmp_path / "img.png").size == (32, 32)


def test_ideogram4_second_model_is_the_uncond_branch(tiny_pipeline_dir, tmp_path):
    model, prof = tiny_pipeline_dir("ideogram4"), tmp_path / "ideogram.yaml"
    data = _calibrate(model, prof, "--guidance-scale", 4.0, "--set", "guidance_schedule=null",
                      "--set", "max_sequence_length=64")
    assert list(data["branches"]) == ["cond", "uncond"] and data["calibration"]["guidance_mode"] == "sequential"
    assert data["model"]["stack"] == ["layers", "unconditional_transformer.layers"]
    r = invoke("run", "--profile", prof, "--model", model, "--threshold", 10, "--output", tmp_path / "img.png",
               "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["branches"]["cond"] == out["branches"]["uncond"] and out["branches"]["cond"]["skipped"]
    assert out["total_calls"] == 8 and out["transformer_calls"] < 8
    assert Image.open(tmp_path / "img.png").size == (32, 32)


@pytest.mark.slow  # a 24-frame 128x128 video, decoded in tiles
def test_allegro_needs_and_gets_vae_tiling(tiny_pipeline_dir, tmp_path):
    model, prof = tiny_pipeline_dir("allegro"), tmp_path / "allegro.yaml"
    args = ("calibrate", "--model", model, "-p", "a cat", "--steps", 3, "--height", 128, "--width", 128,
            "--num-frames", 24, "--guidance-scale", 4.5, "--negative-prompt", "blurry", "--set", "max_sequence_length=16",
            "--set", "clean_caption=false", "--out", prof)
    r = invoke(*args)
    assert r.exit_code == 1 and "--vae-tiling" in r.output and "Traceback" not in r.output
    assert not prof.exists()
    r = invoke(*args, "--vae-tiling")
    assert r.exit_code == 0, r.output
    assert list(yaml.safe_load(prof.read_text())["branches"]) == ["uncond", "cond"]
    r = invoke("run", "--profile", prof, "--model", model, "--vae-tiling", "--output", tmp_path / "clip.png", "--json")
    assert r.exit_code == 0, r.output
    written = list(tmp_path.glob("clip.*"))
    assert [p.suffix for p in written] in ([".mp4"], [".gif"])
