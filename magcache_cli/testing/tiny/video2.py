"""Tiny builders for more video DiT families of diffusers 0.42.1: Latte, Allegro, HunyuanVideo 1.5."""

from __future__ import annotations

from .parts import _denoiser, _kl_vae, _t5_text, _t5_tokenizer


def _build_latte(seed: int):
    import torch
    from diffusers import DDIMScheduler, LattePipeline, LatteTransformer3DModel

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = LatteTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,  # learned sigma: the pipeline keeps the first half
        num_layers=2,
        cross_attention_dim=16,
        sample_size=8,
        patch_size=2,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        caption_channels=32,
        video_length=4,
    )
    vae = _kl_vae(seed, latent_channels=4, block_out_channels=(8, 16, 16, 16))
    return LattePipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
                         scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False))


def _build_allegro(seed: int):
    import torch
    from diffusers import (
        AllegroPipeline,
        AllegroTransformer3DModel,
        AutoencoderKLAllegro,
        EulerAncestralDiscreteScheduler,
    )

    tok = _t5_tokenizer()
    te = _t5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = AllegroTransformer3DModel(
        patch_size=2,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        cross_attention_dim=24,
        sample_height=16,
        sample_width=16,
        sample_frames=6,
        caption_channels=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLAllegro(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=128,
    ).eval()
    return AllegroPipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=_denoiser(transformer, seed),
                           scheduler=EulerAncestralDiscreteScheduler(beta_schedule="linear"))


def _build_hunyuanvideo15(seed: int):
    import torch
    from diffusers import (
        AutoencoderKLHunyuanVideo15,
        ClassifierFreeGuidance,
        HunyuanVideo15Pipeline,
        HunyuanVideo15Transformer3DModel,
    )

    from .image2 import _CHAT, _byt5, _qwen25vl_text
    from .parts import _flow_scheduler

    tok, te = _qwen25vl_text(seed, layers=3, model="text")  # the pipeline reads hidden_states[-3]
    tok.chat_template = _CHAT
    tok2, te2 = _byt5(seed)
    torch.manual_seed(seed)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=16, text_embed_2_dim=16, image_embed_dim=16,
        rope_axes_dim=(4, 6, 6), target_size=32, task_type="t2v",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo15(
        latent_channels=4, block_out_channels=(32, 32, 32), layers_per_block=1, spatial_compression_ratio=4,
        temporal_compression_ratio=2,
    ).eval()
    return HunyuanVideo15Pipeline(text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed), vae=vae,
                                  scheduler=_flow_scheduler(shift=3.0), text_encoder_2=te2, tokenizer_2=tok2,
                                  guider=ClassifierFreeGuidance(guidance_scale=6.0))


def register(add, family_cls) -> None:
    """Add this module's families to the registry (called once by the package)."""
    neg = "blurry, low quality"
    add(family_cls(
        name="latte", pipeline_class_name="LattePipeline",
        call_kwargs=dict(height=64, width=64, video_length=4, guidance_scale=4.5, negative_prompt=neg,
                         clean_caption=False),
        guidance="batched",
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. Spatial and temporal blocks "
              "alternate (transformer_blocks[i], temporal_transformer_blocks[i]) with reshapes in between: the "
              "spatial blocks see (B*F, N, C), the temporal ones (B*N, F, C).",
        text_tokens=120, image_tokens=4 * 4 * 4, output_shape=(1, 4, 64, 64, 3),
        blocks=("transformer_blocks", "temporal_transformer_blocks"), builder=_build_latte))
    add(family_cls(
        name="allegro", pipeline_class_name="AllegroPipeline",
        call_kwargs=dict(height=128, width=128, num_frames=24, max_sequence_length=16, guidance_scale=4.5,
                         negative_prompt=neg, clean_caption=False),
        guidance="batched",
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. The VAE only decodes with "
              "vae.enable_tiling() (load with vae_tiling=True / --vae-tiling), whose tiles are 24 frames of "
              "128x128 px, hence the video size.",
        text_tokens=16, image_tokens=6 * 8 * 8, output_shape=(1, 24, 128, 128, 3), blocks=("transformer_blocks",),
        load={"vae_tiling": True}, builder=_build_allegro))
    add(family_cls(
        name="hunyuanvideo15", pipeline_class_name="HunyuanVideo15Pipeline",
        call_kwargs=dict(height=32, width=32, num_frames=5, negative_prompt=neg),
        guidance="sequential-named",
        notes="HunyuanVideo 1.5 text-to-video: guidance by a diffusers guider (`pipe.guider`, "
              "ClassifierFreeGuidance, guidance_scale 6): cache_context('pred_cond') then "
              "cache_context('pred_uncond'). Text is padded to 1000 Qwen tokens, plus 256 ByT5 tokens and 729 "
              "(zero) image-embedding tokens, so this family is slow for its size.",
        text_tokens=1000, image_tokens=3 * 8 * 8, output_shape=(1, 5, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_hunyuanvideo15))
