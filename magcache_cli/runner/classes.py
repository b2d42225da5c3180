"""Another pipeline class on the same weights (`FluxImg2ImgPipeline`, `AutoPipelineForInpainting`, ...), extra
components the weights do not include (a ControlNet), and the call arguments a pipeline class takes."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from magcache_cli.errors import LoadError

_AUTO_HINT = "e.g. FluxImg2ImgPipeline, FluxInpaintPipeline, WanImageToVideoPipeline or AutoPipelineForImage2Image"


def pipeline_loader(name: str | None):
    """The diffusers class whose `from_pretrained` loads the weights: `name` (a pipeline class or an
    `AutoPipelineFor*` class), or `DiffusionPipeline` (the class the weights name) when None."""
    import diffusers

    if not name:
        return diffusers.DiffusionPipeline
    cls = getattr(diffusers, name, None)
    if cls is None or not isinstance(cls, type) or not hasattr(cls, "from_pretrained") or name.endswith("Model"):
        raise LoadError(f"diffusers {diffusers.__version__} has no pipeline class {name}", hint=_AUTO_HINT)
    return cls


def call_arguments(cls_or_pipe) -> set[str] | None:
    """The call arguments a pipeline class (or instance) takes; None for an `AutoPipelineFor*` class, which
    names no call until it is resolved by loading."""
    cls = cls_or_pipe if isinstance(cls_or_pipe, type) else type(cls_or_pipe)
    if cls.__name__.startswith("AutoPipeline") or not callable(getattr(cls, "__call__", None)):
        return None
    names = set(inspect.signature(cls.__call__).parameters) - {"self", "kwargs", "args"}
    return names or None


def parse_components(items: list[str] | None) -> dict[str, str]:
    """`NAME=ID_OR_DIR` pairs (e.g. `controlnet=./flux-canny`)."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, ref = item.partition("=")
        name, ref = name.strip(), ref.strip()
        if not sep or not name.isidentifier() or not ref:
            raise LoadError(f"component {item!r} is not NAME=ID_OR_DIR", hint="e.g. controlnet=InstantX/FLUX.1-dev-Controlnet-Canny")
        out[name] = ref
    return out


def load_components(components: dict[str, str], dtype, allow_pickle: bool = False) -> dict[str, Any]:
    """Load each extra component with the model class its config names (`diffusers.AutoModel`)."""
    if not components:
        return {}
    from diffusers import AutoModel

    out = {}
    for name, ref in components.items():
        local = Path(ref).expanduser()
        if (ref.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").is_file():
            raise LoadError(f"component {name}: {ref} is not a model folder (no config.json)",
                            hint="pass a folder written by save_pretrained, or a Hugging Face hub id")
        try:
            out[name] = AutoModel.from_pretrained(str(local) if local.exists() else ref, torch_dtype=dtype,
                                                  use_safetensors=None if allow_pickle else True)
        except Exception as e:  # diffusers/hub raise many types; all mean "could not load"
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LoadError(f"could not load component {name} from {ref}: {text}",
                            hint="check the id or folder; it must hold a diffusers model (config.json)") from e
    return out
