"""`magcache profile list/diff/plot/import/export` and profile names, through CliRunner, with numbers checked by hand."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from magcache_cli.core.charts import ascii_chart
from magcache_cli.errors import ProfileError, UsageError
from magcache_cli.profile.convert import profile_from_curves, split_ratios
from magcache_cli.profile.io import load_profile, save_profile
from magcache_cli.profile.resolve import resolve_profile, shipped_dir
from magcache_cli.testing.helpers import invoke

runner = CliRunner()




def make(path, curves, model="org/model-a", threshold=0.1, k=3, retention=0.0, mode=None):
    prof = profile_from_curves(curves, model=model, pipeline_class="FluxPipeline",
                               transformer_class="FluxTransformer2DModel", guidance_mode=mode, threshold=threshold,
                               max_skip_steps=k, retention_ratio=retention, source="hand-made for a test")
    return save_profile(prof, path)


# --------------------------------------------------------------------------------------- list, resolution


def test_list_shows_shipped_profiles():
    r = invoke("profile", "list")
    assert r.exit_code == 0, r.output
    assert "flux1-dev" in r.output and "wan2.1-t2v-1.3b" in r.output
    assert "black-forest-labs/FLUX.1-dev" in r.output and "Zehong-Ma/MagCache@df81cb1" in r.output
    assert "0.24 / 5 / 0.1" in r.output  # FLUX.1-dev's recommended defaults (E024K5R01)
    data = json.loads(invoke("profile", "list", "--json").stdout)
    rows = {row["name"]: row for row in data["profiles"]}
    flux = rows["flux1-dev"]
    assert flux["shipped"] and flux["steps"] == 28 and flux["branches"] == ["main"]
    assert flux["defaults"] == {"threshold": 0.24, "max_skip_steps": 5, "retention_ratio": 0.1}
    assert "not re-measured here" in flux["source"]
    assert rows["wan2.1-t2v-1.3b"]["branches"] == ["cond", "uncond"]


def test_list_includes_profile_path_dirs_and_flags_invalid_files(tmp_path, monkeypatch):
    make(tmp_path / "team-flux.yaml", {"main": [1.0, 1.1]})
    (tmp_path / "broken.yaml").write_text("schema_version: 1\nmodel: {}\n")
    monkeypatch.setenv("MAGCACHE_PROFILE_PATH", str(tmp_path))
    data = json.loads(invoke("profile", "list", "--json").stdout)
    rows = {row["name"]: row for row in data["profiles"]}
    assert rows["team-flux"]["model"] == "org/model-a" and not rows["team-flux"]["shipped"]
    assert "calibration: required key is missing" in rows["broken"]["error"]
    r = invoke("profile", "list")
    assert r.exit_code == 0 and "team-flux" in r.output and "invalid" in r.output


def test_resolve_by_name_by_path_and_unknown(tmp_path, monkeypatch):
    assert resolve_profile("flux1-dev") == shipped_dir() / "flux1-dev.yaml"
    own = make(tmp_path / "mine.yaml", {"main": [1.0, 1.1]})
    assert resolve_profile(str(own)) == own
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flux1-dev").write_text("an existing path wins over a name")
    assert resolve_profile("flux1-dev").resolve() == (tmp_path / "flux1-dev").resolve()
    with pytest.raises(ProfileError) as e:
        resolve_profile("no-such-profile")
    assert "no-such-profile" in e.value.message and "flux1-dev" in e.value.hint
    assert "magcache profile list" in e.value.hint
    with pytest.raises(ProfileError, match="profile file not found"):
        resolve_profile("missing/dir/p.yaml")


def test_team_folder_shadows_a_shipped_name(tmp_path, monkeypatch):
    team = make(tmp_path / "flux1-dev.yaml", {"main": [1.0, 1.1]})
    monkeypatch.setenv("MAGCACHE_PROFILE_PATH", f"{tmp_path / 'absent'}:{tmp_path}")
    assert resolve_profile("flux1-dev") == team


def test_show_and_validate_take_names(tmp_path):
    r = invoke("profile", "show", "flux1-dev")
    assert r.exit_code == 0 and "black-forest-labs/FLUX.1-dev" in r.output
    own = make(tmp_path / "own.yaml", {"main": [1.0, 1.1]})
    r = invoke("profile", "validate", "flux1-dev", "qwen-image", own)
    assert r.exit_code == 0 and r.output.count("ok") == 3
    r = invoke("profile", "show", "no-such-profile")
    assert r.exit_code == 1 and "Error:" in r.output and "flux1-dev" in r.output and "Traceback" not in r.output
    r = invoke("profile", "validate", "flux1-dev", "no-such-profile")
    assert r.exit_code == 1 and "1 of 2 profile(s) invalid" in r.output


# --------------------------------------------------------------------------------------------------- diff


@pytest.fixture
def pair(tmp_path):
    # B differs from A by +0.05 at step 3 only: max |Δ| 0.05 at step 3, mean 0.05 / 5 = 0.01.
    a = make(tmp_path / "a.yaml", {"main": [1.0, 1.0, 1.0, 1.0, 1.0]}, threshold=0.1, k=3)
    b = make(tmp_path / "b.yaml", {"main": [1.0, 1.0, 1.0, 1.05, 1.0]}, model="org/model-b", threshold=0.04, k=5)
    return a, b


def test_diff_numbers_by_hand(pair):
    a, b = pair
    r = invoke("profile", "diff", a, b, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    curve = d["curves"]["main"]
    assert curve["max_abs_diff"] == 0.05 and curve["max_at_step"] == 3 and curve["mean_abs_diff"] == 0.01
    assert curve["most_different"] == [{"step": 3, "a": 1.0, "b": 1.05, "abs_diff": 0.05}]
    changed = {m["field"]: (m["a"], m["b"]) for m in d["metadata"]}
    assert changed == {"model.id": ("org/model-a", "org/model-b"), "defaults.threshold": (0.1, 0.04),
                       "defaults.max_skip_steps": (3, 5)}
    at_a, at_b = d["schedules"]
    # A's defaults (threshold 0.1, K 3, no retention): step 0 computes (nothing cached), 1-3 skip (B's error at
    # step 3 is 0.05 <= 0.1), step 4 is the 4th in a row > K: computed. Same schedule for both curves.
    assert at_a["defaults_of"] == "a"
    assert at_a["a"]["branches"]["main"]["timeline"] == at_a["b"]["branches"]["main"]["timeline"] == "█░░░█"
    assert at_a["differ_at"] == {"main": []}
    # B's defaults (threshold 0.04, K 5): A skips 1-4; B's error 0.05 > 0.04 at step 3 forces a compute there.
    assert at_b["a"]["branches"]["main"]["timeline"] == "█░░░░" and at_b["b"]["branches"]["main"]["timeline"] == "█░░█░"
    assert at_b["a"]["passes"] == 1 and at_b["b"]["passes"] == 2 and at_b["b"]["total_passes"] == 5
    assert at_b["differ_at"] == {"main": [3]}


def test_diff_text(pair):
    a, b = pair
    r = invoke("profile", "diff", a, b)
    assert r.exit_code == 0, r.output
    assert "0.05000" in r.output and "0.01000" in r.output and "3: 1.00000 vs 1.05000" in r.output
    assert "org/model-b" in r.output and "defaults.threshold" in r.output
    assert "█░░░█" in r.output and "█░░█░" in r.output and "schedules differ at step(s) 3" in r.output
    assert "transformer passes per run: A 1 / 5, B 2 / 5" in r.output
    assert "same schedule for A and B" in r.output


def test_diff_of_identical_and_of_different_branches(tmp_path, pair):
    a, _ = pair
    r = invoke("profile", "diff", a, a)
    assert r.exit_code == 0 and "Metadata: identical" in r.output and "A's and B's (same)" in r.output
    c = make(tmp_path / "c.yaml", {"cond": [1.0, 1.0, 1.0, 1.0, 1.0], "uncond": [1.0] * 5})
    r = invoke("profile", "diff", a, c)
    assert r.exit_code == 0
    assert "Branches only in A: main" in r.output and "Branches only in B: cond, uncond" in r.output
    d = json.loads(invoke("profile", "diff", a, c, "--json").stdout)
    assert d["curves"] == {} and d["only_in_a"] == ["main"] and d["only_in_b"] == ["cond", "uncond"]


def test_diff_with_a_shipped_name_and_resampling(tmp_path):
    short = make(tmp_path / "short.yaml", {"main": [1.0, 1.2]})
    d = json.loads(invoke("profile", "diff", short, "flux1-dev", "--json").stdout)
    # flux1-dev (28 steps) on a 2-step grid reads its steps 0 and 27: 1.0 and 0.89062.
    assert d["curves"]["main"]["resampled"] and d["curves"]["main"]["max_abs_diff"] == round(1.2 - 0.89062, 6)


# ------------------------------------------------------------------------------------------------- import


BASE = ["--model", "org/m", "--pipeline-class", "WanPipeline", "--transformer-class", "WanTransformer3DModel"]


def imported(*args):
    r = invoke("profile", "import", *BASE, *args)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.stdout)


def test_import_deinterleaves_cond_first():
    # [c0, u0, c1, u1, c2, u2] with the two step-0 pads present.
    data = imported("--ratios", "1.0, 1.0, 1.2, 1.3, 1.1, 1.15", "--interleaved")
    assert data["branches"] == {"cond": {"ratios": [1.0, 1.2, 1.1]}, "uncond": {"ratios": [1.0, 1.3, 1.15]}}
    assert data["calibration"]["steps"] == 3 and data["calibration"]["guidance_mode"] == "sequential"


def test_import_uncond_first_and_batched_order():
    data = imported("--ratios", "1.0 1.0 1.2 1.3 1.1 1.15", "--interleaved", "--uncond-first")
    assert data["branches"]["cond"]["ratios"] == [1.0, 1.3, 1.15]
    assert data["branches"]["uncond"]["ratios"] == [1.0, 1.2, 1.1]
    data = imported("--ratios", "1.0 1.0 1.2 1.3", "--interleaved", "--guidance-mode", "batched")
    assert list(data["branches"]) == ["uncond", "cond"]  # batch order of cat([negative, positive])


def test_import_pads():
    assert imported("--ratios", "1.2 1.3 1.1 1.15", "--interleaved", "--pad", "add")["branches"]["cond"]["ratios"] == [1.0, 1.2, 1.1]
    # auto with --steps: 2 values per branch for 3 steps means the pads are missing
    data = imported("--ratios", "1.2 1.3 1.1 1.15", "--interleaved", "--steps", 3)
    assert data["branches"]["uncond"]["ratios"] == [1.0, 1.3, 1.15]
    # auto without --steps: a single list that does not start with 1.0 gets one pad
    data = imported("--ratios", "[1.21094, 1.11719]")
    assert data["branches"] == {"main": {"ratios": [1.0, 1.21094, 1.11719]}}
    assert data["calibration"]["guidance_mode"] == "none"
    assert split_ratios([1.0, 1.2], pad="present") == ({"main": [1.0, 1.2]}, 0)


def test_import_metadata_and_defaults():
    data = imported("--ratios", "1.0 0.9", "--threshold", 0.12, "--max-skip-steps", 4, "--retention-ratio", 0.25,
                    "--source", "from a README", "--scheduler-class", "UniPCMultistepScheduler")
    assert data["defaults"]["threshold"] == 0.12 and data["defaults"]["max_skip_steps"] == 4
    assert data["defaults"]["retention_ratio"] == 0.25 and data["source"] == "from a README"
    assert data["scheduler"]["class"] == "UniPCMultistepScheduler" and data["model"]["stack"] == []
    assert data["calibration"]["created"] is None


@pytest.mark.parametrize("args, message", [
    (["--ratios", "1.0 1.0 1.2", "--interleaved"], "even number of values"),
    (["--ratios", "1.0 1.2 1.1", "--steps", 5], "do not fit --steps 5"),
    (["--ratios", "1.2 1.1", "--pad", "present"], "does not start with the 1.0 pad"),
    (["--ratios", "1.0 -1.2"], "value 1 must be a finite number > 0"),
    (["--ratios", "1.0 1.2", "--uncond-first"], "--uncond-first only applies"),
    (["--ratios", "1.0 1.0 1.2 1.3", "--interleaved", "--guidance-mode", "none"], "needs guidance"),
    (["--ratios", "1.0 1.2", "--guidance-mode", "sequential"], "one curve per branch"),
    (["--ratios", "1.0 1.2", "--threshold", -1], "defaults.threshold"),
])
def test_import_errors(args, message):
    r = invoke("profile", "import", *BASE, *args)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_import_needs_metadata_and_one_source():
    r = invoke("profile", "import", "--ratios", "1.0 1.1")
    assert r.exit_code == 1 and "missing --model, --pipeline-class, --transformer-class" in r.output
    r = invoke("profile", "import", *BASE)
    assert r.exit_code == 1 and "--ratios or --ratios-file" in r.output


def test_import_from_file_writes_and_refuses_overwrite(tmp_path):
    (tmp_path / "r.json").write_text("[1.0, 1.0, 1.2, 1.3]")
    (tmp_path / "r.txt").write_text("1.0 1.0\n1.2\t1.3\n")
    out = tmp_path / "p.yaml"
    r = invoke("profile", "import", *BASE, "--ratios-file", tmp_path / "r.json", "--interleaved", "--out", out)
    assert r.exit_code == 0 and f"Wrote {out}" in r.output.replace("\n", "")
    prof = load_profile(out)
    assert prof.branches["cond"].ratios == [1.0, 1.2] and prof.branches["uncond"].ratios == [1.0, 1.3]
    before = out.read_bytes()
    r = invoke("profile", "import", *BASE, "--ratios-file", tmp_path / "r.txt", "--interleaved", "--out", out)
    assert r.exit_code == 1 and "--force" in r.output and out.read_bytes() == before
    r = invoke("profile", "import", *BASE, "--ratios-file", tmp_path / "r.txt", "--interleaved", "--out", out,
               "--force", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["branches"]["uncond"] == [1.0, 1.3]


# ------------------------------------------------------------------------------------------------- export


def _exec(code: str):
    pytest.importorskip("diffusers")
    from diffusers import MagCacheConfig

    namespace: dict = {}
    exec(compile(code, "<snippet>", "exec"), namespace)
    assert isinstance(namespace["config"], MagCacheConfig)
    return namespace["config"]


def test_export_diffusers_single_curve():
    r = invoke("profile", "export", "flux1-dev", "--format", "diffusers")
    assert r.exit_code == 0, r.output
    code = r.stdout
    assert "from diffusers import MagCacheConfig" in code and "1.21094" in code
    for line in ("threshold=0.24,", "max_skip_steps=5,", "retention_ratio=0.1,", "num_inference_steps=28,"):
        assert line in code
    assert "per-branch" not in code and "not re-measured here" in code
    config = _exec(code)
    assert config.threshold == 0.24 and config.max_skip_steps == 5 and len(config.mag_ratios) == 28
    assert float(config.mag_ratios[1]) == pytest.approx(1.21094)


def test_export_diffusers_per_branch(tmp_path):
    p = make(tmp_path / "two.yaml", {"cond": [1.0, 1.1, 1.0], "uncond": [1.0, 1.15, 1.0]}, threshold=0.2, k=2)
    code = invoke("profile", "export", p).stdout
    assert "one curve for every pass" in code and "Using 'cond'" in code
    assert "uncond vs cond: max |difference| 0.05 at step 1" in code and "MAG_RATIOS_BY_BRANCH" in code
    config = _exec(code)
    assert [round(float(x), 5) for x in config.mag_ratios] == [1.0, 1.1, 1.0]
    config = _exec(invoke("profile", "export", p, "--branch", "uncond", "--steps", 5).stdout)
    # diffusers resamples to 5 steps by nearest index: round(i * 2 / 4) = 0, 0 (half to even), 1, 2 (1.5 -> 2), 2
    assert [round(float(x), 5) for x in config.mag_ratios] == [1.0, 1.0, 1.15, 1.0, 1.0]
    r = invoke("profile", "export", p, "--branch", "main")
    assert r.exit_code == 1 and "cond, uncond" in r.output


def test_export_identical_branches_and_json():
    code = invoke("profile", "export", "qwen-image").stdout
    assert "uncond vs cond: identical" in code and "MAG_RATIOS_BY_BRANCH" not in code
    data = json.loads(invoke("profile", "export", "wan2.1-t2v-1.3b", "--format", "json").stdout)
    assert data["steps"] == 50 and set(data["branches"]) == {"cond", "uncond"}
    assert data["branches"]["cond"][:2] == [1.0, 1.0124] and data["threshold"] == 0.12
    r = invoke("profile", "export", "flux1-dev", "--format", "onnx")
    assert r.exit_code == 1 and "diffusers, json" in r.output


def test_export_says_diffusers_has_no_forecast():
    import dataclasses

    from magcache_cli.api import load_profile
    from magcache_cli.profile.convert import export_diffusers, export_json

    p = load_profile("flux1-dev")
    assert "forecast" not in export_diffusers(p, "flux1-dev") and export_json(p, "flux1-dev")["forecast"] == 0.0
    p = dataclasses.replace(p, defaults=dataclasses.replace(p.defaults, forecast=0.5))
    assert "forecast 0.5; diffusers' hook has no forecast" in export_diffusers(p, "x")
    assert export_json(p, "x")["forecast"] == 0.5


# --------------------------------------------------------------------------------------------------- plot


def test_ascii_chart_by_hand():
    # hi 1.1 -> row 0, 1.0 -> row 1 (the ┈ line), lo 0.9 -> row 2; one column per step.
    lines = ascii_chart({"main": [1.0, 1.1, 0.9]}, height=3)
    assert lines[:3] == [" 1.1000 ┤ ● ", " 1.0000 ┤●┈┈", " 0.9000 ┤  ●"]
    assert "● main" in lines[-1] and "┈ 1.0" in lines[-1]
    # a ±0.1 band around 1.0 at step 1 fills that column; two branches on one cell show '*'
    lines = ascii_chart({"cond": [1.0, 1.0, 1.0], "uncond": [1.0, 1.0, 0.95]}, {"cond": [0.0, 0.1, 0.0]}, height=5)
    assert [line[10] for line in lines[:5]] == ["·", "·", "*", "·", "·"]
    assert "× uncond" in lines[-1] and "* several" in lines[-1] and "· ±ratio_std" in lines[-1]


def test_plot_terminal():
    r = invoke("profile", "plot", "wan2.1-t2v-1.3b", "--height", 6)
    assert r.exit_code == 0, r.output
    assert "● cond" in r.output and "× uncond" in r.output and "step 49" in r.output and "1.0000 ┤" in r.output


def test_plot_png(tmp_path):
    pytest.importorskip("matplotlib")
    p = make(tmp_path / "p.yaml", {"main": [1.0, 1.1, 0.95]})
    prof = load_profile(p)
    prof.branches["main"].ratio_std = [0.0, 0.02, 0.01]
    save_profile(prof, p, overwrite=True)
    out = tmp_path / "sub" / "curve.png"
    r = invoke("profile", "plot", p, "--output", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = invoke("profile", "plot", "flux1-dev", "--output", tmp_path / "c.png")
    assert r.exit_code == 1 and "pip install 'magcache-cli[plot]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c.png").exists()


def test_split_ratios_library_errors_are_usage_errors():
    # the library names its parameter (issue 8); the CLI turns `pad` into --pad (tests/cli/test_errors.py)
    with pytest.raises(UsageError, match="unknown `pad`"):
        split_ratios([1.0], pad="sometimes")


def test_diff_two_expert_profiles(tmp_path):
    # Wan 2.2-style: `transformer` runs steps 0-2, `transformer_2` steps 3-5; each window is simulated alone.
    doc = {"schema_version": 1,
           "model": {"id": "org/wan22", "pipeline_class": "WanPipeline", "transformer_class": "WanTransformer3DModel"},
           "calibration": {"steps": 6, "guidance_mode": "none"},
           "branches": {"transformer.main": {"ratios": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "active": [0, 3]},
                        "transformer_2.main": {"ratios": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "active": [3, 6]}},
           "defaults": {"threshold": 0.1, "max_skip_steps": 3, "retention_ratio": 0.0}}
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump(doc))
    d = json.loads(invoke("profile", "diff", a, a, "--json").stdout)
    sched = d["schedules"][0]["a"]["branches"]
    # each expert computes its first step (nothing cached yet) and skips the next two
    assert sched["transformer.main"]["timeline"][:3] == "█░░" and sched["transformer_2.main"]["timeline"][3:] == "█░░"
