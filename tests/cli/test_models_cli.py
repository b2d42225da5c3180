"""The models users run, from the CLI on tiny Flux (CPU, offline): a LoRA file, torchao int8 weight-only, a
single-file `.safetensors` and a `.gguf` transformer. Each calibrates, records its provenance, skips, and at
threshold 0 gives the plain pipeline's bytes (same set-up); `profile verify` measures how far curves moved."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from magcache_cli.testing.helpers import invoke

pytestmark = pytest.mark.slow
CALL = ["--steps", 8, "--height", 32, "--width", 32, "--guidance-scale", 3.5, "--set", "max_sequence_length=12"]


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def flux(tiny_pipeline_dir):
    return tiny_pipeline_dir("flux-nocfg")


@pytest.fixture(scope="module")
def files(flux, tmp_path_factory):
    pytest.importorskip("gguf")
    from magcache_cli.testing.model_files import build_gguf, build_lora, transformer_file

    d = tmp_path_factory.mktemp("model_files")
    return {"lora": build_lora(flux, d / "style.safetensors"), "single": transformer_file(flux, d / "t.safetensors"),
            "gguf": build_gguf(flux, d / "t.gguf")}


@pytest.fixture(scope="module")
def plain_profile(flux, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "plain.yaml"
    r = invoke("calibrate", "--model", flux, "-p", "a cat", *CALL, "--threshold", 0.3, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def calibrate(flux, tmp_path, *setup):
    out = tmp_path / "p.yaml"
    r = invoke("calibrate", "--model", flux, "-p", "a cat", *CALL, "--threshold", 0.3, *setup, "--out", out)
    assert r.exit_code == 0, r.output
    return out, yaml.safe_load(out.read_text())


def run(profile, tmp_path, name, *args):
    r = invoke("run", "--profile", profile, "-p", "a dog", "-s", 3, "--output", tmp_path / name, "--json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    return data, np.asarray(Image.open(tmp_path / name)), r.output


def check_skips_and_threshold_zero(profile, tmp_path, *setup):
    """The profile skips at its defaults; at threshold 0 the image is the plain pipeline's, byte for byte."""
    data, _, _ = run(profile, tmp_path, "cached.png", *setup)
    assert data["branches"]["main"]["skipped"]
    _, zero, _ = run(profile, tmp_path, "zero.png", "--threshold", 0, *setup)
    _, plain, _ = run(profile, tmp_path, "plain.png", "--no-cache", *setup)
    assert zero.tobytes() == plain.tobytes()
    return plain


def test_lora_file_scale_recorded_skips_and_matches(flux, files, tmp_path):
    path, data = calibrate(flux, tmp_path, "--lora", f"{files['lora']}:0.7")
    assert data["model"]["adapters"] == [{"name": "lora0", "source": str(files["lora"]),
                                          "sha256": sha256(files["lora"]), "scale": 0.7, "fused": False}]
    assert "adapters" not in yaml.safe_load((tmp_path / "p.yaml").read_text())["calibration"]
    with_lora = check_skips_and_threshold_zero(path, tmp_path, "--lora", f"{files['lora']}:0.7")
    _, without, _ = run(path, tmp_path, "nolora.png", "--no-cache")
    assert with_lora.tobytes() != without.tobytes()  # the LoRA really changes the image


def test_run_without_the_profiles_lora_warns_once_and_runs(flux, files, tmp_path):
    path, _ = calibrate(flux, tmp_path, "--lora", f"{files['lora']}:0.7")
    data, _, output = run(path, tmp_path, "a.png")
    said = [line for line in output.splitlines() if line.startswith("Warning:") and "model.adapters" in line]
    assert len(said) == 1 and "no LoRA" in said[0] and "recalibrate" in said[0]
    assert [w for w in data["warnings"] if "model.adapters" in w] == [said[0].removeprefix("Warning: ")]


def test_fused_lora_is_recorded_and_close_to_unfused(flux, files, tmp_path):
    path, data = calibrate(flux, tmp_path, "--lora", str(files["lora"]), "--fuse-lora")
    assert data["model"]["adapters"][0]["fused"] is True and data["model"]["adapters"][0]["scale"] == 1.0
    _, fused, _ = run(path, tmp_path, "f.png", "--no-cache", "--lora", str(files["lora"]), "--fuse-lora")
    _, unfused, _ = run(path, tmp_path, "u.png", "--no-cache", "--lora", str(files["lora"]))
    assert np.abs(fused.astype(int) - unfused.astype(int)).max() <= 2  # same weights, other rounding


def test_torchao_int8_uses_the_full_precision_profile_with_a_warning(flux, plain_profile, tmp_path):
    pytest.importorskip("torchao")
    data, _, output = run(plain_profile, tmp_path, "q.png", "--quantize", "torchao:int8wo")
    assert "model.quantization" in output and "torchao:int8wo" in output and "--force" not in output
    assert data["branches"]["main"]["skipped"]
    check_skips_and_threshold_zero(plain_profile, tmp_path, "--quantize", "torchao:int8wo")
    data, _, _ = run(plain_profile, tmp_path, "f.png", "--quantize", "torchao:int8wo", "--forecast", 0.5)
    assert data["branches"]["main"]["skipped"]  # the residual forecast works on quantized weights too


def test_torchao_int8_calibration_records_the_spec_and_keeps_the_fingerprint(flux, plain_profile, tmp_path):
    pytest.importorskip("torchao")
    _, data = calibrate(flux, tmp_path, "--quantize", "torchao:int8wo")
    assert data["model"]["quantization"] == [{"component": "transformer", "backend": "torchao",
                                              "spec": "torchao:int8wo"}]
    plain = yaml.safe_load(plain_profile.read_text())
    assert data["model"]["config_fingerprint"] == plain["model"]["config_fingerprint"]


def test_single_file_safetensors_transformer(flux, files, plain_profile, tmp_path):
    path, data = calibrate(flux, tmp_path, "--transformer-file", files["single"])
    assert data["model"]["transformer_file"] == {"path": str(files["single"]), "format": "safetensors",
                                                 "sha256": sha256(files["single"]),
                                                 "bytes": files["single"].stat().st_size}
    single = check_skips_and_threshold_zero(path, tmp_path, "--transformer-file", files["single"])
    _, folder, _ = run(plain_profile, tmp_path, "folder.png", "--no-cache")
    assert single.tobytes() == folder.tobytes()  # the same weights, from one file
    _, _, output = run(path, tmp_path, "nofile.png")  # the folder's transformer with the file's profile
    assert "model.transformer_file" in output and "not loaded with --transformer-file" in output


def test_gguf_transformer(flux, files, tmp_path):
    path, data = calibrate(flux, tmp_path, "--transformer-file", files["gguf"])
    assert data["model"]["transformer_file"]["format"] == "gguf"
    assert data["model"]["transformer_file"]["sha256"] == sha256(files["gguf"])
    assert [(q["component"], q["backend"], q["spec"]) for q in data["model"]["quantization"]] == \
        [("transformer", "gguf", None)]
    check_skips_and_threshold_zero(path, tmp_path, "--transformer-file", files["gguf"])


def test_profile_show_and_diff_name_the_setup(flux, files, plain_profile, tmp_path):
    pytest.importorskip("torchao")
    path, _ = calibrate(flux, tmp_path, "--lora", f"{files['lora']}:0.5", "--quantize", "torchao:int8wo")
    r = invoke("profile", "show", path)
    assert r.exit_code == 0 and "lora0" in r.output and "scale 0.5" in r.output and "torchao:int8wo" in r.output
    r = invoke("profile", "diff", plain_profile, path, "--json")
    fields = {m["field"]: m["b"] for m in json.loads(r.stdout)["metadata"]}
    assert fields["model.adapters[0].scale"] == 0.5 and fields["model.quantization[0].spec"] == "torchao:int8wo"


def test_verify_passes_on_the_profiles_own_model(flux, plain_profile):
    r = invoke("profile", "verify", plain_profile, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    # one prompt × one seed, re-measured on the same weights: the same numbers, up to the file's rounding
    assert data["ok"] is True and data["distance"] <= 1e-5 and data["tolerance"] == 0.012
    assert data["schedule"]["passes_profile"] == data["schedule"]["passes_now"]


def test_verify_reports_the_distance_of_a_lora(flux, files, plain_profile):
    r = invoke("profile", "verify", plain_profile, "--lora", files["lora"], "--json", "--tolerance", 0)
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["distance"] > 0 and data["tolerance"] == 0
    assert data["distance"] == max(c["mean_abs_diff"] for c in data["curves"].values())


def test_verify_human_output(flux, plain_profile):
    pytest.importorskip("torchao")
    r = invoke("profile", "verify", plain_profile, "--quantize", "torchao:int8wo")
    assert "distance" in r.output and "tolerance 0.012" in r.output and "passes per run" in r.output


def test_gpu_only_backend_says_so_before_loading(flux, tmp_path):
    r = invoke("calibrate", "--model", flux, "-p", "a", "--quantize", "bnb:nf4", "--device", "cpu", "--out",
               tmp_path / "x.yaml")
    assert r.exit_code == 1 and "needs a CUDA GPU" in r.output and "Traceback" not in r.output


def test_missing_extra_names_it(flux, tmp_path, monkeypatch):
    from magcache_cli.runner import setups

    monkeypatch.setitem(setups.BACKENDS, "quanto", ("no_such_quanto_module", "quanto", ("int8",)))
    r = invoke("calibrate", "--model", flux, "-p", "a", "--quantize", "quanto:int8", "--out", tmp_path / "x.yaml")
    assert r.exit_code == 1 and "magcache-cli[quanto]" in r.output


@pytest.mark.parametrize("args, says", [
    (["--quantize", "torchao:int3"], "unknown quantization"),
    (["--fuse-lora"], "--fuse-lora without --lora"),
    (["--lora", "./no/such.safetensors"], "no such file"),
    (["--transformer-file", "model.ckpt"], "not a .safetensors or .gguf"),
    (["--quantize", "torchao:float8wo", "--dtype", "float32"], "--dtype bfloat16"),
])
def test_bad_setups_fail_in_one_line(flux, tmp_path, args, says):
    r = invoke("calibrate", "--model", flux, "-p", "a", *args, "--out", tmp_path / "x.yaml")
    assert r.exit_code == 1 and says in r.output and "Traceback" not in r.output


def test_gguf_transformer_refuses_compile_in_one_line(flux, files, plain_profile, tmp_path):
    r = invoke("run", "--profile", plain_profile, "-p", "a", "--transformer-file", files["gguf"], "--compile",
               "--output", tmp_path / "x.png")
    assert r.exit_code == 1 and "GGUF weights" in r.output and "torch.compile" in r.output
    assert "Traceback" not in r.output


def test_tune_and_compare_run_with_a_lora_and_keep_its_provenance(flux, files, tmp_path):
    path, data = calibrate(flux, tmp_path, "--lora", f"{files['lora']}:0.7")
    lora = ["--lora", f"{files['lora']}:0.7"]
    dest = tmp_path / "tuned.yaml"
    r = invoke("tune", "--profile", path, *lora, "--min-psnr", 20, "-p", "a dog", "--thresholds", "0.1,0.4",
               "--max-skips", "2", "--retentions", "0.2", "--forecasts", "0", "--out", dest)
    assert r.exit_code == 0, r.output
    assert "model.adapters" not in r.output  # the same set-up: no warning
    assert yaml.safe_load(dest.read_text())["model"]["adapters"] == data["model"]["adapters"]
    r = invoke("run", "--profile", path, *lora, "--compare", "-p", "a dog", "--output", tmp_path / "c.png", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cached"]["passes_per_run"] < 8


def test_a_pre_quantized_folder_loads_as_it_is_and_records_its_config(flux, plain_profile, tmp_path):
    pytest.importorskip("torchao")
    from magcache_cli.runner.loading import LoadOptions, load_pipeline
    from magcache_cli.runner.setups import ModelSetup

    pipe, _, _ = load_pipeline(LoadOptions(str(flux), setup=ModelSetup.parse(quantize=["torchao:int8wo"])))
    pipe.save_pretrained(tmp_path / "int8")
    _, data = calibrate(tmp_path / "int8", tmp_path)
    (q,) = data["model"]["quantization"]
    assert (q["component"], q["backend"], q["spec"], q["config"]["quant_method"]) == \
        ("transformer", "torchao", None, "torchao")
    assert data["model"]["config_fingerprint"] == yaml.safe_load(plain_profile.read_text())["model"]["config_fingerprint"]


def test_torchrun_calibration_with_a_lora_and_a_gguf_equals_one_process(flux, files, tmp_path):
    """Two gloo ranks share the prompt × seed runs of a LoRA'd GGUF set-up: the profile one process writes."""
    args = ["--model", str(flux), "-p", "a", "-p", "b", "-p", "c", "-s", "0", "-s", "1", "--steps", "6",
            "--height", "32", "--width", "32", "--set", "max_sequence_length=12",
            "--lora", f"{files['lora']}:0.7", "--transformer-file", str(files["gguf"])]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MAGCACHE_DIST_TIMEOUT="120")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "magcache_cli", "calibrate", *args, "--out", str(tmp_path / "two.yaml")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = invoke("calibrate", *args, "--out", tmp_path / "one.yaml")
    assert one.exit_code == 0, one.output
    a, b = (yaml.safe_load((tmp_path / n).read_text()) for n in ("one.yaml", "two.yaml"))
    assert a["model"] == b["model"] and a["model"]["adapters"][0]["scale"] == 0.7
    assert a["branches"] == b["branches"]
