"""Tiny random-weight diffusers pipelines, built offline, for tests and demos.

`build_tiny_pipeline(family, out_dir, seed)` creates every component of a pipeline from small
configs (tokenizers, text encoders, VAE, denoiser, scheduler), saves it with
`save_pretrained(out_dir, safe_serialization=True)` and returns `out_dir`. The result loads back
with `DiffusionPipeline.from_pretrained(out_dir)` with `HF_HUB_OFFLINE=1` and runs on CPU in well
under two seconds per call (4 steps, one thread).

Design notes
------------
* Tokenizers are the real transformers classes (CLIPTokenizer, T5TokenizerFast, Qwen2TokenizerFast,
  GemmaTokenizerFast, LlamaTokenizerFast) built from an in-memory *character-level* vocabulary
  (no merges), so ids are identical across processes and machines. Nothing is downloaded and
  `train_new_from_iterator` is never used.
* Text encoders are tiny configs of the real model classes (CLIPTextModel[WithProjection],
  T5EncoderModel, UMT5EncoderModel, Qwen2_5_VLForConditionalGeneration, Gemma2Model, LlamaModel,
  LlamaForCausalLM, GlmModel). CogView4 / HiDream's Llama-3 tokenizers are plain
  PreTrainedTokenizerFast objects over the same kind of character-level byte-level BPE.
* DiTs that zero-initialise modulation / gate / output layers would make a random tiny model's
  blocks identity maps (residual ratio 0 or NaN). After building the denoiser, every parameter
  tensor that is entirely zero is re-drawn from N(0, 0.1^2) with a `torch.Generator` seeded from
  `seed` and `zlib.crc32(parameter_name)`, so the weights (and the saved bytes) are deterministic.
  (With diffusers 0.42 constructors this only hits a few norm biases - wan, cogvideox, hunyuanvideo,
  the sdxl UNet - and mochi's pos_frequencies; the guard stays for models that do zero-init.) All
  other initialisation is seeded with `torch.manual_seed(seed)` before each component.
* The number of text tokens the denoiser sees differs from the number of image tokens in every
  family (`TinyFamily.text_tokens` / `TinyFamily.image_tokens`, per transformer call, batch 1,
  prompt "a cat"; some pipelines do not pad text, see each family's notes).

Guidance modes (read in the diffusers 0.42.1 pipeline sources, checked by tests/test_tiny.py)
-------------------------------------------------------------------------------------------
* ``sequential-named``: one denoiser call per branch, cond first, wrapped in
  ``transformer.cache_context("cond")`` / ``cache_context("uncond")``: flux (true CFG), wan,
  qwenimage (true CFG), hunyuanvideo-truecfg, cogview4.
* ``sequential-unnamed``: one call per branch, cond first, no cache_context: chroma, lumina2.
* ``batched``: one call on ``torch.cat([negative, positive])``: sd3, sdxl (UNet), pixart, sana,
  auraflow, hidream (no cache_context); cogvideox, ltx, mochi (inside ``cache_context("cond_uncond")``).
* ``none``: one call per step: flux-nocfg, hunyuanvideo (guidance-distilled; both inside
  ``cache_context("cond")``).

Stretch families: pixart (PixArt-Sigma), sana, auraflow, ltx, mochi, cogview4 and hidream build and
run. Skipped (see `SKIPPED_FAMILIES`): kandinsky5 (its Qwen2VLProcessor needs torchvision) and
allegro (its VAE only decodes with tiling enabled, which is not saved with the pipeline).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["FAMILIES", "SKIPPED_FAMILIES", "TinyFamily", "build_tiny_pipeline"]


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
    builder: Callable[[int], Any] | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------------
# Tokenizers: real classes, in-memory character-level vocabularies
# --------------------------------------------------------------------------------------------

_PRINTABLE = [chr(i) for i in range(33, 127)]  # visible ASCII, no space


def _byte_level_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _clip_tokenizer(model_max_length: int = 77):
    from transformers import CLIPTokenizer

    alphabet = _byte_level_alphabet()
    tokens = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [c + "</w>" for c in alphabet]
    vocab = {t: i for i, t in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _t5_tokenizer(model_max_length: int = 512):
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in _PRINTABLE]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def _qwen2_tokenizer(extra_special: list[str], model_max_length: int = 4096):
    from transformers import Qwen2TokenizerFast

    vocab = {t: i for i, t in enumerate(_byte_level_alphabet())}
    tok = Qwen2TokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)
    tok.add_special_tokens({"additional_special_tokens": extra_special})
    return tok


def _byte_level_fast_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str,
                               model_max_length: int = 4096):
    """A generic `PreTrainedTokenizerFast` (tiktoken-style byte-level BPE, as used by GLM-4 and Llama-3)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    alphabet = _byte_level_alphabet()
    vocab = {t: i for i, t in enumerate(alphabet + specials)}
    backend = Tokenizer(BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    if bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    kw = dict(eos_token=eos, pad_token=pad, model_max_length=model_max_length)
    if bos is not None:
        kw["bos_token"] = bos
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kw)
    tok.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in (bos, eos, pad)]})
    return tok


def _byte_fallback_vocab(specials: list[str]) -> dict[str, int]:
    tokens = specials + [f"<0x{i:02X}>" for i in range(256)] + ["\u2581"] + _PRINTABLE
    return {t: i for i, t in enumerate(tokens)}


def _gemma_tokenizer(model_max_length: int = 4096):
    from transformers import GemmaTokenizerFast

    vocab = _byte_fallback_vocab(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    return GemmaTokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)


def _llama_tokenizer(model_max_length: int = 4096):
    from transformers import LlamaTokenizerFast

    vocab = _byte_fallback_vocab(["<unk>", "<s>", "</s>"])
    tok = LlamaTokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)
    tok.pad_token = "<unk>"
    return tok


# --------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------


def _clip_text(tokenizer, seed: int, hidden: int = 32, projection_dim: int | None = None):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection_dim or hidden,
        hidden_act="gelu",
    )
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection_dim is not None else CLIPTextModel
    return cls(cfg).eval()


def _t5_config(tokenizer, d_model: int):
    return dict(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def _t5_text(tokenizer, seed: int, d_model: int = 32):
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(**_t5_config(tokenizer, d_model))).eval()


def _umt5_text(tokenizer, seed: int, d_model: int = 32):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    return UMT5EncoderModel(UMT5Config(**_t5_config(tokenizer, d_model))).eval()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _unzero(module, seed: int, std: float = 0.1) -> int:
    """Re-draw every all-zero parameter tensor of `module` deterministically. Returns how many."""
    import torch

    count = 0
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.numel() == 0 or torch.count_nonzero(param).item() != 0:
                continue
            gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32).to(param.dtype) * std)
            count += 1
    return count


def _denoiser(module, seed: int):
    _unzero(module, seed)
    return module.eval()


def _kl_vae(seed: int, latent_channels: int = 4, block_out_channels=(8, 16), **kw):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        **kw,
    ).eval()


def _flow_scheduler(**kw):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**kw)


# --------------------------------------------------------------------------------------------
# Builders: each returns a pipeline instance
# --------------------------------------------------------------------------------------------


def _build_flux(seed: int):
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel

    tok = _clip_tokenizer()
    tok2 = _t5_tokenizer()
    te = _clip_text(tok, seed, hidden=32)
    te2 = _t5_text(tok2, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=False,
        axes_dims_rope=(4, 4, 8),
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return FluxPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        transformer=_denoiser(transformer, seed),
    )


def _build_sd3(seed: int):
    import torch
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    tok3 = _t5_tokenizer()
    te = _clip_text(tok, seed, hidden=16, projection_dim=16)
    te2 = _clip_text(tok2, seed + 1, hidden=16, projection_dim=16)
    te3 = _t5_text(tok3, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # == clip 16 + 16 == t5 d_model
        caption_projection_dim=32,
        pooled_projection_dim=32,  # clip proj 16 + 16
        out_channels=4,
        pos_embed_max_size=16,
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return StableDiffusion3Pipeline(
        transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        text_encoder_3=te3,
        tokenizer_3=tok3,
    )


def _build_sdxl(seed: int):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    te = _clip_text(tok, seed, hidden=32)
    te2 = _clip_text(tok2, seed + 1, hidden=32, projection_dim=32)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading",
        steps_offset=1,
    )
    vae = _kl_vae(seed, latent_channels=4)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te,
        text_encoder_2=te2,
        tokenizer=tok,
        tokenizer_2=tok2,
        unet=_denoiser(unet, seed),
        scheduler=scheduler,
    )


def _build_chroma(seed: int):
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 8),
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    vae = _kl_vae(seed, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False,
                  shift_factor=0.0609, scaling_factor=1.5035)
    return ChromaPipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _build_wan(seed: int):
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=32,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    return WanPipeline(
        tokenizer=tok,
        text_encoder=te,
        vae=vae,
        scheduler=_flow_scheduler(shift=5.0),
        transformer=_denoiser(transformer, seed),
    )


def _build_qwenimage(seed: int):
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = _qwen2_tokenizer(specials)
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "max_position_embeddings": 2048,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        vocab_size=len(tok),
        hidden_size=16,
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    te = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,  # 4 latent channels packed 2x2
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    return QwenImagePipeline(
        scheduler=_flow_scheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                  base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
                                  time_shift_type="exponential"),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _build_cogvideox(seed: int):
    import torch
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)

    tok = _t5_tokenizer(model_max_length=226)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=32,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    ).eval()
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        timestep_spacing="trailing", snr_shift_scale=3.0,
    )
    return CogVideoXPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed), scheduler=scheduler
    )


def _build_hunyuanvideo(seed: int):
    import torch
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import LlamaConfig, LlamaModel

    tok = _llama_tokenizer()
    tok2 = _clip_tokenizer()
    torch.manual_seed(seed)
    te = LlamaModel(LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,  # the pipeline reads hidden_states[-3]
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )).eval()
    te2 = _clip_text(tok2, seed, hidden=8)
    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(4, 6, 6),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    ).eval()
    return HunyuanVideoPipeline(
        text_encoder=te,
        tokenizer=tok,
        transformer=_denoiser(transformer, seed),
        vae=vae,
        scheduler=_flow_scheduler(shift=7.0),
        text_encoder_2=te2,
        tokenizer_2=tok2,
    )


def _build_lumina2(seed: int):
    import torch
    from diffusers import Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = Gemma2Model(Gemma2Config(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,  # the pipeline reads hidden_states[-2]
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        sliding_window=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = Lumina2Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=(8, 4, 4),
        axes_lens=(300, 64, 64),
        cap_feat_dim=16,
    )
    # Lumina2Pipeline hard-codes vae_scale_factor = 8: the VAE needs 4 levels (3 downsamples).
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8, 8, 8, 8), use_quant_conv=False,
                  use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return Lumina2Pipeline(
        transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
    )


def _build_pixart(seed: int):
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tok = _t5_tokenizer(model_max_length=300)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,  # learned sigma, like the real model
        num_layers=2,
        cross_attention_dim=32,
        sample_size=16,
        patch_size=2,
        caption_channels=32,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        num_embeds_ada_norm=1000,
        attention_type="default",
        interpolation_scale=None,
    )
    vae = _kl_vae(seed, latent_channels=4)
    return PixArtSigmaPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=DPMSolverMultistepScheduler(),
    )


def _build_sana(seed: int):
    import torch
    from diffusers import AutoencoderDC, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    te = Gemma2Model(Gemma2Config(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=4096,
        sliding_window=4096,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=16,
        mlp_ratio=2.0,
        sample_size=16,
    )
    torch.manual_seed(seed)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    ).eval()
    return SanaPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=3.0),
    )


def _build_auraflow(seed: int):
    import torch
    from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = AuraFlowTransformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=32,
        out_channels=4,
        pos_embed_max_size=64,
    )
    vae = _kl_vae(seed, latent_channels=4)
    return AuraFlowPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(),
    )


def _build_ltx(seed: int):
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()
    return LTXPipeline(
        scheduler=_flow_scheduler(), vae=vae, text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _build_mochi(seed: int):
    import torch
    from diffusers import AutoencoderKLMochi, MochiPipeline, MochiTransformer3DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=32,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=16,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),  # GroupNorm(32) is hard-coded
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    ).eval()
    return MochiPipeline(
        scheduler=_flow_scheduler(), vae=vae, text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed),
    )


def _build_cogview4(seed: int):
    import torch
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel
    from transformers import GlmConfig, GlmModel

    tok = _byte_level_fast_tokenizer(["<|endoftext|>", "[gMASK]", "<sop>"], bos=None, eos="<|endoftext|>",
                                     pad="<|endoftext|>")
    tok.padding_side = "left"
    torch.manual_seed(seed)
    te = GlmModel(GlmConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,  # the pipeline reads hidden_states[-2]
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )).eval()
    torch.manual_seed(seed)
    transformer = CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        text_embed_dim=16,
        time_embed_dim=8,
        condition_dim=4,
        pos_embed_max_size=32,
        sample_size=16,
        rope_axes_dim=(64, 64),
    )
    vae = _kl_vae(seed, latent_channels=4)
    scheduler = _flow_scheduler(base_shift=0.25, max_shift=0.75, base_image_seq_len=256,
                                use_dynamic_shifting=True, time_shift_type="linear")
    return CogView4Pipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
                            scheduler=scheduler)


def _build_hidream(seed: int):
    import torch
    from diffusers import HiDreamImagePipeline, HiDreamImageTransformer2DModel
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _clip_tokenizer()
    tok2 = _clip_tokenizer()
    tok3 = _t5_tokenizer()
    tok4 = _byte_level_fast_tokenizer(
        ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], bos="<|begin_of_text|>", eos="<|eot_id|>",
        pad="<|eot_id|>",
    )
    te = _clip_text(tok, seed, hidden=16, projection_dim=16)
    te2 = _clip_text(tok2, seed + 1, hidden=16, projection_dim=16)
    te3 = _t5_text(tok3, seed, d_model=32)
    torch.manual_seed(seed)
    te4 = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok4),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok4.bos_token_id,
        eos_token_id=tok4.eos_token_id,
        pad_token_id=tok4.pad_token_id,
        attn_implementation="eager",  # the pipeline asks for output_attentions=True
    )).eval()
    torch.manual_seed(seed)
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=1,  # every call sees 4096 image tokens (see FAMILIES["hidream"].notes)
        caption_channels=[32, 16],  # [t5 d_model, llama hidden]
        text_emb_dim=32,  # clip-l proj 16 + clip-g proj 16
        num_routed_experts=2,
        num_activated_experts=1,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(64, 64),
        llama_layers=[0, 1],
    )
    # No mid-block attention: the latent is 128x128 (16k tokens) here.
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8,), use_quant_conv=False,
                  use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035,
                  mid_block_add_attention=False)
    return HiDreamImagePipeline(
        scheduler=_flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        text_encoder_2=te2,
        tokenizer_2=tok2,
        text_encoder_3=te3,
        tokenizer_3=tok3,
        text_encoder_4=te4,
        tokenizer_4=tok4,
        transformer=_denoiser(transformer, seed),
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_NEG = "blurry, low quality"

FAMILIES: dict[str, TinyFamily] = {}

#: Stretch families that are not built, with the reason.
SKIPPED_FAMILIES: dict[str, str] = {
    "kandinsky5": "Kandinsky5T2VPipeline's tokenizer is a Qwen2VLProcessor, which needs "
                  "Qwen2VLVideoProcessor, which needs torchvision (not installed here).",
    "allegro": "AutoencoderKLAllegro cannot decode without vae.enable_tiling(), which is runtime state "
               "that save_pretrained does not keep, so a reloaded pipeline cannot run as-is.",
}


def _register(fam: TinyFamily) -> None:
    FAMILIES[fam.name] = fam


_DOUBLE_SINGLE = ("transformer_blocks", "single_transformer_blocks")

_register(TinyFamily(
    name="flux",
    pipeline_class_name="FluxPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5,
                     negative_prompt=_NEG, true_cfg_scale=4.0),
    guidance="sequential-named",
    notes="True CFG (true_cfg_scale>1 and a negative prompt): two transformer calls per step, "
          "cache_context('cond') then cache_context('uncond').",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_flux,
))
_register(TinyFamily(
    name="flux-nocfg",
    pipeline_class_name="FluxPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5),
    guidance="none",
    notes="Same model as 'flux' without a negative prompt: one call per step, still inside "
          "cache_context('cond').",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_flux,
))
_register(TinyFamily(
    name="sd3",
    pipeline_class_name="StableDiffusion3Pipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]) in one call with no cache_context "
          "(skip_guidance_layers would add a third, unbatched call). Text = 77 CLIP tokens + "
          "max_sequence_length T5 tokens.",
    text_tokens=77 + 12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_sd3,
))
_register(TinyFamily(
    name="wan",
    pipeline_class_name="WanPipeline",
    call_kwargs=dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=5.0,
                     negative_prompt=_NEG),
    guidance="sequential-named",
    notes="Text-to-video. guidance_scale>1: cond call in cache_context('cond', step_index=, sigma=, "
          "num_inference_steps=) then uncond call in cache_context('uncond', ...). Text is padded to "
          "max_sequence_length.",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 64, 64, 3), blocks=("blocks",),
    builder=_build_wan,
))
_register(TinyFamily(
    name="qwenimage",
    pipeline_class_name="QwenImagePipeline",
    call_kwargs=dict(height=64, width=64, true_cfg_scale=4.0, negative_prompt=_NEG),
    guidance="sequential-named",
    notes="True CFG (true_cfg_scale>1 and a negative prompt): cond call in cache_context('cond') then "
          "uncond call in cache_context('uncond'). Text is NOT padded: the chat template minus its "
          "first 34 tokens, so cond and uncond calls see different text lengths (133 for 'a cat').",
    text_tokens=133, image_tokens=64, output_shape=(1, 64, 64, 3), blocks=("transformer_blocks",),
    builder=_build_qwenimage,
))
_register(TinyFamily(
    name="cogvideox",
    pipeline_class_name="CogVideoXPipeline",
    call_kwargs=dict(height=64, width=64, num_frames=9, max_sequence_length=16, guidance_scale=6.0,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]) in ONE call, wrapped in "
          "cache_context('cond_uncond'). max_sequence_length must equal the transformer's "
          "max_text_seq_length (16).",
    text_tokens=16, image_tokens=3 * 4 * 4, output_shape=(1, 9, 64, 64, 3), blocks=("transformer_blocks",),
    builder=_build_cogvideox,
))
_HUNYUAN_TEMPLATE = {"template": "{}", "crop_start": 0}
_register(TinyFamily(
    name="hunyuanvideo",
    pipeline_class_name="HunyuanVideoPipeline",
    call_kwargs=dict(height=32, width=32, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                     prompt_template=_HUNYUAN_TEMPLATE),
    guidance="none",
    notes="Guidance-distilled: guidance_scale is embedded (guidance_embeds=True), one call per step "
          "in cache_context('cond'). True CFG needs true_cfg_scale>1 AND a negative prompt (see "
          "'hunyuanvideo-truecfg'). Blocks: transformer_blocks then single_transformer_blocks; the "
          "context_embedder.token_refiner has its own refiner_blocks. prompt_template is a bare '{}' "
          "because the default Llama chat template is ~500 characters (= tokens here) and would "
          "truncate the prompt away.",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_hunyuanvideo,
))
_register(TinyFamily(
    name="hunyuanvideo-truecfg",
    pipeline_class_name="HunyuanVideoPipeline",
    call_kwargs=dict(height=32, width=32, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                     prompt_template=_HUNYUAN_TEMPLATE, negative_prompt=_NEG, true_cfg_scale=4.0),
    guidance="sequential-named",
    notes="Same model as 'hunyuanvideo' with true CFG: cond call in cache_context('cond') then uncond "
          "call in cache_context('uncond').",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_hunyuanvideo,
))
_register(TinyFamily(
    name="chroma",
    pipeline_class_name="ChromaPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.0,
                     negative_prompt=_NEG),
    guidance="sequential-unnamed",
    notes="CFG as two sequential transformer calls (cond first, then uncond) with no cache_context.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=_DOUBLE_SINGLE,
    builder=_build_chroma,
))
_register(TinyFamily(
    name="lumina2",
    pipeline_class_name="Lumina2Pipeline",
    call_kwargs=dict(height=64, width=64, guidance_scale=4.0, negative_prompt=_NEG, max_sequence_length=256),
    guidance="sequential-unnamed",
    notes="CFG as two sequential calls (cond, then uncond) with NO cache_context. With "
          "cfg_trunc_ratio<1 the uncond call is dropped on late steps (calls per step vary). The "
          "pipeline prepends a ~170-character system prompt, so max_sequence_length stays at 256 to "
          "keep the user prompt. noise_refiner / context_refiner run before the main 'layers' on "
          "image-only / text-only tokens; 'layers' see the joint sequence.",
    text_tokens=256, image_tokens=16, output_shape=(1, 64, 64, 3), blocks=("layers",),
    builder=_build_lumina2,
))
_register(TinyFamily(
    name="sdxl",
    pipeline_class_name="StableDiffusionXLPipeline",
    call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
    guidance="batched",
    notes="UNet denoiser (no transformer): used to test the 'no transformer block stack' error. CFG "
          "batched as torch.cat([negative, positive]).",
    text_tokens=77, image_tokens=0, output_shape=(1, 32, 32, 3), blocks=(),
    builder=_build_sdxl,
))

# ---- stretch families ----
_register(TinyFamily(
    name="pixart",
    pipeline_class_name="PixArtSigmaPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5, negative_prompt=_NEG,
                     use_resolution_binning=False, clean_caption=False),
    guidance="batched",
    notes="PixArt-Sigma. CFG batched as torch.cat([negative, positive]), no cache_context. "
          "use_resolution_binning=False because the tiny sample_size has no aspect-ratio bin table.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_pixart,
))
_register(TinyFamily(
    name="sana",
    pipeline_class_name="SanaPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5, negative_prompt=_NEG,
                     use_resolution_binning=False),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]), no cache_context. The default "
          "complex_human_instruction is prepended (~2000 characters through the tiny Gemma2); the "
          "transformer still sees max_sequence_length text tokens.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_sana,
))
_register(TinyFamily(
    name="auraflow",
    pipeline_class_name="AuraFlowPipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=3.5, negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]), no cache_context. Blocks: "
          "joint_transformer_blocks then single_transformer_blocks.",
    text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3),
    blocks=("joint_transformer_blocks", "single_transformer_blocks"),
    builder=_build_auraflow,
))
_register(TinyFamily(
    name="ltx",
    pipeline_class_name="LTXPipeline",
    call_kwargs=dict(height=32, width=32, num_frames=9, max_sequence_length=16, guidance_scale=3.0,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="LTX-Video. CFG batched as torch.cat([negative, positive]) in one call wrapped in "
          "cache_context('cond_uncond').",
    text_tokens=16, image_tokens=3 * 8 * 8, output_shape=(1, 9, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_ltx,
))
_register(TinyFamily(
    name="mochi",
    pipeline_class_name="MochiPipeline",
    call_kwargs=dict(height=64, width=64, num_frames=7, max_sequence_length=16, guidance_scale=4.5,
                     negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]) in one call wrapped in "
          "cache_context('cond_uncond').",
    text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 7, 64, 64, 3), blocks=("transformer_blocks",),
    builder=_build_mochi,
))
_register(TinyFamily(
    name="cogview4",
    pipeline_class_name="CogView4Pipeline",
    call_kwargs=dict(height=32, width=32, guidance_scale=5.0, negative_prompt=_NEG),
    guidance="sequential-named",
    notes="CFG as a cond call in cache_context('cond') then an uncond call in cache_context('uncond'). "
          "Text is padded (on the left) to a multiple of 16 only, so cond ('a cat': 16) and uncond "
          "(32) text lengths differ.",
    text_tokens=16, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
    builder=_build_cogview4,
))
_register(TinyFamily(
    name="hidream",
    pipeline_class_name="HiDreamImagePipeline",
    call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=5.0, negative_prompt=_NEG),
    guidance="batched",
    notes="CFG batched as torch.cat([negative, positive]), no cache_context. The pipeline rescales "
          "height/width to an area of (128 * vae_scale_factor)^2, so every call sees 4096 image tokens "
          "(here a 128x128 px image with a 1-level VAE) whatever height/width say; the tiny "
          "transformer has a single attention head to stay fast. The transformer takes "
          "encoder_hidden_states_t5 / encoder_hidden_states_llama3 (no encoder_hidden_states): blocks "
          "see 12 T5 + 12 Llama(last layer) + 12 Llama(layer i) = 36 text tokens; MoE feed-forward. "
          "Slowest family: ~0.75 s for 4 steps on one idle core.",
    text_tokens=36, image_tokens=4096, output_shape=(1, 128, 128, 3),
    blocks=("double_stream_blocks", "single_stream_blocks"),
    builder=_build_hidream,
))


def build_tiny_pipeline(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline `family`, save it to `out_dir` (safetensors) and return `out_dir`."""
    if family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise KeyError(f"unknown tiny family {family!r}; known: {known}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builder = FAMILIES[family].builder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builder(seed)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out
