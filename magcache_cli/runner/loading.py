"""Load any diffusers pipeline (hub id or local dir) and build its call arguments."""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magcache_cli.errors import LoadError, UsageError
from magcache_cli.runner.setups import ModelSetup, check_setup, finish, from_pretrained_kwargs
from magcache_cli.types import Device, Dtype, Offload

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
OFFLOAD_MODES = Offload.values()
# Models that ship inside the package, addressable without network.
BUILTIN_MODELS = {"builtin:demo": Path(__file__).resolve().parents[1] / "demo_model"}
# Call settings the bundled demo model was trained for.
DEMO_CALL = {"num_inference_steps": 28, "guidance_scale": 4.0, "height": 32, "width": 32}


@dataclass
class LoadOptions:
    model: str
    revision: str | None = None
    variant: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    offload: str = "none"
    allow_pickle: bool = False
    trust_remote_code: bool = False
    vae_tiling: bool = False  # vae.enable_tiling() after loading (Allegro's VAE only decodes tiled)
    vae_slicing: bool = False  # vae.enable_slicing(): decode the batch one sample at a time
    pipeline: str | None = None  # another pipeline class on the same weights, e.g. FluxImg2ImgPipeline
    components: dict[str, str] | None = None  # extra components: name -> hub id or folder (controlnet)
    setup: ModelSetup = field(default_factory=ModelSetup)  # LoRAs, quantization, a single-file transformer


def resolve_device(device: str) -> str:
    if device == Device.AUTO:
        if torch.cuda.is_available():
            return Device.CUDA.value
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return Device.MPS.value
        return Device.CPU.value
    if device not in Device.values() or device == Device.AUTO:
        raise UsageError(f"unknown device {device!r}", hint="use auto, cuda, mps or cpu")
    if device == Device.CUDA and not torch.cuda.is_available():
        raise UsageError("`device=cuda` was asked for, but torch sees no CUDA GPU", hint="use `device=auto` or `device=cpu`")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == Dtype.AUTO:
        if device == Device.CUDA:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == Device.MPS else torch.float32
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}", hint="use auto, bfloat16, float16 or float32")
    return DTYPES[dtype]


def device_name(device: str) -> str:
    if device == Device.CUDA:
        return torch.cuda.get_device_name()
    return device


def quiet_libraries() -> None:
    """Silence diffusers'/transformers' own progress bars and info logs (the CLI shows its own)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(opts: LoadOptions):
    """Load through `DiffusionPipeline.from_pretrained`; returns (pipe, device, dtype)."""
    from magcache_cli.runner.classes import load_components, pipeline_loader

    if opts.offload not in OFFLOAD_MODES:
        raise UsageError(f"unknown offload mode {opts.offload!r}", hint="use none, model or sequential")
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    if opts.model.startswith("builtin:") and opts.model not in BUILTIN_MODELS:
        raise LoadError(f"unknown built-in model {opts.model}", hint=f"use one of {', '.join(BUILTIN_MODELS)}")
    local = BUILTIN_MODELS.get(opts.model) or Path(opts.model).expanduser()
    looks_local = opts.model in BUILTIN_MODELS or opts.model.startswith((".", "/", "~")) or local.exists()
    if looks_local and not (local / "model_index.json").is_file():
        raise LoadError(f"{opts.model} is not a diffusers pipeline folder (no model_index.json)",
                        hint="pass a folder written by save_pretrained, or a Hugging Face hub id")
    loader = pipeline_loader(opts.pipeline)
    check_setup(opts.setup, device, dtype)  # a missing backend or GPU is said before anything loads
    ref = str(local) if looks_local else opts.model
    extra = load_components(opts.components or {}, dtype, opts.allow_pickle)
    extra.update(from_pretrained_kwargs(opts.setup, ref, opts.revision, dtype))
    try:
        pipe = loader.from_pretrained(
            ref,
            **extra,
            revision=opts.revision,
            variant=opts.variant,
            dtype=dtype,
            use_safetensors=None if opts.allow_pickle else True,
            trust_remote_code=opts.trust_remote_code,
        )
    except Exception as e:  # diffusers/hub raise many types; all mean "could not load"
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = "check the model id / path and your network or HF_TOKEN"
        if "safetensors" in text.lower():
            hint = "this model has no safetensors weights; pass `allow_pickle=True` only if you trust it"
        elif os.environ.get("HF_HUB_OFFLINE") == "1":
            hint = "HF_HUB_OFFLINE=1 is set: download the model first or unset it"
        elif "remote code" in text.lower() or "trust_remote_code" in text:
            hint = "this pipeline needs custom code; pass `trust_remote_code=True` only if you trust it"
        raise LoadError(f"could not load {opts.model}: {text}", hint=hint) from e
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    finish(pipe, opts.setup)
    configure_vae(pipe, tiling=opts.vae_tiling, slicing=opts.vae_slicing)
    # "cuda" is the current device (a torchrun rank's own, cuda:LOCAL_RANK); offloading must be told its index
    target = f"cuda:{torch.cuda.current_device()}" if device == Device.CUDA else device
    if opts.offload == Offload.MODEL:
        pipe.enable_model_cpu_offload(device=target)
    elif opts.offload == Offload.SEQUENTIAL:
        pipe.enable_sequential_cpu_offload(device=target)
    else:
        pipe.to(device)
    return pipe, device, dtype


def configure_vae(pipe, *, tiling: bool = False, slicing: bool = False) -> None:
    """Switch on the VAE's tiled and/or sliced decoding, as `pipe.vae.enable_tiling()` / `enable_slicing()`."""
    for wanted, method, name in ((tiling, "enable_tiling", "vae_tiling"), (slicing, "enable_slicing", "vae_slicing")):
        if not wanted:
            continue
        vae = getattr(pipe, "vae", None)
        if not callable(getattr(vae, method, None)):
            raise UsageError(f"`{name}`: {type(pipe).__name__}'s VAE ({type(vae).__name__}) has no {method}()",
                             hint=f"leave `{name}` off for this pipeline")
        getattr(vae, method)()


def call_parameters(pipe) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def build_call_kwargs(pipe, *, steps: int | None = None, guidance_scale: float | None = None,
                      negative_prompt: str | None = None, height: int | None = None, width: int | None = None,
                      num_frames: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pipeline call arguments, checked against the pipeline's `__call__` signature.

    Named settings left at None are not passed; an `extra` value of None is passed as None (``--set
    intermediate_timesteps=null`` turns a pipeline default off)."""
    given = {
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
        "negative_prompt": negative_prompt,
        "height": height,
        "width": width,
        "num_frames": num_frames,
    }
    from magcache_cli.runner.signature import refuse_unknown

    kwargs = {**{k: v for k, v in given.items() if v is not None}, **(extra or {})}
    refuse_unknown(type(pipe).__name__, call_parameters(pipe), kwargs)
    return kwargs


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in (
        "1", "true", "yes", "on")


def pipeline_class_name(model: str, revision: str | None = None) -> str | None:
    """The pipeline class a model's `model_index.json` names, read without loading weights: from a local
    folder, the hub cache, or (hub ids only, not in offline mode) by downloading that one small file. None
    when it cannot be read: then the arguments are checked after loading."""
    local = BUILTIN_MODELS.get(model) or Path(model).expanduser()
    try:
        if local.is_dir():
            path = local / "model_index.json"
        else:
            from huggingface_hub import hf_hub_download, try_to_load_from_cache

            found = try_to_load_from_cache(model, "model_index.json", revision=revision)
            if not isinstance(found, str) and not _offline():
                found = hf_hub_download(model, "model_index.json", revision=revision)
            path = Path(found) if isinstance(found, str) else None
        if path is None or not path.is_file():
            return None
        name = json.loads(path.read_text(encoding="utf-8")).get("_class_name")
    except Exception:  # no network, a gated or missing repo, odd JSON: the loader will say it properly
        return None
    return name if isinstance(name, str) else None


def _config(model: str, revision: str | None, folder: str) -> dict | None:
    """`<folder>/config.json` of a local pipeline folder or a hub model already in the cache (never fetched)."""
    local = BUILTIN_MODELS.get(model) or Path(model).expanduser()
    try:
        if local.is_dir():
            path = local / folder / "config.json"
        else:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model, f"{folder}/config.json", revision=revision)
            path = Path(found) if isinstance(found, str) else None
        return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None
    except (OSError, ValueError, TypeError):  # an unreadable or odd config: the pipeline will tell
        return None


def size_multiple(model: str, revision: str | None = None) -> int | None:
    """The multiple a pipeline's height and width must have, read from its configs without loading weights:
    the VAE's spatial downsampling times the transformer's patch size. None when the configs are not on disk
    or say nothing known (then the pipeline checks the sizes itself)."""
    vae = _config(model, revision, "vae")
    if not vae:
        return None
    if vae.get("scale_factor_spatial"):  # Wan
        factor = vae["scale_factor_spatial"]
    elif vae.get("temperal_downsample"):  # Wan 2.1 / Qwen-Image VAEs (diffusers' spelling)
        factor = 2 ** len(vae["temperal_downsample"])
    elif vae.get("spatial_compression_ratio"):  # HunyuanVideo, LTX
        factor = vae["spatial_compression_ratio"]
    elif vae.get("block_out_channels"):
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
    else:
        return None
    patch = (_config(model, revision, "transformer") or {}).get("patch_size") or 1
    if isinstance(patch, (list, tuple)):
        patch = patch[-1]
    try:
        return int(factor) * int(patch)
    except (TypeError, ValueError):
        return None
