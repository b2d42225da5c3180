"""The registry entry of one tiny pipeline (`TinyFamily`) and the values several family modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class TinyFamily:
    """One tiny pipeline recipe.

    `call_kwargs` are passed as ``pipe(prompt=..., num_inference_steps=..., generator=...,
    **call_kwargs)``; they never contain prompt, num_inference_steps, generator or output_type.
    `guidance` is one of ``sequential-named``, ``sequential-unnamed``, ``batched``, ``none``.
    `text_tokens` / `image_tokens` are the sequence lengths one denoiser call sees for the prompt
    "a cat" with these call_kwargs, per sample (for the UNet family: cross-attention tokens and 0).
    """

    name: str
    pipeline_class_name: str
    call_kwargs: dict
    guidance: str
    notes: str
    text_tokens: int = 0
    image_tokens: int = 0
    output_shape: tuple = ()  # shape of `pipe(..., output_type="np")`.images (or .frames for video)
    blocks: tuple = ()  # the denoiser's main block lists (ModuleList attribute paths), in call order
    load: dict = field(default_factory=dict)  # LoadOptions fields the pipeline needs (e.g. vae_tiling=True)
    builder: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)


_NEG = "blurry, low quality"
_DOUBLE_SINGLE = ("transformer_blocks", "single_transformer_blocks")
_IMG32 = (1, 32, 32, 3)
