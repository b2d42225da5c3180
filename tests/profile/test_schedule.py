"""`magcache schedule`: what a profile would skip, with no model loaded, checked against a hand simulation.

The hand-made profile below has 8 steps and sequential guidance with two branches:

    cond   = [1, 1, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    uncond = [1, 1, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98]

With threshold E = 0.1, max skips K = 2, retention R = 0.25 (round(0.25 * 8) = 2 steps always computed):

cond, alone:   step 2: acc_ratio 0.95, err 0.05 <= 0.1 -> skip
               step 3: acc_ratio 0.9025, err 0.05 + 0.0975 = 0.1475 > 0.1 -> compute, reset
               steps 4-7 repeat the pattern: skip, compute, skip, compute      => ██░█░█░█ (5 computed)
uncond, alone: step 2: err 0.02 -> skip; step 3: acc 0.9604, err 0.0596, 2 skips <= K -> skip
               step 4: 3 consecutive > K -> compute; steps 5, 6 skip; step 7 computes => ██░░█░░█ (4 computed)

joint policy: a step is skipped only when both may skip: steps 2, 4, 6 => both ██░█░█░█,
              passes 5 + 5 = 10 of 16 (1.60x fewer)
independent:  passes 5 + 4 = 9 of 16 (1.78x fewer)

threshold 0.01: the first error (0.02 for uncond, 0.05 for cond) already exceeds it: nothing skipped, 16/16.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from magcache_cli.cli.app import app
from magcache_cli.core.rule import SkipSettings
from magcache_cli.profile.io import load_profile
from magcache_cli.profile.plan import predict

PROFILE = """\
schema_version: 1
model:
  id: hand/made
  pipeline_class: FluxPipeline
  transformer_class: FluxTransformer2DModel
calibration:
  steps: 8
  guidance_mode: {mode}
branches:
  {first}:
    ratios: [1.0, 1.0, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
  {second}:
    ratios: [1.0, 1.0, 0.98, 0.98, 0.98, 0.98, 0.98, 0.98]
defaults:
  threshold: 0.1
  max_skip_steps: 2
  retention_ratio: 0.25
"""

runner = CliRunner()


@pytest.fixture
def seq_profile(tmp_path):
    p = tmp_path / "seq.yaml"
    p.write_text(PROFILE.format(mode="sequential", first="cond", second="uncond"))
    return p


@pytest.fixture
def batched_profile(tmp_path):
    p = tmp_path / "batched.yaml"
    p.write_text(PROFILE.format(mode="batched", first="cond", second="uncond"))
    return p


def invoke(*args):
    return runner.invoke(app, ["schedule", *map(str, args)])


def row(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if f" {label} " in line)


def test_joint_schedule_matches_hand_simulation(seq_profile):
    r = invoke("--profile", seq_profile)
    assert r.exit_code == 0, r.output
    assert "██░█░█░█" in row(r.output, "cond")
    assert "██░█░█░█" in row(r.output, "uncond")
    assert "Predicted passes: 10 of 16 per run (1.60× fewer transformer passes)" in r.output
    assert "resampled" not in r.output


def test_independent_policy_lets_each_branch_skip_alone(seq_profile):
    r = invoke("--profile", seq_profile, "--branch-policy", "independent")
    assert r.exit_code == 0, r.output
    assert "██░█░█░█" in row(r.output, "cond")
    assert "██░░█░░█" in row(r.output, "uncond")
    assert "Predicted passes: 9 of 16 per run (1.78× fewer" in r.output


def test_batched_guidance_is_always_joint_and_one_pass_per_step(batched_profile):
    r = invoke("--profile", batched_profile, "--branch-policy", "independent", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["settings"]["branch_policy"] == "joint"
    assert (data["passes"], data["total_passes"]) == (5, 8)
    assert data["branches"]["uncond"]["skipped"] == [2, 4, 6]


def test_json_carries_settings_branches_and_speedup(seq_profile):
    r = invoke("--profile", seq_profile, "--json", "--threshold", "0.1", "--max-skip-steps", "2")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["steps"] == 8
    assert data["settings"] == {"threshold": 0.1, "max_skip_steps": 2, "retention_ratio": 0.25, "forecast": 0.0,
                                "branch_policy": "joint"}
    assert (data["passes"], data["total_passes"], data["speedup"]) == (10, 16, 1.6)
    assert data["branches"]["cond"]["computed"] == [0, 1, 3, 5, 7]
    assert data["branches"]["cond"]["skipped"] == [2, 4, 6]


def test_sweep_table_over_thresholds(seq_profile):
    r = invoke("--profile", seq_profile, "--sweep", "--thresholds", "0.01,0.1")
    assert r.exit_code == 0, r.output
    assert "Thresholds at 8 steps" in r.output
    lines = [ln for ln in r.output.splitlines() if "16/16" in ln or "10/16" in ln]
    assert len(lines) == 2 and "0.01" in lines[0] and "0.1" in lines[1]
    r = invoke("--profile", seq_profile, "--sweep", "--thresholds", "0.01,0.1", "--json")
    sweep = json.loads(r.stdout)["sweep"]
    assert [(s["threshold"], s["passes"]) for s in sweep] == [(0.01, 16), (0.1, 10)]


def test_other_step_counts_resample_the_curves(seq_profile):
    r = invoke("--profile", seq_profile, "--steps", "15")
    assert r.exit_code == 0, r.output
    assert "resampled to 15" in r.output
    assert "of 30 per run" in r.output


def test_predict_agrees_with_the_cli(seq_profile):
    prof = load_profile(seq_profile)
    pred = predict(prof, 8, SkipSettings(0.1, 2, 0.25), "independent")
    assert pred.passes == 9 and pred.total == 16
    assert pred.flags["uncond"] == [True, True, False, False, True, False, False, True]


@pytest.mark.parametrize("args, message", [
    (["--branch-policy", "sometimes"], "unknown --branch-policy"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--threshold", "-1"], "threshold must be a finite number >= 0"),
    (["--sweep", "--thresholds", "a,b"], "not a comma-separated list"),
])
def test_bad_input_exits_1_with_a_message(seq_profile, args, message):
    r = invoke("--profile", seq_profile, *args)
    assert r.exit_code == 1
    assert "Error:" in r.output and message in r.output
    assert "Traceback" not in r.output


def test_missing_profile_exits_1(tmp_path):
    r = invoke("--profile", tmp_path / "nope.yaml")
    assert r.exit_code == 1
    assert "not found" in r.output
