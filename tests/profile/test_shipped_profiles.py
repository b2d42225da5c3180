"""Every file in profiles/ is a valid profile; the curves are the published numbers, reproducible by the
build script and by `magcache profile import`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from magcache_cli.profile.io import load_profile
from magcache_cli.testing.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted([*ROOT.glob("profiles/*.yaml"), *ROOT.glob("profiles/*.yml")])
REFERENCE = ROOT.parent / "shared" / "reference-ratios.json"
needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason=f"{REFERENCE} not available")
runner = CliRunner()




def test_profiles_are_shipped():
    names = {p.stem for p in PROFILES}
    assert {"flux1-dev", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "hunyuanvideo-720p", "qwen-image"} <= names


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_loads_and_says_where_it_comes_from(path):
    prof = load_profile(path)
    assert prof.source and "not re-measured here" in prof.source
    assert prof.calibration.created is None and prof.model.stack == []


def test_every_profile_passes_validate():
    r = invoke("profile", "validate", *PROFILES)
    assert r.exit_code == 0, r.output
    assert r.output.count("ok") == len(PROFILES) and "invalid" not in r.output


def _entry(curve_id: str) -> dict:
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return next(c for c in data["curves"] if c["id"] == curve_id)


@needs_reference
@pytest.mark.parametrize("curve_id", ["flux1-dev", "wan2.1-t2v-1.3b"])
def test_curves_and_defaults_equal_the_published_numbers(curve_id):
    entry = _entry(curve_id)
    data = yaml.safe_load((ROOT / "profiles" / f"{curve_id}.yaml").read_text(encoding="utf-8"))
    assert list(data["branches"]) == list(entry["branches"])
    for label, curve in entry["branches"].items():
        assert data["branches"][label]["ratios"] == curve  # exact: the JSON holds 5-decimal values
    for key in ("threshold", "max_skip_steps", "retention_ratio"):
        assert data["defaults"][key] == entry["defaults"][key]
    assert data["calibration"]["steps"] == entry["steps"]
    assert entry["source"]["commit"] in data["source"] and entry["source"]["path"] in data["source"]


@needs_reference
def test_build_script_reproduces_the_files_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("build_shipped_profiles", ROOT / "scripts" / "build_shipped_profiles.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(REFERENCE), "--out-dir", str(tmp_path)]) == 0
    built = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in built] == [p.name for p in PROFILES]
    for p in built:
        assert p.read_bytes() == (ROOT / "profiles" / p.name).read_bytes(), p.name


@pytest.mark.parametrize("name", ["flux1-dev", "wan2.1-t2v-1.3b"])
def test_profile_import_produces_the_shipped_file(name):
    path = ROOT / "profiles" / f"{name}.yaml"
    prof = load_profile(path)
    curves = [b.ratios for b in prof.branches.values()]
    # The list as the MagCache scripts print it: one curve, or cond/uncond interleaved per call.
    values = [v for step in zip(*curves) for v in step]
    d, m = prof.defaults, prof.model
    args = ["profile", "import", "--ratios", ", ".join(map(repr, values)), "--model", m.id,
            "--pipeline-class", m.pipeline_class, "--transformer-class", m.transformer_class,
            "--steps", prof.calibration.steps, "--guidance-mode", prof.calibration.guidance_mode,
            "--threshold", d.threshold, "--max-skip-steps", d.max_skip_steps, "--retention-ratio", d.retention_ratio,
            "--source", prof.source]
    if len(curves) == 2:
        args.append("--interleaved")
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert r.stdout == path.read_text(encoding="utf-8")
