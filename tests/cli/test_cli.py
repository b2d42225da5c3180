"""The CLI end to end through typer's CliRunner: exit codes, key lines present and absent, --json."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from magcache_cli.cli.app import app
from magcache_cli.testing.helpers import invoke

runner = CliRunner()




@pytest.fixture(scope="module")
def sd3_profile(tiny_pipeline_dir, tmp_path_factory):
    model = tiny_pipeline_dir("sd3")
    out = tmp_path_factory.mktemp("cli") / "sd3.yaml"
    r = invoke("calibrate", "--model", model, "-p", "a cat", "-p", "a dog", "-s", "0", "-s", "1", "--steps", 10,
               "--height", 32, "--width", 32, "--guidance-scale", 5.0, "--negative-prompt", "blurry",
               "--set", "max_sequence_length=12", "--threshold", 0.3, "--out", out)
    assert r.exit_code == 0, r.output
    return model, out, r.output


def test_calibrate_writes_profile_and_summary(sd3_profile):
    model, out, output = sd3_profile
    assert "Stack" in output and "transformer_blocks" in output
    assert "batched" in output and "uncond" in output and "cond" in output
    assert f"Wrote {out}" in output.replace("\n", "")
    data = yaml.safe_load(out.read_text())
    assert data["calibration"]["prompts"] == ["a cat", "a dog"] and data["calibration"]["seeds"] == [0, 1]
    assert data["calibration"]["call_args"] == {"max_sequence_length": 12}
    assert data["defaults"]["threshold"] == 0.3
    assert list(data["branches"]) == ["uncond", "cond"]


def test_calibrate_refuses_to_overwrite(sd3_profile):
    model, out, _ = sd3_profile
    before = out.read_bytes()
    r = invoke("calibrate", "--model", model, "-p", "x", "--steps", 2, "--out", out)
    assert r.exit_code == 1
    assert "Error:" in r.output and "--force" in r.output and "Traceback" not in r.output
    assert out.read_bytes() == before


def test_run_json_and_outputs(sd3_profile, tmp_path):
    model, out, _ = sd3_profile
    r = runner.invoke(app, ["run", "--profile", str(out), "-p", "a cat", "-p", "a bird", "-s", "3", "-s", "4",
                            "--output", str(tmp_path / "img.png"), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["steps"] == 10 and set(data["branches"]) == {"uncond", "cond"}
    sched = data["branches"]["cond"]
    assert sorted(sched["computed"] + sched["skipped"]) == list(range(10)) and sched["skipped"]
    assert data["branches"]["uncond"] == sched  # batched guidance: one decision for both halves
    assert data["transformer_calls"] == 4 * len(sched["computed"])  # 4 runs, one batched pass per step
    assert data["total_calls"] == 40 and data["wall_s"] > 0
    names = sorted(p.rsplit("/", 1)[-1] for p in data["outputs"])
    assert names == ["img-p0-s3.png", "img-p0-s4.png", "img-p1-s3.png", "img-p1-s4.png"]
    assert all((tmp_path / n).is_file() for n in names)


def test_run_human_output_and_no_cache(sd3_profile, tmp_path):
    _, out, _ = sd3_profile
    r = invoke("run", "--profile", out, "-p", "a cat", "--output", tmp_path / "a.png")
    assert r.exit_code == 0, r.output
    assert "█" in r.output and "░" in r.output and "Transformer passes" in r.output
    r = invoke("run", "--profile", out, "-p", "a cat", "--no-cache", "--output", tmp_path / "b.png")
    assert r.exit_code == 0 and "10 / 10 computed" in r.output and "░" not in r.output


def test_run_warns_on_resampling(sd3_profile, tmp_path):
    _, out, _ = sd3_profile
    r = invoke("run", "--profile", out, "-p", "a cat", "--steps", 5, "--output", tmp_path / "c.png")
    assert r.exit_code == 0
    assert "calibration.steps" in r.output and "resampled" in r.output


def test_profile_show_and_validate(sd3_profile, tmp_path):
    _, out, _ = sd3_profile
    r = invoke("profile", "show", out)
    assert r.exit_code == 0 and "StableDiffusion3Pipeline" in r.output and "uncond" in r.output
    bad = tmp_path / "bad.yaml"
    text = out.read_text().replace("schema_version: 1", "schema_version: 1\nextra_key: 3")
    bad.write_text(text)
    r = invoke("profile", "validate", out, bad)
    assert r.exit_code == 1
    assert "ok" in r.output and "extra_key" in r.output and "1 of 2" in r.output


def test_unet_pipeline_error_is_one_line(tiny_pipeline_dir, tmp_path):
    r = invoke("calibrate", "--model", tiny_pipeline_dir("sdxl"), "-p", "a cat", "--steps", 2, "--out",
               tmp_path / "x.yaml")
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "UNet" in errors[0]
    assert not (tmp_path / "x.yaml").exists()


def test_bad_inputs_name_the_fix(tiny_pipeline_dir, tmp_path):
    r = invoke("calibrate", "--model", tmp_path / "nope", "-p", "a", "--out", tmp_path / "y.yaml")
    assert r.exit_code == 1 and "model_index.json" in r.output
    r = invoke("calibrate", "--model", tiny_pipeline_dir("sd3"), "-p", "a", "--set", "not_an_arg=1",
               "--out", tmp_path / "y.yaml")
    assert r.exit_code == 1 and "not_an_arg" in r.output and "it takes" in r.output
    r = invoke("run", "--profile", tmp_path / "missing.yaml", "-p", "a")
    assert r.exit_code == 1 and "Error:" in r.output


def test_video_pipeline_end_to_end(tiny_pipeline_dir, tmp_path):
    from PIL import Image

    prof = tmp_path / "wan.yaml"
    r = invoke("calibrate", "--model", tiny_pipeline_dir("wan"), "-p", "a cat", "--steps", 6, "--height", 64,
               "--width", 64, "--num-frames", 5, "--guidance-scale", 5.0, "--negative-prompt", "blurry",
               "--set", "max_sequence_length=16", "--out", prof)
    assert r.exit_code == 0, r.output
    assert "sequential" in r.output and "blocks[2]" in r.output
    r = runner.invoke(app, ["run", "--profile", str(prof), "--output", str(tmp_path / "clip.mp4"), "--json",
                            "--threshold", "1.0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (path,) = data["outputs"]
    assert path.endswith((".mp4", ".gif"))
    if path.endswith(".gif"):  # no video writer installed: every frame is kept
        assert Image.open(path).n_frames == 5
    assert set(data["branches"]) == {"cond", "uncond"} and data["branches"]["cond"]["skipped"]
    assert data["transformer_calls"] == 2 * len(data["branches"]["cond"]["computed"])


def test_unknown_compile_mode_is_refused(sd3_profile, tmp_path):
    _, out, _ = sd3_profile
    r = invoke("run", "--profile", out, "-p", "a", "--compile", "fast", "--output", tmp_path / "z.png")
    assert r.exit_code == 1 and "--compile" in r.output and "repeated" in r.output


def test_bad_skip_settings_fail_before_loading(sd3_profile, tmp_path):
    _, out, _ = sd3_profile
    r = invoke("run", "--profile", out, "-p", "a", "--retention-ratio", 1.5, "--model", tmp_path / "not-a-model")
    assert r.exit_code == 1 and "retention" in r.output and "Traceback" not in r.output
    assert "model_index.json" not in r.output  # refused before trying to load the model
