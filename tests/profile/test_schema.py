"""Profile schema v1: strict validation with field paths, canonical text, atomic save."""

from __future__ import annotations

import copy
import hashlib
import json
import math

import pytest
import yaml

import magcache_cli.profile.io as profile_mod
from magcache_cli.errors import ProfileError
from magcache_cli.profile.io import dump_profile, load_profile, save_profile
from magcache_cli.profile.schema import (
    BranchCurves,
    Calibration,
    ModelInfo,
    Profile,
    config_fingerprint,
    profile_to_dict,
)
from magcache_cli.profile.validate import profile_from_dict


def valid() -> dict:
    return {
        "schema_version": 1,
        "model": {
            "id": "black-forest-labs/FLUX.1-dev",
            "revision": None,
            "pipeline_class": "FluxPipeline",
            "transformer_class": "FluxTransformer2DModel",
            "config_fingerprint": "3f2a9c0d1e2b4a5c",
            "stack": ["transformer_blocks", "single_transformer_blocks"],
        },
        "scheduler": {
            "class": "FlowMatchEulerDiscreteScheduler",
            "config": {"shift": 3.0, "use_dynamic_shifting": True},
        },
        "calibration": {
            "steps": 3,
            "guidance_mode": "sequential",
            "guidance_scale": 3.5,
            "height": 1024,
            "width": 1024,
            "num_frames": None,
            "negative_prompt": None,
            "call_args": {"true_cfg_scale": 4.0},
            "prompts": ["a cat playing chess", "yes: no, maybe"],
            "seeds": [0, 1],
            "dtype": "bfloat16",
            "device": "NVIDIA H200",
            "created": "2026-11-26T12:00:00Z",
            "versions": {"magcache": "0.1.0", "diffusers": "0.42", "torch": "2.13.0"},
        },
        "source": None,
        "branches": {
            "cond": {"ratios": [1.0, 1.2109412, 1.11719], "ratio_std": [0.0, 0.05, 0.04], "cos_dist": [0.0, 0.1, 0.08]},
            "uncond": {"ratios": [1.0, 1.2, 1.1], "run_std": [0.0, 0.001, 0.002]},
        },
        "defaults": {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2, "tuned": None},
    }


def error_for(data: dict) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        profile_from_dict(data)
    return info.value


# --------------------------------------------------------------------------------------------- round trip


def test_round_trip_is_byte_identical(tmp_path):
    first = save_profile(profile_from_dict(valid()), tmp_path / "a.yaml")
    second = save_profile(load_profile(first), tmp_path / "b.yaml")
    assert first.read_bytes() == second.read_bytes()
    third = save_profile(load_profile(second), tmp_path / "b.yaml", overwrite=True)
    assert third.read_bytes() == first.read_bytes()


def test_canonical_text_layout():
    data = valid()
    data["calibration"]["steps"] = 60
    curve = [1.0] + [1.0 + i / 1000 + 1e-7 for i in range(1, 60)]
    data["branches"] = {"uncond": {"ratios": curve}, "cond": {"ratios": curve, "cos_dist": [0.123456789] * 60}}
    text = dump_profile(profile_from_dict(data))
    lines = text.splitlines()
    assert lines[0].startswith("# magcache profile")
    # each curve on one line, rounded to 5 decimals, never wrapped
    ratio_lines = [line for line in lines if line.strip().startswith("ratios:")]
    assert len(ratio_lines) == 2
    assert ratio_lines[0].strip().startswith("ratios: [1.0, 1.001, 1.002,")
    assert "  cos_dist: [0.12346, 0.12346," in text
    assert "stack: [transformer_blocks, single_transformer_blocks]" in text
    # schema key order, branch order as given (uncond first here)
    keys = [line.split(":")[0] for line in lines if line and not line[0].isspace() and not line.startswith("#")]
    assert keys == ["schema_version", "model", "scheduler", "calibration", "source", "branches", "defaults"]
    assert text.index("  uncond:") < text.index("  cond:")
    # plain strings unquoted, strings YAML would misread quoted, and it reads back with safe_load
    assert "id: black-forest-labs/FLUX.1-dev" in text
    loaded = yaml.safe_load(text)
    assert loaded["calibration"]["created"] == "2026-11-26T12:00:00Z"
    assert loaded["calibration"]["versions"]["diffusers"] == "0.42"
    assert loaded["branches"]["cond"]["ratios"][1] == 1.001


def test_to_dict_leaves_out_absent_curves_and_keeps_labels():
    d = profile_to_dict(profile_from_dict(valid()))
    assert list(d["branches"]) == ["cond", "uncond"]
    assert set(d["branches"]["uncond"]) == {"ratios", "run_std"}
    assert d["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"


def test_optional_keys_may_be_omitted():
    data = valid()
    for key in ("revision", "config_fingerprint", "stack"):
        del data["model"][key]
    del data["scheduler"]
    data["calibration"] = {"steps": 3, "guidance_mode": "none"}
    del data["defaults"]["tuned"]
    p = profile_from_dict(data)
    assert p.model.stack == [] and p.scheduler.config == {} and p.calibration.prompts == []
    assert p.calibration.guidance_scale is None and p.defaults.tuned is None
    assert "revision: null" in dump_profile(p)


def test_forecast_absent_is_reuse_and_written_only_when_set():
    """Profiles from before the forecast load with A = 0 (plain reuse) and keep their canonical text."""
    p = profile_from_dict(valid())
    assert p.defaults.forecast == 0.0 and "forecast" not in dump_profile(p)
    data = valid()
    data["defaults"]["forecast"] = 0.5
    q = profile_from_dict(data)
    assert q.defaults.forecast == 0.5
    assert "  retention_ratio: 0.2\n  forecast: 0.5\n  tuned: null\n" in dump_profile(q)
    assert profile_from_dict(yaml.safe_load(dump_profile(q))).defaults.forecast == 0.5


def test_built_in_code_and_validated_on_dump():
    p = Profile(
        model=ModelInfo(id="m", pipeline_class="P", transformer_class="T"),
        calibration=Calibration(steps=2, guidance_mode="none"),
        branches={"main": BranchCurves(ratios=[1.0, 0.98])},
    )
    assert "main:\n    ratios: [1.0, 0.98]" in dump_profile(p)
    p.branches["main"].ratios[1] = math.nan
    with pytest.raises(ProfileError, match=r"branches\.main\.ratios\[1\]"):
        dump_profile(p)


def test_config_fingerprint():
    config = {"b": 2, "a": [1, 2], "_class_name": "X", "_diffusers_version": "0.42"}
    expected = hashlib.sha256(json.dumps({"a": [1, 2], "b": 2}, sort_keys=True).encode()).hexdigest()[:16]
    assert config_fingerprint(config) == expected
    assert config_fingerprint({"a": [1, 2], "b": 2}) == expected
    assert config_fingerprint({"a": [1, 2], "b": 3}) != expected


# --------------------------------------------------------------------------------------------- validation


def _set(path: str, value):
    """A mutation of valid() that sets (or, for value DELETE, removes) the dotted key."""

    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
        return data

    return mutate


DELETE = object()

INVALID = [
    # (mutation, field path that must be named)
    (_set("extra", 1), "extra"),
    (_set("model.foo", "x"), "model.foo"),
    (_set("branches.cond.foo", [1.0, 1.0, 1.0]), "branches.cond.foo"),
    (_set("calibration.steps", "3"), "calibration.steps"),
    (_set("calibration.steps", True), "calibration.steps"),  # bool is not int
    (_set("defaults.max_skip_steps", False), "defaults.max_skip_steps"),
    (_set("calibration.height", 1024.0), "calibration.height"),
    (_set("calibration.guidance_mode", "cfg"), "calibration.guidance_mode"),
    (_set("calibration.prompts", [1]), "calibration.prompts[0]"),
    (_set("calibration.seeds", [0, -1]), "calibration.seeds[1]"),
    (_set("calibration.versions", {"diffusers": 0.42}), "calibration.versions.diffusers"),
    (_set("model.stack", "transformer_blocks"), "model.stack"),
    (_set("model.config_fingerprint", "XYZ"), "model.config_fingerprint"),
    (_set("scheduler.config", {"shift": math.nan}), "scheduler.config.shift"),
    (_set("branches.cond.ratios", [1.0, math.nan, 1.1]), "branches.cond.ratios[1]"),
    (_set("branches.cond.ratios", [1.0, 1.1, math.inf]), "branches.cond.ratios[2]"),
    (_set("branches.cond.ratio_std", [0.0, -math.inf, 0.0]), "branches.cond.ratio_std[1]"),
    (_set("branches.cond.ratios", [1.0, 1.1, -0.5]), "branches.cond.ratios[2]"),
    (_set("branches.cond.ratios", [1.0, 0.0, 1.1]), "branches.cond.ratios[1]"),
    (_set("branches.cond.ratios", [1.0, True, 1.1]), "branches.cond.ratios[1]"),
    (_set("branches.uncond.cos_dist", [0.0, -0.1, 0.0]), "branches.uncond.cos_dist[1]"),
    (_set("branches.cond.ratios", [1.0, 1.1]), "branches.cond.ratios"),
    (_set("branches.uncond.run_std", [0.0] * 4), "branches.uncond.run_std"),
    (_set("branches.cond.ratios", [0.9, 1.1, 1.0]), "branches.cond.ratios[0]"),
    (_set("model.id", DELETE), "model.id"),
    (_set("model.id", ""), "model.id"),
    (_set("defaults", DELETE), "defaults"),
    (_set("branches.cond.ratios", DELETE), "branches.cond.ratios"),
    (_set("defaults.threshold", -0.1), "defaults.threshold"),
    (_set("defaults.retention_ratio", 1.0), "defaults.retention_ratio"),
    (_set("defaults.forecast", 1.5), "defaults.forecast"),
    (_set("defaults.forecast", -0.25), "defaults.forecast"),
    (_set("defaults.tuned", [1, 2]), "defaults.tuned"),
    (_set("schema_version", 2), "schema_version"),
    (_set("schema_version", "1"), "schema_version"),
    (_set("branches", {}), "branches"),
    (_set("branches.co nd", {"ratios": [1.0, 1.0, 1.0]}), "branches.co nd"),
    (_set("branches.cond/x", {"ratios": [1.0, 1.0, 1.0]}), "branches.cond/x"),
    (_set("source", 3), "source"),
]


@pytest.mark.parametrize("mutate,field", INVALID, ids=[f for _, f in INVALID])
def test_invalid_names_the_field(mutate, field):
    err = error_for(mutate(valid()))
    assert err.field == field
    assert str(err).startswith(f"{field}: ")


def test_ratio_message_reads_well():
    err = error_for(_set("branches.cond.ratios", [1.0, 1.2, 1.1, -0.5])(_set("calibration.steps", 4)(valid())))
    assert err.message.startswith("branches.cond.ratios[3]: must be a positive finite number, got -0.5")


def test_unknown_key_lists_allowed_keys():
    err = error_for(_set("model.foo", "x")(valid()))
    assert "allowed keys: id, revision, pipeline_class, transformer_class, config_fingerprint, stack" in err.message


def test_newer_schema_version_says_to_upgrade():
    data = valid()
    data["schema_version"] = 2
    data["new_section"] = {}  # explained by the version, so the version is reported first
    err = error_for(data)
    assert err.field == "schema_version"
    assert "upgrade magcache" in err.hint and "1" in err.hint


def test_not_a_mapping():
    assert "mapping" in str(error_for([1, 2]))
    assert "empty" in str(error_for(None))


# ------------------------------------------------------------------------------------------------- files


def write(tmp_path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_numbers_written_with_an_exponent_and_no_dot_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads `6e-05` as the string "6e-05"; a hand edit must mean the number, as in YAML 1.2
    text = dump_profile(profile_from_dict(valid()))
    edited = text.replace("threshold: 0.06", "threshold: 6e-05").replace("ratios: [1.0, 1.2, 1.1]", "ratios: [1e0, 12E-1, 1.1]")
    assert "6e-05" in edited and "1e0" in edited
    p, plain = load_profile(write(tmp_path, edited)), load_profile(write(tmp_path, text, "plain.yaml"))
    assert p.defaults.threshold == 6e-05 and isinstance(p.defaults.threshold, float)
    assert p.branches == plain.branches  # 1e0 and 12E-1 read as 1.0 and 1.2
    assert yaml.safe_load("a: 6e-05") == {"a": "6e-05"}  # the change is the profile reader's, not PyYAML's


def test_yaml_special_floats_are_rejected(tmp_path):
    text = dump_profile(profile_from_dict(valid())).replace("ratios: [1.0, 1.2, 1.1]", "ratios: [1.0, .nan, 1.1]")
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.field == "branches.uncond.ratios[1]"
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_unquoted_timestamp_is_kept_as_text(tmp_path):
    text = dump_profile(profile_from_dict(valid())).replace("'2026-11-26T12:00:00Z'", "2026-11-26T12:00:00Z")
    assert load_profile(write(tmp_path, text)).calibration.created == "2026-11-26T12:00:00Z"


def test_duplicate_keys_are_rejected(tmp_path):
    text = dump_profile(profile_from_dict(valid()))
    text = text.replace("  max_skip_steps: 3\n", "  max_skip_steps: 3\n  max_skip_steps: 9\n")
    with pytest.raises(ProfileError, match="duplicate key 'max_skip_steps'"):
        load_profile(write(tmp_path, text))


def test_file_errors_are_profile_errors(tmp_path):
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "missing.yaml")
    assert info.value.path == str(tmp_path / "missing.yaml") and "not found" in str(info.value)
    with pytest.raises(ProfileError, match="invalid YAML"):
        load_profile(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ProfileError, match="empty"):
        load_profile(write(tmp_path, ""))
    with pytest.raises(ProfileError, match="directory"):
        load_profile(tmp_path)
    with pytest.raises(ProfileError, match="could not determine a constructor"):
        load_profile(write(tmp_path, "schema_version: !!python/object/apply:os.system ['true']\n"))


def test_save_refuses_to_overwrite(tmp_path):
    path = save_profile(profile_from_dict(valid()), tmp_path / "deep" / "dir" / "p.yaml")
    original = path.read_bytes()
    changed = _set("defaults.threshold", 0.2)(valid())
    with pytest.raises(ProfileError) as info:
        save_profile(profile_from_dict(changed), path)
    assert "`overwrite=True`" in info.value.hint  # the library's words; the CLI says --force
    assert path.read_bytes() == original
    save_profile(profile_from_dict(changed), path, overwrite=True)
    assert load_profile(path).defaults.threshold == 0.2
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.yaml"]


def test_failed_render_writes_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(profile_mod.yaml, "dump", boom)
    with pytest.raises(RuntimeError):
        save_profile(profile_from_dict(valid()), tmp_path / "p.yaml")
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_leaves_no_partial_file_and_original_intact(tmp_path, monkeypatch):
    path = save_profile(profile_from_dict(valid()), tmp_path / "p.yaml")
    original = path.read_bytes()

    def boom(src, dst):
        raise OSError("no space left on device")

    monkeypatch.setattr(profile_mod.os, "replace", boom)
    with pytest.raises(OSError):
        save_profile(profile_from_dict(_set("defaults.threshold", 0.2)(valid())), path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]
    assert path.read_bytes() == original


def test_docs_examples_are_valid_and_the_first_is_canonical():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profile-format.md").read_text(encoding="utf-8")
    blocks = [part.split("```")[0] for part in doc.split("```yaml\n")[1:]]
    assert len(blocks) == 2
    written, imported = (profile_from_dict(yaml.safe_load(b)) for b in blocks)
    assert dump_profile(written) == blocks[0]
    assert imported.source and list(imported.branches) == ["main"] and imported.calibration.steps == 28


def test_docs_field_tables_are_generated_from_the_schema():
    """docs/profile-format.md's field tables are the schema declaration's (scripts/gen_profile_docs.py)."""
    import re
    from pathlib import Path

    from magcache_cli.profile.fields_doc import field_tables

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profile-format.md").read_text(encoding="utf-8")
    found = dict(re.findall(r"<!-- fields:(\w+) -->\n(.*?)\n<!-- /fields -->", doc, re.S))
    assert found == field_tables()
    # every declared key appears in its table, in canonical order
    assert [line.split("`")[1] for line in found["model"].splitlines()[2:]] == [
        "id", "revision", "pipeline_class", "transformer_class", "config_fingerprint", "stack", "components",
        "adapters", "quantization", "transformer_file"]


def test_empty_negative_prompt_and_prompt_are_valid():
    data = valid()
    data["calibration"]["negative_prompt"] = ""
    data["calibration"]["prompts"] = ["", "a cat"]
    p = profile_from_dict(data)
    assert p.calibration.negative_prompt == "" and p.calibration.prompts == ["", "a cat"]
