"""The models users actually run: LoRA adapters (`--lora SOURCE[:SCALE]`), quantized components (`--quantize
[COMPONENT=]BACKEND:TYPE`) and a transformer from one `.safetensors` / `.gguf` file (`--transformer-file`).

Parsing the specs, checking before anything loads that the backend is installed (and has the GPU it needs),
the `from_pretrained` arguments that put them in place, and loading the adapters afterwards. Each quantization
is built with its backend's own config class per component (diffusers' `TorchAoConfig`, `BitsAndBytesConfig`,
`QuantoConfig`, or transformers' for a text encoder) in `PipelineQuantizationConfig(quant_mapping=...)`, never
the `quant_backend=` shorthand that breaks with transformers 5.x. What the loading did is recorded on the
pipeline for the profile's provenance (`runner/provenance.py`)."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magcache_cli.errors import LoadError, UsageError
from magcache_cli.types import Device

# backend -> (module that must import, the pip extra that installs it, types)
BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "torchao": ("torchao", "torchao", ("int8wo", "int8dq", "float8wo")),
    "bnb": ("bitsandbytes", "bnb", ("nf4", "fp4", "int8")),
    "quanto": ("optimum.quanto", "quanto", ("int8", "float8", "int4", "int2")),
}
NEEDS_GPU = {"bnb": "bitsandbytes quantizes on a CUDA GPU only (diffusers: \"No GPU found\")"}
# attributes on the pipeline where the loading leaves what it did (read by runner/provenance.py)
LORA_ATTR, QUANT_ATTR, FILE_ATTR = "_magcache_loras", "_magcache_quantize", "_magcache_transformer_file"
_SCALE = re.compile(r"(.+):([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
# LoRAs that ship inside the package: the demo model's bold-digit style (scripts/train_demo_lora.py)
BUILTIN_LORAS = {"builtin:demo-bold": Path(__file__).resolve().parents[1] / "demo_model" / "lora" / "bold-digits.safetensors"}
_WEIGHT_EXT = (".safetensors", ".bin", ".pt", ".pth")
_LORA_HINT = "use a hub repo (owner/repo), owner/repo/FILE.safetensors, a local file or folder, then :SCALE"


@dataclass(frozen=True)
class LoraSpec:
    source: str  # hub repo, local file or folder, as given (without the weight name of the owner/repo/FILE form)
    scale: float = 1.0
    weight_name: str | None = None

    @property
    def local(self) -> Path | None:
        """The file or folder on disk, for a local source (a built-in name resolves to its file)."""
        if self.source in BUILTIN_LORAS:
            return BUILTIN_LORAS[self.source]
        path = Path(self.source).expanduser()
        return path if path.exists() or self.source.startswith((".", "/", "~")) else None


@dataclass(frozen=True)
class QuantSpec:
    component: str
    backend: str
    type: str

    @property
    def text(self) -> str:
        return f"{self.backend}:{self.type}"


@dataclass
class ModelSetup:
    """What to put on the pipeline beyond its weights (all empty: the pipeline as the hub ships it)."""

    loras: list[LoraSpec] = field(default_factory=list)
    fuse_lora: bool = False
    quantize: list[QuantSpec] = field(default_factory=list)
    transformer_file: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.loras or self.quantize or self.transformer_file)

    @classmethod
    def parse(cls, loras: list[str] | None = None, fuse_lora: bool = False, quantize: list[str] | None = None,
              transformer_file: str | None = None) -> "ModelSetup":
        """From the command line's texts (`--lora`, `--fuse-lora`, `--quantize`, `--transformer-file`)."""
        setup = cls([parse_lora(x) for x in loras or []], fuse_lora, [parse_quantize(x) for x in quantize or []],
                    transformer_file or None)
        seen = [q.component for q in setup.quantize]
        if len(seen) != len(set(seen)):
            raise UsageError("--quantize names a component twice", hint="one BACKEND:TYPE per component")
        if fuse_lora and not setup.loras:
            raise UsageError("--fuse-lora without --lora", hint="add --lora SOURCE[:SCALE], or drop --fuse-lora")
        return setup


def parse_lora(text: str) -> LoraSpec:
    """`SOURCE[:SCALE]`: `owner/repo`, `owner/repo/FILE.safetensors`, `./style.safetensors:0.8`, `./lora-dir`."""
    text = text.strip()
    m = _SCALE.fullmatch(text)
    source, scale = (m.group(1), float(m.group(2))) if m else (text, 1.0)
    if source.startswith("builtin:") and source not in BUILTIN_LORAS:
        raise UsageError(f"--lora {source}: unknown built-in LoRA", hint=f"use one of {', '.join(BUILTIN_LORAS)}")
    if not source:
        raise UsageError(f"--lora {text!r}: no source", hint=_LORA_HINT)
    spec = LoraSpec(source, scale)
    if spec.local is not None:
        if not spec.local.exists():
            raise LoadError(f"--lora {source}: no such file or folder", hint=_LORA_HINT)
        return spec
    parts = source.split("/")
    if len(parts) > 2 and source.endswith(_WEIGHT_EXT):
        return LoraSpec("/".join(parts[:2]), scale, "/".join(parts[2:]))
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--lora {source}: not a hub repo, file or folder", hint=_LORA_HINT)
    return spec


def parse_quantize(text: str) -> QuantSpec:
    """`[COMPONENT=]BACKEND:TYPE`, e.g. `torchao:int8wo` (the transformer) or `text_encoder_2=bnb:nf4`."""
    component, sep, rest = text.strip().rpartition("=")
    component = component.strip() if sep else "transformer"
    backend, _, kind = rest.strip().partition(":")
    choices = ", ".join(f"{b}:{t}" for b, (_, _, types) in BACKENDS.items() for t in types)
    if backend not in BACKENDS or kind not in BACKENDS[backend][2] or not component.isidentifier():
        raise UsageError(f"--quantize {text!r}: unknown quantization", hint=f"use [COMPONENT=]BACKEND:TYPE with "
                         f"one of {choices}")
    return QuantSpec(component, backend, kind)


def file_format(path: str) -> str:
    low = path.lower().split("?")[0]
    if low.endswith(".gguf"):
        return "gguf"
    if low.endswith(".safetensors"):
        return "safetensors"
    raise UsageError(f"--transformer-file {path}: not a .safetensors or .gguf file",
                     hint="pass a single-file checkpoint ending in .safetensors or .gguf (path or URL)")


def require(module: str, extra: str, what: str) -> None:
    """A one-line error naming the extra when an optional package is missing."""
    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        raise LoadError(f"{what} needs the `{module}` package, which is not installed",
                        hint=f"pip install 'magcache-cli[{extra}]'")


def check_setup(setup: ModelSetup, device: str, dtype: torch.dtype) -> None:
    """Everything that can be said before loading: missing packages, a backend without its GPU, a dtype the
    backend cannot compute in, a GGUF file asked to be quantized again."""
    if setup.loras:
        require("peft", "lora", "--lora")
    for q in setup.quantize:
        module, extra, _ = BACKENDS[q.backend]
        if q.backend in NEEDS_GPU and device != Device.CUDA:
            raise LoadError(f"--quantize {q.text} needs a CUDA GPU: {NEEDS_GPU[q.backend]}, and this run is on "
                            f"{device}", hint="use torchao:int8wo or quanto:int8 on a CPU, or run on a CUDA GPU")
        require(module, extra, f"--quantize {q.text}")
        if q.text == "torchao:float8wo" and dtype == torch.float32:
            raise UsageError("--quantize torchao:float8wo computes in bfloat16 (torchao cannot mix float8 weights "
                             "with float32 activations)", hint="add --dtype bfloat16")
    if setup.transformer_file:
        fmt = file_format(setup.transformer_file)
        if fmt == "gguf":
            require("gguf", "gguf", "--transformer-file *.gguf")
            if any(q.component == "transformer" for q in setup.quantize):
                raise UsageError("a .gguf transformer is quantized already; --quantize cannot quantize it again",
                                 hint="drop the transformer's --quantize, or pass a .safetensors file")


def _json(model_ref: str, revision: str | None, name: str) -> dict | None:
    """A JSON file of a local pipeline folder or of a hub model already in the cache (never fetched)."""
    import json

    local = Path(model_ref).expanduser()
    try:
        if local.is_dir():
            found: Path | None = local / name
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model_ref, name, revision=revision)
            found = Path(cached) if isinstance(cached, str) else None
        return json.loads(found.read_text(encoding="utf-8")) if found is not None and found.is_file() else None
    except (OSError, ValueError, TypeError):
        return None


def _library(model_ref: str, component: str, revision: str | None) -> str:
    """`diffusers` or `transformers`: which library's config class quantizes this component."""
    entry = (_json(model_ref, revision, "model_index.json") or {}).get(component)
    return entry[0] if isinstance(entry, list) and entry and entry[0] == "transformers" else "diffusers"


def quant_config(q: QuantSpec, dtype: torch.dtype, library: str = "diffusers"):
    """The backend's own config object for one component (diffusers' classes, or transformers' for a text
    encoder)."""
    import diffusers
    import transformers

    lib = transformers if library == "transformers" else diffusers
    if q.backend == "torchao":
        from torchao import quantization as tq

        made = {"int8wo": tq.Int8WeightOnlyConfig, "int8dq": tq.Int8DynamicActivationInt8WeightConfig,
                "float8wo": tq.Float8WeightOnlyConfig}[q.type]()
        return lib.TorchAoConfig(quant_type=made)
    if q.backend == "bnb":
        if q.type == "int8":
            return lib.BitsAndBytesConfig(load_in_8bit=True)
        return lib.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.type, bnb_4bit_compute_dtype=dtype)
    if library == "transformers":
        return transformers.QuantoConfig(weights=q.type)
    return diffusers.QuantoConfig(weights_dtype=q.type)


def transformer_class(model_ref: str, revision: str | None):
    """The diffusers model class of the pipeline's transformer, from its config (folder or hub)."""
    import diffusers

    config = _json(model_ref, revision, "transformer/config.json")
    if config is None:
        try:
            import json

            from huggingface_hub import hf_hub_download

            path = hf_hub_download(model_ref, "transformer/config.json", revision=revision)
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except Exception as e:  # hub errors of many types: all mean the config is out of reach
            raise LoadError(f"--transformer-file: cannot read {model_ref}'s transformer/config.json: {e}",
                            hint="--model must name the pipeline the file's transformer belongs to") from e
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise LoadError(f"--transformer-file: {config.get('_class_name')} cannot load single files in diffusers "
                        f"{diffusers.__version__}", hint="load that model's folder with --model instead")
    return cls


def load_transformer_file(setup: ModelSetup, model_ref: str, revision: str | None, dtype: torch.dtype):
    """The transformer from `setup.transformer_file`, its config (and the rest of the pipeline) from `model_ref`,
    quantized as `--quantize` asks (GGUF files are dequantized on the fly in `dtype`)."""
    path = setup.transformer_file
    cls = transformer_class(model_ref, revision)
    kwargs: dict[str, Any] = {"config": model_ref, "subfolder": "transformer", "torch_dtype": dtype}
    if file_format(path) == "gguf":
        from diffusers import GGUFQuantizationConfig

        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    for q in setup.quantize:
        if q.component == "transformer":
            kwargs["quantization_config"] = quant_config(q, dtype)
    local = Path(path).expanduser()
    if not path.startswith(("http://", "https://")) and not local.is_file():
        raise LoadError(f"--transformer-file {path}: no such file", hint="pass a local file or a hub file URL")
    try:
        return cls.from_single_file(str(local) if local.is_file() else path, **kwargs)
    except Exception as e:  # diffusers raises many types for a file it cannot map
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LoadError(f"could not load --transformer-file {path} as {cls.__name__}: {text}",
                        hint="the file must hold this pipeline's transformer (original or diffusers layout)") from e


def from_pretrained_kwargs(setup: ModelSetup, model_ref: str, revision: str | None, dtype: torch.dtype) -> dict:
    """What `from_pretrained` needs for `setup`: the single-file transformer, and the quantized components."""
    out: dict[str, Any] = {}
    if setup.transformer_file:
        out["transformer"] = load_transformer_file(setup, model_ref, revision, dtype)
    mapping = {q.component: quant_config(q, dtype, _library(model_ref, q.component, revision))
               for q in setup.quantize if not (q.component == "transformer" and setup.transformer_file)}
    if mapping:
        from diffusers.quantizers import PipelineQuantizationConfig

        out["quantization_config"] = PipelineQuantizationConfig(quant_mapping=mapping)
    return out


def load_loras(pipe, setup: ModelSetup) -> None:
    """Load each `--lora` as adapter `lora<i>`, set their scales, fuse them if asked."""
    if not setup.loras:
        return
    names = [f"lora{i}" for i in range(len(setup.loras))]
    for name, spec in zip(names, setup.loras):
        local = spec.local
        where, weight = spec.source, spec.weight_name
        if local is not None and local.is_file():
            where, weight = str(local.parent), local.name
        try:
            pipe.load_lora_weights(where, weight_name=weight, adapter_name=name)
        except Exception as e:  # diffusers/peft/hub raise many types: all mean the adapter did not load
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LoadError(f"could not load --lora {spec.source}: {text}",
                            hint="it must be a diffusers-loadable LoRA for this pipeline") from e
    pipe.set_adapters(names, [s.scale for s in setup.loras])
    if setup.fuse_lora:
        try:
            pipe.fuse_lora(adapter_names=names)
            pipe.unload_lora_weights()
        except Exception as e:  # e.g. weights a backend quantized cannot take the LoRA's delta
            raise LoadError(f"could not fuse the LoRA into the weights: {str(e).splitlines()[0] if str(e) else e}",
                            hint="drop --fuse-lora (the adapter then runs unfused)") from e
    setattr(pipe, LORA_ATTR, {n: (s, setup.fuse_lora) for n, s in zip(names, setup.loras)})


def finish(pipe, setup: ModelSetup) -> None:
    """After `from_pretrained`: the adapters, and what was asked (for the provenance)."""
    load_loras(pipe, setup)
    if setup.quantize:
        setattr(pipe, QUANT_ATTR, {q.component: q.text for q in setup.quantize})
    if setup.transformer_file:
        setattr(pipe, FILE_ATTR, setup.transformer_file)
