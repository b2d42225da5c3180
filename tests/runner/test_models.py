"""LoRA / quantization provenance through the Python API (a user who loads them themselves), the fingerprint
that ignores quantization, the spec parsers, and the schema of the new fields."""

from __future__ import annotations

import hashlib
import json

import pytest

from magcache_cli import api as magcache
from magcache_cli.errors import ProfileError, UsageError
from magcache_cli.profile.schema import config_fingerprint, profile_to_dict
from magcache_cli.profile.validate import profile_from_dict
from magcache_cli.runner.setups import LoraSpec, QuantSpec, parse_lora, parse_quantize
from magcache_cli.testing.helpers import load_tiny
from magcache_cli.testing.tiny import FAMILIES

KW = {**FAMILIES["flux-nocfg"].call_kwargs, "num_inference_steps": 6, "output_type": "np"}


@pytest.fixture(scope="module")
def flux(tiny_pipeline_dir):
    return tiny_pipeline_dir("flux-nocfg")


@pytest.fixture(scope="module")
def lora(flux, tmp_path_factory):
    from magcache_cli.testing.model_files import build_lora

    return build_lora(flux, tmp_path_factory.mktemp("lora") / "style.safetensors")


@pytest.fixture(scope="module")
def base_profile(flux):
    return magcache.calibrate(load_tiny(flux), ["a cat"], seeds=[0], **KW)


def test_fingerprint_ignores_quantization_config():
    config = {"num_layers": 2, "attention_head_dim": 8, "_class_name": "X"}
    # the reference: sha256 of the public keys as sorted JSON, first 16 hex characters
    expected = hashlib.sha256(json.dumps({"attention_head_dim": 8, "num_layers": 2}, sort_keys=True).encode()
                              ).hexdigest()[:16]
    assert config_fingerprint(config) == expected
    assert config_fingerprint({**config, "quantization_config": {"quant_method": "torchao"}}) == expected
    assert config_fingerprint({**config, "num_layers": 3}) != expected


@pytest.mark.parametrize("text, spec", [
    ("owner/repo", LoraSpec("owner/repo", 1.0)),
    ("owner/repo:0.5", LoraSpec("owner/repo", 0.5)),
    ("owner/repo/sub/style.safetensors:1.25", LoraSpec("owner/repo", 1.25, "sub/style.safetensors")),
    ("owner/repo/style.safetensors", LoraSpec("owner/repo", 1.0, "style.safetensors")),
])
def test_parse_lora(text, spec):
    assert parse_lora(text) == spec


def test_a_builtin_lora_keeps_its_name_and_finds_its_file():
    spec = parse_lora("builtin:demo-bold:0.5")
    assert (spec.source, spec.scale, spec.weight_name) == ("builtin:demo-bold", 0.5, None)
    assert spec.local.name == "bold-digits.safetensors" and spec.local.stat().st_size < 1_000_000


@pytest.mark.parametrize("text, spec", [
    ("torchao:int8wo", QuantSpec("transformer", "torchao", "int8wo")),
    ("text_encoder_2=bnb:nf4", QuantSpec("text_encoder_2", "bnb", "nf4")),
    ("quanto:int4", QuantSpec("transformer", "quanto", "int4")),
])
def test_parse_quantize(text, spec):
    assert parse_quantize(text) == spec


@pytest.mark.parametrize("text", ["torchao", "torchao:int9", "gguf:q8", "1x=torchao:int8wo"])
def test_parse_quantize_refuses(text):
    with pytest.raises(UsageError):
        parse_quantize(text)


@pytest.mark.slow
def test_a_lora_loaded_by_the_caller_is_detected(flux, lora):
    pipe = load_tiny(flux)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="style")
    pipe.set_adapters(["style"], [0.6])
    prof = magcache.calibrate(pipe, ["a cat"], seeds=[0], **KW)
    assert [(a.name, a.source, a.sha256, a.scale, a.fused) for a in prof.model.adapters] == \
        [("style", None, None, 0.6, False)]
    pipe.fuse_lora(adapter_names=["style"])
    assert [(a.name, a.fused) for a in magcache.calibrate(pipe, ["a cat"], seeds=[0], **KW).model.adapters] == \
        [("style", True)]


@pytest.mark.slow
def test_an_inactive_adapter_is_not_recorded(flux, lora):
    pipe = load_tiny(flux)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="style")
    pipe.disable_lora()
    assert magcache.calibrate(pipe, ["a cat"], seeds=[0], **KW).model.adapters == []


@pytest.mark.slow
def test_a_model_quantized_by_the_caller_is_detected_and_the_base_profile_applies(flux, base_profile):
    pytest.importorskip("torchao")
    from diffusers import DiffusionPipeline, FluxTransformer2DModel, TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig

    t = FluxTransformer2DModel.from_pretrained(flux, subfolder="transformer",
                                               quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    pipe = DiffusionPipeline.from_pretrained(flux, transformer=t)
    prof = magcache.calibrate(pipe, ["a cat"], seeds=[0], **KW)
    (q,) = prof.model.quantization
    assert (q.component, q.backend, q.spec, q.config["quant_method"]) == ("transformer", "torchao", None, "torchao")
    assert prof.model.config_fingerprint == base_profile.model.config_fingerprint
    with magcache.apply(pipe, base_profile, threshold=0.5) as cache:  # no CompatibilityError, no force
        pipe(prompt="a dog", **KW)
    assert len(cache.warnings) == 1 and "model.quantization" in cache.warnings[0]
    assert cache.report.skipped["main"]


@pytest.mark.slow
def test_the_same_setup_gives_no_warning(flux, base_profile):
    pipe = load_tiny(flux)
    with magcache.apply(pipe, base_profile) as cache:
        pass
    assert cache.warnings == []


@pytest.mark.slow
def test_quanto_int8_loads_and_is_recorded(flux):
    pytest.importorskip("optimum.quanto")
    from magcache_cli.runner.loading import LoadOptions, load_pipeline
    from magcache_cli.runner.setups import ModelSetup

    pipe, _, _ = load_pipeline(LoadOptions(str(flux), setup=ModelSetup.parse(quantize=["quanto:int8"])))
    prof = magcache.calibrate(pipe, ["a cat"], seeds=[0], **KW)
    assert [(q.backend, q.spec) for q in prof.model.quantization] == [("quanto", "quanto:int8")]


@pytest.mark.slow
def test_new_fields_round_trip_and_errors_name_the_field(base_profile):
    data = profile_to_dict(base_profile)
    data["model"]["adapters"] = [{"name": "lora0", "source": "owner/repo", "weight_name": "s.safetensors",
                                  "sha256": "a" * 64, "scale": 0.8, "fused": False}]
    data["model"]["quantization"] = [{"component": "transformer", "backend": "gguf", "spec": None,
                                      "config": {"compute_dtype": "torch.float32"}}]
    data["model"]["transformer_file"] = {"path": "f.gguf", "format": "gguf", "sha256": "b" * 64, "bytes": 10}
    assert profile_to_dict(profile_from_dict(data)) == data
    data["model"]["adapters"][0]["scale"] = "big"
    with pytest.raises(ProfileError) as e:
        profile_from_dict(data)
    assert e.value.field == "model.adapters[0].scale"
    data["model"]["adapters"][0]["scale"] = 1.0
    data["model"]["adapters"][0]["fused"] = 1
    with pytest.raises(ProfileError, match=r"model.adapters\[0\].fused: must be true or false"):
        profile_from_dict(data)


@pytest.mark.slow
def test_profiles_without_the_new_fields_keep_their_text(base_profile):
    data = profile_to_dict(base_profile)
    assert not {"adapters", "quantization", "transformer_file"} & set(data["model"])


@pytest.mark.slow
def test_text_encoders_quantize_with_transformers_config_classes(flux):
    pytest.importorskip("torchao")
    pytest.importorskip("optimum.quanto")
    from magcache_cli.runner.loading import LoadOptions, load_pipeline
    from magcache_cli.runner.provenance import quantization_of
    from magcache_cli.runner.setups import ModelSetup

    setup = ModelSetup.parse(quantize=["text_encoder=torchao:int8wo", "text_encoder_2=quanto:int8"])
    pipe, _, _ = load_pipeline(LoadOptions(str(flux), setup=setup))
    clip = dict(pipe.text_encoder.named_parameters())["encoder.layers.0.self_attn.v_proj.weight"]
    t5 = dict(pipe.text_encoder_2.named_parameters())["encoder.block.0.layer.0.SelfAttention.o.weight"]
    assert (type(clip).__name__, type(t5).__name__) == ("Int8Tensor", "WeightQBytesTensor")
    assert sorted((q.component, q.backend, q.spec) for q in quantization_of(pipe)) == [
        ("text_encoder", "torchao", "torchao:int8wo"), ("text_encoder_2", "quanto", "quanto:int8")]
    assert type(next(pipe.transformer.parameters())).__name__ == "Parameter"  # the transformer stays as it was
