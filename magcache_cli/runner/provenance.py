"""What a pipeline carries beyond its architecture: LoRA adapters (peft layers, active adapters, scales),
quantized components (`quantization_config`, or torchao / bitsandbytes / quanto / GGUF parameters) and the
single file its transformer came from. Found on the pipeline, so a Python user who loaded a LoRA or quantized
a model themselves gets the same provenance as `--lora` / `--quantize` (which add sources and file hashes).

`setup_warning` compares that with a profile's record: the curves were measured on one set-up and a run uses
another. It is one warning, never a refusal (the architecture is the same, so the profile applies)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from magcache_cli.core.stacks import find_denoisers
from magcache_cli.profile.schema import AdapterInfo, ModelInfo, Quantization, TransformerFile
from magcache_cli.runner.setups import FILE_ATTR, LORA_ATTR, QUANT_ATTR, file_format

# From the demo-model measurements (docs/workflows.md, benchmarks/lora_quant.py): the bold LoRA at scale 0.5
# moved the curves by 0.015 mean |Δ ratio| per step (0.095 at worst) and a recalibrated profile gave 0.6-0.8 dB
# more PSNR at equal passes (4.3 dB at scale 1.0); at 0.25 it moved them by 0.007 and gained 0-0.5 dB.
# Quantization (torchao int8 / float8, quanto int8) moved them by 0.0014 at most, with the same schedules.
LORA_RECALIBRATE_SCALE = 0.5
_BACKENDS = {"torchao": "torchao", "bitsandbytes": "bitsandbytes", "optimum": "quanto", "gguf": "gguf"}
_HASHES: dict[tuple[str, float, int], str] = {}  # (path, mtime, size) -> sha256


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, mtime, size) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _lora_file(spec) -> Path | None:
    """The weight file a `--lora` spec loaded, when it is on disk (a local file, a folder's, the hub cache's)."""
    name = spec.weight_name or "pytorch_lora_weights.safetensors"
    local = spec.local
    if local is not None:
        if local.is_file():
            return local
        if (local / name).is_file():
            return local / name
        found = sorted(local.glob("*.safetensors"))
        return found[0] if len(found) == 1 else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec.source, name)
        return Path(cached) if isinstance(cached, str) else None
    except (OSError, ValueError):
        return None


def _tuner_layers(pipe):
    from peft.tuners.tuners_utils import BaseTunerLayer

    for _, denoiser in find_denoisers(pipe):
        for module in denoiser.modules():
            if isinstance(module, BaseTunerLayer):
                yield module


def _found_adapters(pipe) -> dict[str, tuple[float, bool]]:
    """Adapter name -> (scale, fused) of the LoRAs in the denoisers that are active or merged."""
    if "peft" not in __import__("sys").modules:
        return {}  # peft was never imported: no adapter can be on the pipeline
    found: dict[str, tuple[float, bool]] = {}
    for layer in _tuner_layers(pipe):
        scaling = getattr(layer, "scaling", None) or {}
        merged = set(getattr(layer, "merged_adapters", []) or [])
        active = set() if getattr(layer, "disable_adapters", False) else set(layer.active_adapters)
        for name, value in scaling.items():
            if name in found or not (name in active or name in merged):
                continue
            r, alpha = layer.r.get(name), layer.lora_alpha.get(name)
            base = alpha / (math.sqrt(r) if getattr(layer, "use_rslora", {}).get(name) else r) if r and alpha else 1
            found[name] = (round(float(value) / base, 6), name in merged)
    return found


def adapters_of(pipe) -> list[AdapterInfo]:
    """The LoRA adapters on the pipeline's denoisers (and those `--fuse-lora` fused and unloaded)."""
    recorded = getattr(pipe, LORA_ATTR, {}) or {}
    found = _found_adapters(pipe)
    out = []
    for name in list(found) + [n for n in recorded if n not in found and recorded[n][1]]:
        spec, fused_by_us = recorded.get(name, (None, False))
        scale, fused = found.get(name, (spec.scale if spec else 1.0, fused_by_us))
        path = _lora_file(spec) if spec is not None else None
        out.append(AdapterInfo(name=name, source=spec.source if spec else None,
                               weight_name=spec.weight_name if spec else None,
                               sha256=file_sha256(path) if path is not None else None, scale=scale, fused=fused))
    return out


def _plain(v: Any) -> Any:
    """A config as YAML-safe data (dtypes and other objects as text, non-finite numbers as text)."""
    data = json.loads(json.dumps(v, default=str))

    def fix(x):
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        if isinstance(x, dict):
            return {str(k): fix(y) for k, y in x.items()}
        return [fix(y) for y in x] if isinstance(x, list) else x

    return fix(data)


def _param_backend(module: torch.nn.Module) -> str | None:
    """The backend whose tensor types hold the module's weights (a model quantized without a config)."""
    for p in module.parameters():
        root = type(p).__module__.split(".")[0]
        if type(p).__name__ == "GGUFParameter":
            return "gguf"
        if root in _BACKENDS and root != "gguf":
            return _BACKENDS[root]
    return None


def quantization_of(pipe) -> list[Quantization]:
    """Each quantized component: its backend, the `--quantize` spec that made it, or the config it came with."""
    requested = getattr(pipe, QUANT_ATTR, {}) or {}
    out = []
    for name, module in (getattr(pipe, "components", {}) or {}).items():
        if not isinstance(module, torch.nn.Module):
            continue
        cfg = getattr(getattr(module, "hf_quantizer", None), "quantization_config", None) or \
            getattr(getattr(module, "config", None), "quantization_config", None)
        method = cfg.get("quant_method") if isinstance(cfg, dict) else getattr(cfg, "quant_method", None)
        backend = str(getattr(method, "value", method)) if method is not None else _param_backend(module)
        if backend is None or backend == "None":
            continue
        backend = _BACKENDS.get(backend, backend)
        spec = requested.get(name)
        config = {} if spec or cfg is None else _plain(cfg if isinstance(cfg, dict) else cfg.to_dict())
        out.append(Quantization(component=name, backend=backend, spec=spec, config=config))
    return out


def transformer_file_of(pipe) -> TransformerFile | None:
    """The single file `--transformer-file` loaded the transformer from: path, format, sha256 and size."""
    path = getattr(pipe, FILE_ATTR, None)
    if not path:
        return None
    local = Path(path).expanduser()
    on_disk = local.is_file()
    return TransformerFile(path=path, format=file_format(path), sha256=file_sha256(local) if on_disk else None,
                           bytes=local.stat().st_size if on_disk else None)


def provenance(pipe) -> dict[str, Any]:
    """`ModelInfo` fields for what the pipeline carries: adapters, quantization, transformer file."""
    return {"adapters": adapters_of(pipe), "quantization": quantization_of(pipe),
            "transformer_file": transformer_file_of(pipe)}


def _adapter_text(a: AdapterInfo) -> str:
    where = f"{a.source}/{a.weight_name}" if a.source and a.weight_name else a.source or a.name
    return f"{where} at {a.scale:g}{' (fused)' if a.fused else ''}"


def _adapters_differ(was: list[AdapterInfo], now: list[AdapterInfo]) -> bool:
    if len(was) != len(now):
        return True
    for a, b in zip(was, now):
        same_file = a.sha256 == b.sha256 if a.sha256 and b.sha256 else (a.source == b.source or not (a.source and b.source))
        if not same_file or abs(a.scale - b.scale) > 1e-6 or a.fused != b.fused:
            return True
    return False


def _quant_text(qs: list[Quantization]) -> str:
    if not qs:
        return "full-precision weights"
    return ", ".join(f"{q.component} {q.spec or q.backend}" for q in qs)


def setup_differences(model: ModelInfo, pipe) -> list[str]:
    """What differs between the set-up a profile was measured on and the pipeline's, one text per field."""
    out = []
    now = adapters_of(pipe)
    if _adapters_differ(model.adapters, now):
        out.append(f"model.adapters: profile measured with {', '.join(map(_adapter_text, model.adapters)) or 'no LoRA'}"
                   f", pipeline has {', '.join(map(_adapter_text, now)) or 'no LoRA'}")
    quant = quantization_of(pipe)
    key = lambda qs: sorted((q.component, q.backend, q.spec or "") for q in qs)  # noqa: E731
    if key(model.quantization) != key(quant):
        out.append(f"model.quantization: profile measured on {_quant_text(model.quantization)}, pipeline has "
                   f"{_quant_text(quant)}")
    tf, was = transformer_file_of(pipe), model.transformer_file
    if tf is None and was is not None:
        out.append(f"model.transformer_file: profile measured on {was.path}'s transformer, this one was not loaded "
                   "with --transformer-file")
    elif tf is not None and (was is None or (was.sha256 != tf.sha256 if was.sha256 and tf.sha256 else
                                             was.path != tf.path)):
        out.append(f"model.transformer_file: profile measured on {was.path if was else 'the pipeline folder'}"
                   f"'s transformer, pipeline loads {tf.path}")
    return out


def setup_warning(model: ModelInfo, pipe) -> str | None:
    """One warning naming how the pipeline's set-up differs from the profile's; None when it does not.

    A LoRA whose scale differs by `LORA_RECALIBRATE_SCALE` or more from the profile's moves the curves enough to
    recalibrate (docs/workflows.md); quantization and single files moved them little in the measurements."""
    diffs = setup_differences(model, pipe)
    if not diffs:
        return None
    total = lambda ads: sum(abs(a.scale) for a in ads)  # noqa: E731
    moved = abs(total(adapters_of(pipe)) - total(model.adapters))
    advice = ("a LoRA at scale ≥ " f"{LORA_RECALIBRATE_SCALE:g} moves the curves: recalibrate with the same --lora"
              if any(d.startswith("model.adapters") for d in diffs) and moved >= LORA_RECALIBRATE_SCALE
              else "check it with `magcache profile verify`")
    return f"the profile was measured on another set-up ({'; '.join(diffs)}): {advice}"
