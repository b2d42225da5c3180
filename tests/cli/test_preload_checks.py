"""Issue 16: `--set` keys and values are checked against the pipeline class's call signature before any
weights load (the class from `--pipeline`, the profile, or the weights' `model_index.json`), and the CLI
does not print transformers' torchvision fallback notices."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Union

import pytest

from magcache_cli.runner import loading
from magcache_cli.runner.signature import fits
from magcache_cli.testing.helpers import invoke

REPO = Path(__file__).resolve().parents[2]


class Loaded(Exception):
    """Raised by the stand-in loader: the command got as far as loading the weights."""


@pytest.fixture
def loads(monkeypatch):
    """The loader is replaced by one that records the model and raises `Loaded`."""
    seen: list[str] = []

    def load(opts):
        seen.append(opts.model)
        raise Loaded(opts.model)

    monkeypatch.setattr(loading, "load_pipeline", load)
    return seen


def error_line(r) -> str:
    assert r.exit_code != 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return " ".join(r.output[r.output.index("Error:"):].split())


@pytest.mark.parametrize("args", [
    ("run", "--profile", "flux1-dev", "-p", "a"),  # the class from the profile (FluxPipeline)
    ("calibrate",),  # the bundled demo folder's model_index.json (StableDiffusion3Pipeline)
])
def test_an_unknown_set_key_fails_before_the_weights_load(loads, tmp_path, args):
    r = invoke(*args, "--set", "not_an_argument=1", *(["--out", tmp_path / "p.yaml"] if args[0] == "calibrate" else []))
    line = error_line(r)
    assert "Pipeline does not take not_an_argument" in line and "it takes:" in line and "num_inference_steps" in line
    assert loads == []


def test_a_set_value_of_the_wrong_type_fails_before_the_weights_load(loads):
    r = invoke("run", "--profile", "flux1-dev", "-p", "a", "--set", "num_inference_steps=abc")
    assert "Error: --set num_inference_steps: FluxPipeline takes int for num_inference_steps, got 'abc'" in error_line(r)
    r = invoke("run", "--profile", "flux1-dev", "-p", "a", "--set", "sigmas=[1, x]")
    assert "--set sigmas: FluxPipeline takes" in error_line(r)
    assert loads == []


def test_a_named_option_the_class_does_not_take_fails_before_loading(loads):
    r = invoke("run", "--profile", "flux1-dev", "-p", "a", "--num-frames", 5)
    assert "FluxPipeline does not take num_frames" in error_line(r)
    assert loads == []


def test_fitting_set_values_still_reach_the_loader(loads):
    # the check refuses only what cannot work: these go on to load the weights (here: the stand-in)
    r = invoke("run", "--profile", "flux1-dev", "-p", "a", "--set", "max_sequence_length=256",
               "--set", "sigmas=[1, 0.5]", "--set", "joint_attention_kwargs=null", "--set", "num_inference_steps=8.0",
               catch_exceptions=True)
    assert isinstance(r.exception, SystemExit) and loads == ["black-forest-labs/FLUX.1-dev"], r.output


def test_a_hub_model_index_is_fetched_alone_unless_offline(loads, monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants

    index = tmp_path / "model_index.json"
    index.write_text('{"_class_name": "FluxPipeline"}')
    fetched: list[tuple] = []

    def download(repo, filename, revision=None, **k):
        fetched.append((repo, filename, revision))
        return str(index)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    args = ("calibrate", "--model", "org/model", "-p", "a", "--out", tmp_path / "p.yaml", "--set", "not_an_argument=1")
    assert "FluxPipeline does not take not_an_argument" in error_line(invoke(*args))
    assert fetched == [("org/model", "model_index.json", None)] and loads == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline: nothing fetched, checked after loading
    fetched.clear()
    invoke(*args, catch_exceptions=True)
    assert fetched == [] and loads == ["org/model"]


def test_fits_judges_only_what_it_understands():
    assert fits(4, int) and fits(4.0, int) and not fits(4.5, int) and not fits("abc", int) and not fits(True, int)
    assert fits(4, float) and fits(0.5, float) and not fits("0.5", float) and not fits(False, float)
    assert fits(None, int) and fits(3, Optional[int]) and not fits("x", Optional[int]) and fits("x", int | str)
    assert fits([1, 0.5], list[float]) and not fits([1, "x"], list[float]) and not fits(1.0, list[float])
    assert fits({"a": 1}, dict[str, Any]) and not fits([1], dict) and fits(True, bool) and not fits(1, bool)
    assert fits("anything", object) and fits(3, Union[str, list[str], Path]) and fits([1, 2], tuple[int, ...])


def test_the_fallback_notice_filter_drops_only_that_notice():
    from magcache_cli.cli.app import FALLBACK_LOGGER, quiet_fallback_notices

    got: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: got.append(record.getMessage())
    log = logging.getLogger(FALLBACK_LOGGER)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.WARNING)  # transformers may have been set to errors only by an earlier test
    try:
        quiet_fallback_notices()
        log.warning("`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil`")
        log.warning("some other transformers warning")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert got == ["some other transformers warning"]


def test_calibrate_on_the_demo_prints_no_torchvision_fallback_notice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "magcache_cli", "calibrate", "--steps", "4", "-o", tmp_path / "p.yaml"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    said = r.stdout + r.stderr
    assert "requires torchvision" not in said and "falling back to" not in said
    # torchao (installed with the dev extras) names CUDA kernels it cannot load; torch warns about its enums
    assert "Failed to load" not in said and "register_constant" not in said and "Unable to import" not in said
