"""PixArt and Sana (cross-attention DiTs): pixart (Sigma), pixart-alpha, sana, sana-sprint, sana-video."""

from __future__ import annotations

from .encoders import _gemma2_text
from .family import TinyFamily, _IMG32, _NEG
from .parts import _denoiser, _flow_scheduler, _gemma_tokenizer, _kl_vae, _t5_text, _t5_tokenizer, _wan_vae


def _build_pixart(seed: int):
    import torch
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

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


def _build_pixart_alpha(seed: int):
    import torch
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtTransformer2DModel,
    )

    tok = _t5_tokenizer(model_max_length=120)
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=32, sample_size=16, patch_size=2, caption_channels=32, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, num_embeds_ada_norm=1000, attention_type="default",
        use_additional_conditions=False,
    )
    return PixArtAlphaPipeline(
        tokenizer=tok, text_encoder=te, vae=_kl_vae(seed, latent_channels=4),
        transformer=_denoiser(transformer, seed), scheduler=DPMSolverMultistepScheduler(),
    )


def _dc_ae(seed: int):
    """Sana's deep-compression autoencoder, two levels."""
    import torch
    from diffusers import AutoencoderDC

    torch.manual_seed(seed)
    return AutoencoderDC(
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


def _sana_transformer(seed: int, **extra):
    """The tiny Sana transformer (sana, sana-sprint; `extra`: what sana-sprint adds), drawn from `seed`."""
    import torch
    from diffusers import SanaTransformer2DModel

    torch.manual_seed(seed)
    return SanaTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2, attention_head_dim=16,
        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=16,
        mlp_ratio=2.0, sample_size=16, **extra,
    )


def _build_sana(seed: int):
    from diffusers import SanaPipeline

    tok = _gemma_tokenizer()
    te = _gemma2_text(tok, seed, layers=1, max_positions=4096, sliding_window=4096)
    transformer = _sana_transformer(seed)
    vae = _dc_ae(seed)
    return SanaPipeline(
        tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=3.0),
    )


def _build_sana_sprint(seed: int):
    from diffusers import SanaSprintPipeline, SCMScheduler

    base = _build_sana(seed)  # same tokenizer, Gemma2 text encoder and DC-AE as the `sana` family
    transformer = _sana_transformer(seed, guidance_embeds=True, qk_norm="rms_norm_across_heads")
    return SanaSprintPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                              transformer=_denoiser(transformer, seed), scheduler=SCMScheduler())


def _build_sana_video(seed: int):
    import torch
    from diffusers import SanaVideoPipeline, SanaVideoTransformer3DModel

    tok = _gemma_tokenizer()
    te = _gemma2_text(tok, seed, layers=1, max_positions=4096, sliding_window=4096)
    torch.manual_seed(seed)
    transformer = SanaVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_cross_attention_heads=2, cross_attention_head_dim=16, cross_attention_dim=32, caption_channels=16,
        mlp_ratio=2.0, sample_size=8, patch_size=(1, 2, 2), rope_max_seq_len=64,
    )
    return SanaVideoPipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=_flow_scheduler(shift=8.0),
    )


FAMILIES = [
    TinyFamily(
        name="pixart", pipeline_class_name="PixArtSigmaPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5, negative_prompt=_NEG,
                         use_resolution_binning=False, clean_caption=False),
        notes="PixArt-Sigma. CFG batched as torch.cat([negative, positive]), no cache_context. "
              "use_resolution_binning=False because the tiny sample_size has no aspect-ratio bin table.",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_pixart,
    ),
    TinyFamily(
        name="pixart-alpha", pipeline_class_name="PixArtAlphaPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5,
                         negative_prompt=_NEG, use_resolution_binning=False, clean_caption=False),
        notes="PixArt-alpha: CFG batched as cat([negative, positive]), no cache_context; cross-attention to the "
              "text. use_resolution_binning=False: the tiny sample_size has no aspect-ratio bin table.",
        text_tokens=12, image_tokens=64, output_shape=_IMG32, blocks=("transformer_blocks",),
        builder=_build_pixart_alpha,
    ),
    TinyFamily(
        name="sana", pipeline_class_name="SanaPipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, guidance_scale=4.5, negative_prompt=_NEG,
                         use_resolution_binning=False),
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. The default "
              "complex_human_instruction is prepended (~2000 characters through the tiny Gemma2); the transformer "
              "still sees max_sequence_length text tokens.",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_sana,
    ),
    TinyFamily(
        name="sana-sprint", pipeline_class_name="SanaSprintPipeline", guidance="none",
        call_kwargs=dict(height=32, width=32, max_sequence_length=12, intermediate_timesteps=None,
                         use_resolution_binning=False),
        notes="Guidance-distilled (guidance embedded), one call per step. intermediate_timesteps must be None for "
              "more than 2 steps (CLI: --set intermediate_timesteps=null). SCMScheduler's timesteps have one entry "
              "more than the steps (the loop drops the last).",
        text_tokens=12, image_tokens=64, output_shape=(1, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_sana_sprint,
    ),
    TinyFamily(
        name="sana-video", pipeline_class_name="SanaVideoPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, frames=5, max_sequence_length=12, guidance_scale=6.0,
                         negative_prompt=_NEG, use_resolution_binning=False),
        notes="Sana-Video: CFG batched as cat([negative, positive]), no cache_context; Wan VAE.",
        text_tokens=12, image_tokens=32, output_shape=(1, 5, 64, 64, 3), blocks=("transformer_blocks",),
        builder=_build_sana_video,
    ),
]
