"""`run --speedup`, `tune` as a search, and `calibrate --speedup / --tune`, on the tiny SD3 pipeline (batched guidance,
8 steps: one transformer pass per step)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from magcache_cli.cli.app import app

runner = CliRunner()
STEPS = 8
CALL = ["--steps", str(STEPS), "--height", "32", "--width", "32", "--guidance-scale", "5", "--set",
        "max_sequence_length=12"]
GRID = ["--thresholds", "0.05,0.2,0.6", "--max-skips", "2,3", "--retentions", "0.25", "--forecasts", "0,0.5"]


@pytest.fixture(scope="module")
def tiny(tiny_pipeline_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "sd3.yaml"
    r = runner.invoke(app, ["calibrate", "--model", str(tiny_pipeline_dir("sd3")), "--out", str(path),
                            "-p", "a cat", "-p", "a dog", *CALL])
    assert r.exit_code == 0, r.output
    return path


def test_run_speedup_runs_the_predicted_passes_and_reports_the_choice(tiny, tmp_path):
    r = runner.invoke(app, ["run", "--profile", str(tiny), "--speedup", "1.5", "-p", "a cat",
                            "--output", str(tmp_path / "c.png"), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    sp = data["speedup"]
    assert sp["asked"] == 1.5 and sp["total_passes"] == STEPS and sp["passes"] * 1.5 <= STEPS
    assert data["transformer_calls"] == sp["passes"]  # the run did what was predicted
    assert (data["settings"]["threshold"], data["settings"]["forecast"]) == (sp["threshold"], sp["forecast"])
    # an explicit knob is held
    r = runner.invoke(app, ["run", "--profile", str(tiny), "--speedup", "1.5", "--max-skip-steps", "1", "-p", "a cat",
                            "--output", str(tmp_path / "c.png"), "--json", "--force"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["speedup"]["max_skip_steps"] == 1


def test_tune_without_a_target_beats_fewer_steps_and_counts_its_runs(tiny):
    r = runner.invoke(app, ["tune", "--profile", str(tiny), "-p", "a cat", "-p", "a dog", "-s", "0", "-s", "1", *GRID,
                            "--dry-run", "--repeats", "1", "--json"])
    data = json.loads(r.stdout)
    assert r.exit_code == (0 if data["chosen"] else 1), r.output
    assert data["target"] == {"beat_fewer_steps_db": 0.5}
    assert data["settings_swept"] == 12
    s = data["search"]
    assert s["reference_runs"] == 4 and (s["runs_chosen_on"], s["runs_held_out"]) == (3, 1)
    # every run is one of: the 4 references, one cached run per (point, run), one fewer-steps run per (steps, run)
    cached = sum(p["runs"] for p in data["points"])
    assert data["pipeline_runs"] == s["pipeline_runs"] >= 4 + cached
    if data["chosen"]:
        assert data["chosen"]["runs"] == 4 and data["evidence"]["held_out"]["runs"] == 1


def test_budget_caps_the_pipeline_runs(tiny):
    args = ["tune", "--profile", str(tiny), "-p", "a cat", "-p", "a dog", *GRID, "--dry-run", "--repeats", "1"]
    r = runner.invoke(app, [*args, "--budget", "3"])
    assert r.exit_code == 1 and "--budget 3 is too small" in r.output
    r = runner.invoke(app, [*args, "--budget", "5", "--min-psnr", "1", "--json"])
    data = json.loads(r.stdout)
    assert data["pipeline_runs"] <= 5 and data["search"]["budget"] == 5


def test_calibrate_tune_reuses_the_calibration_outputs(tiny_pipeline_dir, tmp_path, monkeypatch):
    from diffusers import StableDiffusion3Pipeline

    calls = []
    original = StableDiffusion3Pipeline.__call__

    @functools.wraps(original)  # the call-argument checks read its signature
    def counted(self, *a, **kw):
        calls.append(kw.get("num_inference_steps"))
        return original(self, *a, **kw)

    monkeypatch.setattr(StableDiffusion3Pipeline, "__call__", counted)
    out = tmp_path / "tuned.yaml"
    r = runner.invoke(app, ["calibrate", "--model", str(tiny_pipeline_dir("sd3")), "--out", str(out), "-p", "a cat",
                            "-p", "a dog", "-s", "0", "-s", "1", *CALL, "--tune", "psnr=1", "--json"])
    assert r.exit_code == 0, r.output
    tune = json.loads(r.stdout)["tune"]
    assert tune["search"]["reference_runs"] == 0
    # 4 calibration runs + the search's runs + 3 timing repeats × (uncached, cached, fewer steps); nothing else
    assert len(calls) == 4 + tune["pipeline_runs"] + 9
    tuned = yaml.safe_load(out.read_text())["defaults"]
    assert tuned["tuned"]["target"] == {"min_psnr": 1.0}
    assert tuned["threshold"] == tune["chosen"]["threshold"]


def test_calibration_outputs_equal_the_uncached_runs(tiny_pipeline_dir):
    """Why calibrate --tune may use them as the reference: recording changes no output."""
    from magcache_cli.runner.calibrate import calibrate
    from magcache_cli.runner.outputs import as_array
    from magcache_cli.runner.run import run
    from magcache_cli.testing.helpers import load_tiny

    pipe = load_tiny(tiny_pipeline_dir("sd3"))
    kw = {"num_inference_steps": STEPS, "height": 32, "width": 32, "guidance_scale": 5.0, "max_sequence_length": 12}
    cal = calibrate(pipe, ["a cat"], [0, 1], kw, model_id="tiny", keep_outputs=True)
    plain = run(pipe, ["a cat"], [0, 1], kw, profile=None, no_cache=True)
    for a, b in zip(cal.outputs, plain.outputs):
        assert np.array_equal(as_array(a), as_array(b))


def test_calibrate_speedup_writes_the_predicted_choice(tiny, tiny_pipeline_dir, tmp_path):
    from magcache_cli.profile.io import load_profile
    from magcache_cli.profile.speedup import choose

    out = tmp_path / "fast.yaml"
    r = runner.invoke(app, ["calibrate", "--model", str(tiny_pipeline_dir("sd3")), "--out", str(out), "-p", "a cat",
                            "-p", "a dog", *CALL, "--speedup", "1.5", "--json"])
    assert r.exit_code == 0, r.output
    d = load_profile(out).defaults
    expected = choose(load_profile(tiny), STEPS, 1.5).settings  # same curves as the module's calibration
    assert (d.threshold, d.max_skip_steps, d.retention_ratio, d.forecast) == (
        expected.threshold, expected.max_skip_steps, expected.retention_ratio, expected.forecast)
    assert json.loads(r.stdout)["speedup"]["passes"] * 1.5 <= STEPS


def test_apply_with_a_speedup_skips_what_was_predicted(tiny, tiny_pipeline_dir):
    import magcache_cli as magcache
    from magcache_cli.testing.helpers import load_tiny

    pipe = load_tiny(tiny_pipeline_dir("sd3"))
    with magcache.apply(pipe, str(tiny), speedup=1.5) as cache:
        pipe("a cat", num_inference_steps=STEPS, height=32, width=32, guidance_scale=5.0, max_sequence_length=12)
    choice = cache.speedup_choice
    assert cache.settings == choice.settings and choice.prediction.passes * 1.5 <= STEPS
    assert cache.report.computed_calls == choice.prediction.passes  # batched guidance: one pass per computed step
