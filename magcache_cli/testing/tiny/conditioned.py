"""Tiny pieces for image-conditioned workflows, built offline like the families (see the package docstring).

Most image-conditioned pipelines load the tiny text-to-X folders with another class (FluxImg2ImgPipeline,
FluxInpaintPipeline, FluxKontextPipeline and StableDiffusion3Img2ImgPipeline load `flux` / `sd3` as they
are). Two need parts of their own:

* `build_wan_i2v`: WanImageToVideoPipeline (Wan 2.2 style: no CLIP image encoder, `image_dim=None`). Its
  transformer takes the noise latents plus the first-frame condition (`vae_scale_factor_temporal` mask channels
  + the image latents): 4 + 4 + 4 = 12 input channels for the 4-channel tiny Wan VAE.
* `build_flux_controlnet`: a FluxControlNetModel matching the tiny `flux` transformer, saved as a component
  folder for `--component controlnet=DIR` (FluxControlNetPipeline).
"""

from __future__ import annotations

from pathlib import Path

from .parts import _denoiser
from .wan import _build_wan

WAN_I2V_CALL = dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=5.0,
                    negative_prompt="blurry, low quality")


def build_wan_i2v(out_dir: str | Path, seed: int = 0) -> Path:
    import torch
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = _build_wan(seed)
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=12, out_channels=4,
            text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        )
        pipe = WanImageToVideoPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                                       scheduler=base.scheduler, transformer=_denoiser(transformer, seed))
    out = Path(out_dir)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def build_flux_controlnet(out_dir: str | Path, seed: int = 0) -> Path:
    """A ControlNet for the tiny `flux` transformer (same widths, one double block)."""
    import torch
    from diffusers import FluxControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FluxControlNetModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=0, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=False,
            axes_dims_rope=(4, 4, 8),
        )
        net = _denoiser(net, seed)  # zero-initialised output projections would make it a no-op
    out = Path(out_dir)
    net.save_pretrained(str(out), safe_serialization=True)
    return out


def sample_image(path: str | Path, size: tuple[int, int] = (32, 32), seed: int = 0, mode: str = "RGB") -> Path:
    """A deterministic noise image file (PNG) for tests."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    w, h = size
    channels = 3 if mode == "RGB" else 1
    arr = (rng.rand(h, w, channels) * 255).astype("uint8")
    Image.fromarray(arr if channels == 3 else arr[..., 0], mode=None).convert(mode).save(path)
    return Path(path)
