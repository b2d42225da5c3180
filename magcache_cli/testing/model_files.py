"""Files the LoRA / quantization / single-file tests load, built offline from a tiny pipeline's own weights: a
LoRA saved with diffusers' `save_lora_weights`, the transformer as one `.safetensors` file, and the same
weights as a `.gguf` file (Q8_0 where the shape allows it, written with the `gguf` package)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch


def build_lora(model_dir: str | Path, out: str | Path, *, rank: int = 2, std: float = 0.3, seed: int = 0,
               targets: tuple[str, ...] = ("to_q", "to_k", "to_v")) -> Path:
    """A LoRA for the pipeline's transformer with random A and B (peft's default leaves B at 0, a no-op),
    saved as `<out>` (a `.safetensors` file) through the pipeline class's `save_lora_weights`."""
    import diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    out = Path(out)
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(model_dir))
    t = pipe.transformer
    t.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights="gaussian"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in t.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    type(pipe).save_lora_weights(out.parent, transformer_lora_layers=get_peft_model_state_dict(t),
                                 weight_name=out.name)
    return out


def transformer_file(model_dir: str | Path, out: str | Path) -> Path:
    """The pipeline's transformer weights as one `.safetensors` file (diffusers layout)."""
    src = Path(model_dir) / "transformer" / "diffusion_pytorch_model.safetensors"
    shutil.copyfile(src, out)
    return Path(out)


def build_gguf(model_dir: str | Path, out: str | Path) -> Path:
    """The pipeline's transformer weights as a `.gguf` file: Q8_0 for matrices whose rows are a multiple of 32
    values, float32 for the rest (diffusers' GGUF loader dequantizes on the fly)."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    sd = load_file(str(Path(model_dir) / "transformer" / "diffusion_pytorch_model.safetensors"))
    w = gguf.GGUFWriter(str(out), "magcache-test")
    for key, value in sd.items():
        a = value.float().numpy()
        if a.ndim == 2 and a.shape[-1] % 32 == 0:
            w.add_tensor(key, gguf.quantize(a, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(key, a.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(out)
