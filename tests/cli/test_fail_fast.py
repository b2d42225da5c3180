"""Issue 12's table, row by row, through the CLI: bad input fails in seconds with one `Error:` line and no
traceback, before the model loads (the loader is replaced by one that fails the test), and damages no file.
More bad inputs than the table are tried: the checks are one mechanism (cli/preflight.py), not a list."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path

import pytest
import yaml

from magcache_cli.runner import loading
from magcache_cli.testing.helpers import invoke

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def one_error_line(r) -> str:
    """The run failed with exactly one `Error:` line, no traceback; returns that line."""
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.output
    return errors[0]


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model fails the test: these inputs must be refused first."""

    def refuse(*a, **k):
        pytest.fail("the model was loaded although the input could be refused before")

    monkeypatch.setattr(loading, "load_pipeline", refuse)


@pytest.fixture(scope="module")
def sd3(tiny_pipeline_dir, tmp_path_factory):
    """(model folder, a 4-step profile of it)."""
    model = tiny_pipeline_dir("sd3")
    out = tmp_path_factory.mktemp("failfast") / "sd3.yaml"
    r = invoke("calibrate", "--model", model, "-p", "a cat", "--steps", 4, "--height", 32, "--width", 32,
               "--guidance-scale", 5.0, "--negative-prompt", "", "--out", out)
    assert r.exit_code == 0, r.output
    return model, out


# ---------------------------------------------------------------------------------- the table


def test_empty_negative_prompt_is_a_valid_prompt(sd3, tmp_path):
    # row 1: the usual CFG null prompt used to cost the whole calibration, then fail on saving
    _, prof = sd3
    assert yaml.safe_load(prof.read_text())["calibration"]["negative_prompt"] == ""
    r = invoke("run", "--profile", prof, "-p", "", "--negative-prompt", "", "-o", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e.png").is_file()


@pytest.mark.parametrize("target", ["inside-a-file", "/proc/magcache-x/y.png", "/sys/magcache-x.png"])
def test_unwritable_outputs_fail_before_loading(sd3, tmp_path, no_model, target):
    # row 2: used to generate everything, then crash with FileExistsError / FileNotFoundError / PermissionError
    _, prof = sd3
    if target == "inside-a-file":
        (tmp_path / "afile").write_text("keep me")
        target = tmp_path / "afile" / "x.png"
    elif not Path(target.split("/")[1] and "/" + target.split("/")[1]).is_dir():
        pytest.skip("no such pseudo file system here")
    line = one_error_line(invoke("run", "--profile", prof, "-p", "a", "-o", target))
    assert "--output" in line and "choose another --output" in line
    if isinstance(target, Path):
        assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.parametrize("command", ["run", "calibrate"])
@pytest.mark.parametrize("args, words", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),  # row 3: silently ran 28 steps
    (["--steps", "-5"], "--steps must be >= 1, got -5"),  # row 4: numpy traceback
    (["--height", "7"], "--height 7"),  # row 4: diffusers traceback (the tiny VAE and patch make multiples of 4)
    (["--width", "0"], "--width must be >= 1"),
    (["--num-frames", "0"], "--num-frames must be >= 1"),
    (["--guidance-scale", "nan"], "--guidance-scale nan is not a finite number"),  # row 5: "not divisible into 2"
    (["--guidance-scale", "inf"], "--guidance-scale inf is not a finite number"),
    (["--threshold", "nan"], "--threshold nan is not a finite number"),
    (["--retention-ratio", "1"], "--retention-ratio must be a number in [0, 1)"),
    (["--max-skip-steps", "-1"], "--max-skip-steps must be >= 0"),
    (["--seed", "-1"], "--seed -1 is out of range"),
    (["--set", "true_cfg_scale=.nan"], "--set true_cfg_scale: nan is not a finite number"),
    (["--set", "no_equals_sign"], "is not KEY=VALUE"),
    (["--set", "generator=1"], "--set generator is set by magcache itself"),
    (["--set", "x=[1"], "is not valid YAML"),
    (["--prompts-file", "/nonexistent/prompts.txt"], "--prompts-file /nonexistent/prompts.txt: no such file"),
    (["--compile", "fast"], "unknown --compile 'fast'"),
    (["--dtype", "float8"], "unknown --dtype 'float8'"),
    (["--offload", "disk"], "unknown --offload 'disk'"),
])
def test_bad_values_fail_before_loading(sd3, tmp_path, no_model, command, args, words):
    model, prof = sd3
    where = (["--profile", prof, "-o", tmp_path / "x.png"] if command == "run"
             else ["--model", model, "--out", tmp_path / "x.yaml"])
    line = one_error_line(invoke(command, *where, "-p", "a", *args))
    assert words in line
    assert not list(tmp_path.iterdir())  # nothing written


def test_height_the_model_cannot_make_names_the_nearest_sizes(sd3, no_model, tmp_path):
    model, _ = sd3
    line = one_error_line(invoke("calibrate", "--model", model, "-p", "a", "--height", 30, "--out", tmp_path / "p.yaml"))
    assert "multiples of 4" in line and "--height 28 or 32" in line


def test_prompts_file_problems_fail_before_loading(sd3, tmp_path, no_model):
    _, prof = sd3
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    for path, words in [(empty, "has no prompts"), (binary, "is not UTF-8"), (tmp_path, "is a directory")]:
        line = one_error_line(invoke("run", "--profile", prof, "--prompts-file", path, "-o", tmp_path / "x.png"))
        assert words in line


def test_existing_profile_is_refused_before_loading(sd3, tmp_path, no_model):
    model, prof = sd3
    before = prof.read_bytes()
    line = one_error_line(invoke("calibrate", "--model", model, "-p", "a", "--out", prof))
    assert "exists" in line and "--force" in line
    assert prof.read_bytes() == before


def test_alias_bomb_profile_fails_in_one_line(sd3, tmp_path, no_model):
    # row 6: aliases nested inside calibration.call_args grew `profile validate` past 2.7 GB
    _, prof = sd3
    bomb = "{" + ", ".join(["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]) + "}"
    bad = tmp_path / "bomb.yaml"
    bad.write_text(prof.read_text().replace("  call_args: {}", f"  call_args: {bomb}"))
    r = invoke("profile", "validate", bad)
    one_error_line(r)  # `1 of 1 profile(s) invalid`, after the file's own line
    assert "call_args: {a0" not in r.output and "anchors and aliases are not allowed" in r.output
    line = one_error_line(invoke("run", "--profile", bad, "-p", "a", "-o", tmp_path / "x.png"))
    assert "anchors and aliases are not allowed" in line


def test_huge_profile_is_refused_without_reading_it(tmp_path, no_model):
    # row 7: a 60 MB profile kept `profile validate` busy for minutes at 6 GB
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(60 << 20)  # sparse: 60 MB by size, nothing on disk
    r = invoke("profile", "validate", big)
    one_error_line(r)
    assert "62,914,560 bytes is more than a profile can be" in r.output


@pytest.mark.parametrize("offline, words", [
    (False, "the Hugging Face hub cannot be reached"),
    (True, "offline mode is on (HF_HUB_OFFLINE=1)"),
])
def test_unreachable_hub_vs_offline_mode(monkeypatch, tmp_path, offline, words):
    # row 8: "outgoing traffic has been disabled ... see the stacktrace above", no stacktrace, offline not set
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*a, **k):
        raise LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder for the specified revision "
                                      "on the local disk and outgoing traffic has been disabled.")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", unreachable)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    line = one_error_line(invoke("calibrate", "--model", "some-org/some-model", "-p", "a", "--out", tmp_path / "p.yaml"))
    assert words in line and "stacktrace" not in line


def test_gated_repo_asks_for_a_token(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import GatedRepoError

    response = SimpleNamespace(status_code=401, headers={}, request=None,
                               url="https://huggingface.co/api/models/org/gated/revision/main")

    def gated(*a, **k):
        raise GatedRepoError("Access to model org/gated is restricted.", response=response)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", gated)
    line = one_error_line(invoke("calibrate", "--model", "org/gated", "-p", "a", "--out", tmp_path / "p.yaml"))
    assert "org/gated is gated" in line and "HF_TOKEN" in line


def test_output_naming_an_existing_directory_writes_inside_it(sd3, tmp_path):
    # row 9: used to write existing_dir.png beside the directory
    _, prof = sd3
    folder = tmp_path / "existing_dir"
    folder.mkdir()
    r = invoke("run", "--profile", prof, "-p", "a", "-o", folder)
    assert r.exit_code == 0, r.output
    assert (folder / "magcache.png").is_file() and not (tmp_path / "existing_dir.png").exists()


@pytest.mark.parametrize("where", [["run", "--debug"], ["run"], ["--debug", "run"]])
def test_debug_anywhere_on_the_line(tmp_path, where, monkeypatch):
    # row 11: `magcache run --debug` was a usage error
    monkeypatch.delenv("MAGCACHE_DEBUG", raising=False)
    args = [*where, "--profile", tmp_path / "missing.yaml", "-p", "a"]
    r = invoke(*args)
    assert r.exit_code == 1 and "Error: profile file not found" in r.output
    assert ("Traceback" in r.output) == ("--debug" in where)
    monkeypatch.setenv("MAGCACHE_DEBUG", "1")
    assert "Traceback" in invoke("run", "--profile", tmp_path / "missing.yaml").output


def test_bare_compile_means_the_best_that_works(sd3, tmp_path, monkeypatch):
    # row 12: `--compile` alone was "requires an argument"
    from magcache_cli.core import compile as compile_mod

    modes = []
    monkeypatch.setattr(compile_mod, "compile_pipeline", lambda pipe, mode: modes.append(mode) or [])
    _, prof = sd3
    r = invoke("run", "--profile", prof, "-p", "a", "--compile", "-o", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    r = invoke("run", "--profile", prof, "-p", "a", "-o", tmp_path / "d.png", "--compile")
    assert r.exit_code == 0, r.output
    r = invoke("run", "--profile", prof, "-p", "a", "-o", tmp_path / "e.png", "--compile", "full")
    assert r.exit_code == 0, r.output
    assert modes == ["auto", "auto", "full"]


def test_quality_commands_need_no_extra():
    # row 13: `tune` after a plain install said torchmetrics was missing
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("torchmetrics") for d in project["dependencies"])
    # issue 17 added one extra per LoRA / quantization backend; none of them is a quality metric
    assert set(project["optional-dependencies"]) == {"video", "plot", "dev", "lora", "torchao", "bnb", "quanto",
                                                     "gguf"}
    assert project["license"] == "Apache-2.0"  # an SPDX string: no setuptools deprecation warning


# ------------------------------------------------------------------------------- failures after the work


def test_pipeline_errors_are_one_line(sd3, tmp_path, monkeypatch):
    # an error inside the pipeline call (here: CUDA out of memory) is one line with the next step
    import torch

    model, prof = sd3
    transformer_forward = []

    from diffusers import StableDiffusion3Pipeline

    @functools.wraps(StableDiffusion3Pipeline.__call__)  # keeps the signature the call arguments are checked against
    def oom(*a, **k):
        transformer_forward.append(1)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(StableDiffusion3Pipeline, "__call__", oom)
    line = one_error_line(invoke("run", "--profile", prof, "-p", "a", "-o", tmp_path / "o.png"))
    assert "the GPU ran out of memory" in line and "--offload" in line and "--dtype" in line
    assert transformer_forward and not (tmp_path / "o.png").exists()


def test_multi_output_run_keeps_what_was_written(sd3, tmp_path, monkeypatch):
    from diffusers import StableDiffusion3Pipeline

    _, prof = sd3
    real, calls = StableDiffusion3Pipeline.__call__, []

    @functools.wraps(real)
    def third_fails(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(StableDiffusion3Pipeline, "__call__", third_fails)
    r = invoke("run", "--profile", prof, "-p", "a", "-s", 0, "-s", 1, "-s", 2, "-o", tmp_path / "m.png")
    assert r.exit_code == 130
    line = one_error_line(r)
    assert "interrupted" in line and "2 of 3 outputs were written first" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-p0-s0.png", "m-p0-s1.png"]  # no partial third


def test_profile_that_cannot_be_written_goes_to_a_recovery_file(sd3, tmp_path, monkeypatch):
    # disk full when the calibration is done: the profile is saved beside the target and the line says where
    from magcache_cli.profile import io as profile_io

    model, _ = sd3
    target = tmp_path / "full" / "p.yaml"
    real = profile_io.save_profile

    def disk_full_at_target(p, path, overwrite=False):
        if Path(path) == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(p, path, overwrite)

    monkeypatch.setattr(profile_io, "save_profile", disk_full_at_target)
    line = one_error_line(invoke("calibrate", "--model", model, "-p", "a", "--steps", 2, "--out", target))
    (recovered,) = (tmp_path / "full").glob("p.recovered-*.yaml")
    assert f"could not write {target} (No space left on device)" in line and str(recovered) in line
    assert profile_io.load_profile(recovered).calibration.steps == 2 and not target.exists()


def test_keep_partial_saves_the_finished_runs_on_ctrl_c(sd3, tmp_path, monkeypatch):
    from diffusers import StableDiffusion3Pipeline

    model, _ = sd3
    real, calls = StableDiffusion3Pipeline.__call__, []

    @functools.wraps(real)
    def interrupted_third(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(StableDiffusion3Pipeline, "__call__", interrupted_third)
    out = tmp_path / "partial.yaml"
    args = ["calibrate", "--model", model, "-p", "a", "-s", 0, "-s", 1, "-s", 2, "-s", 3, "--steps", 3, "--out", out]
    r = invoke(*args)
    assert r.exit_code == 130 and not out.exists()  # without --keep-partial: nothing written, as before
    calls.clear()
    r = invoke(*args, "--keep-partial")
    assert r.exit_code == 130
    line = one_error_line(r)
    assert "2 of 4 runs" in line and str(out) in line
    data = yaml.safe_load(out.read_text())
    assert data["calibration"]["seeds"] == [0, 1] and "interrupted" in data["source"]


def test_errors_speak_flags_not_parameters(sd3, tmp_path):
    # the library says `overwrite=True` / `pad`; the CLI says --force / --pad
    model, prof = sd3
    r = invoke("profile", "import", "--ratios", "1.0, 1.1", "--pad", "sometimes", "--pipeline-class", "P",
               "--transformer-class", "T", "--model", "m", "--steps", 2, "--out", tmp_path / "i.yaml")
    line = one_error_line(r)
    assert "--pad" in line and "`pad`" not in line


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_profile_is_one_line(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_bytes(b"\xff\xfe not utf-8")
    r = invoke("profile", "validate", p)
    one_error_line(r)
    assert "p.yaml" in r.output and "UTF-8" in r.output or "utf-8" in r.output


def test_output_that_cannot_be_written_goes_to_a_recovery_file(sd3, tmp_path, monkeypatch):
    from magcache_cli.runner import outputs

    _, prof = sd3
    target = tmp_path / "o.png"
    real = outputs.save

    def full_at_target(out, path, fps=8):
        if Path(path) == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(out, path, fps)

    monkeypatch.setattr(outputs, "save", full_at_target)
    line = one_error_line(invoke("run", "--profile", prof, "-p", "a", "-o", target))
    (recovered,) = tmp_path.glob("o.recovered-*.png")
    assert "1 of 1 outputs could not be written where asked (No space left on device)" in line
    assert str(recovered) in line and not target.exists()

