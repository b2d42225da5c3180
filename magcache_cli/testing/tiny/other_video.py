"""Text-to-video DiTs of their own design: mochi, latte (spatial / temporal blocks), allegro, easyanimate,
motif-video (a diffusers guider)."""

from __future__ import annotations

from .encoders import _CHATML
from .family import TinyFamily, _DOUBLE_SINGLE, _NEG
from .parts import _denoiser, _flow_scheduler, _kl_vae, _qwen2_tokenizer, _t5_text, _t5_tokenizer, _wan_vae


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


def _build_easyanimate(seed: int):
    import torch
    from diffusers import (
        AutoencoderKLMagvit,
        EasyAnimatePipeline,
        EasyAnimateTransformer3DModel,
    )
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = _qwen2_tokenizer(specials)
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = _CHATML
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 1024,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2, "mlp_ratio": 2},
        vocab_size=len(tok), vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    torch.manual_seed(seed)
    te = Qwen2VLForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLMagvit(
        in_channels=3, latent_channels=4, out_channels=3, block_out_channels=[8, 8, 8],
        down_block_types=["SpatialDownBlock3D", "SpatialTemporalDownBlock3D", "SpatialTemporalDownBlock3D"],
        up_block_types=["SpatialUpBlock3D", "SpatialTemporalUpBlock3D", "SpatialTemporalUpBlock3D"],
        layers_per_block=1, norm_num_groups=4,
    ).eval()
    torch.manual_seed(seed)
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, patch_size=2, sample_width=8,
        sample_height=8, num_layers=2, mmdit_layers=2, time_embed_dim=8, text_embed_dim=16,
    )
    return EasyAnimatePipeline(vae=vae, text_encoder=te, tokenizer=tok, transformer=_denoiser(transformer, seed),
                               scheduler=_flow_scheduler())


def _build_motif_video(seed: int):
    import torch
    from diffusers import MotifVideoPipeline
    from diffusers.guiders import ClassifierFreeGuidance
    from diffusers.models.transformers.transformer_motif_video import (
        MotifVideoTransformer3DModel,
    )
    from transformers import T5Gemma2Encoder, T5Gemma2EncoderConfig, T5Gemma2TextConfig

    tok = _t5_tokenizer()
    text_config = T5Gemma2TextConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=len(tok), max_position_embeddings=128, head_dim=16,
                                     num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    text_config.dropout_rate, text_config.layer_norm_epsilon, text_config.dense_act_fn = 0.0, 1e-6, "gelu"
    torch.manual_seed(seed)
    te = T5Gemma2Encoder(T5Gemma2EncoderConfig(text_config=text_config)).eval()
    torch.manual_seed(seed)
    transformer = MotifVideoTransformer3DModel(
        in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=1,
        num_single_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1, text_embed_dim=32, rope_axes_dim=(4, 4, 4),
    )
    return MotifVideoPipeline(
        scheduler=_flow_scheduler(shift=7.0), vae=_wan_vae(seed), text_encoder=te, tokenizer=tok,
        transformer=_denoiser(transformer, seed), guider=ClassifierFreeGuidance(guidance_scale=5.0),
    )


FAMILIES = [
    TinyFamily(
        name="mochi", pipeline_class_name="MochiPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, num_frames=7, max_sequence_length=16, guidance_scale=4.5,
                         negative_prompt=_NEG),
        notes="CFG batched as torch.cat([negative, positive]) in one call wrapped in cache_context('cond_uncond').",
        text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 7, 64, 64, 3), blocks=("transformer_blocks",),
        builder=_build_mochi,
    ),
    TinyFamily(
        name="latte", pipeline_class_name="LattePipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, video_length=4, guidance_scale=4.5, negative_prompt=_NEG,
                         clean_caption=False),
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. Spatial and temporal blocks "
              "alternate (transformer_blocks[i], temporal_transformer_blocks[i]) with reshapes in between: the "
              "spatial blocks see (B*F, N, C), the temporal ones (B*N, F, C).",
        text_tokens=120, image_tokens=4 * 4 * 4, output_shape=(1, 4, 64, 64, 3),
        blocks=("transformer_blocks", "temporal_transformer_blocks"), builder=_build_latte,
    ),
    TinyFamily(
        name="allegro", pipeline_class_name="AllegroPipeline", guidance="batched",
        call_kwargs=dict(height=128, width=128, num_frames=24, max_sequence_length=16, guidance_scale=4.5,
                         negative_prompt=_NEG, clean_caption=False),
        notes="CFG batched as torch.cat([negative, positive]), no cache_context. The VAE only decodes with "
              "vae.enable_tiling() (load with vae_tiling=True / --vae-tiling), whose tiles are 24 frames of 128x128 "
              "px, hence the video size.",
        text_tokens=16, image_tokens=6 * 8 * 8, output_shape=(1, 24, 128, 128, 3), blocks=("transformer_blocks",),
        load={"vae_tiling": True}, builder=_build_allegro,
    ),
    TinyFamily(
        name="easyanimate", pipeline_class_name="EasyAnimatePipeline", guidance="batched",
        call_kwargs=dict(height=32, width=32, num_frames=5, guidance_scale=5.0, negative_prompt=_NEG),
        notes="EasyAnimate V5.1: CFG batched as cat([negative, positive]), no cache_context; Qwen2-VL text encoder, "
              "Magvit VAE; text padded to 256 tokens.",
        text_tokens=256, image_tokens=48, output_shape=(1, 5, 32, 32, 3), blocks=("transformer_blocks",),
        builder=_build_easyanimate,
    ),
    TinyFamily(
        name="motif-video", pipeline_class_name="MotifVideoPipeline", guidance="sequential-named",
        call_kwargs=dict(height=64, width=64, num_frames=5, max_sequence_length=16, negative_prompt=_NEG),
        notes="Motif-Video: guidance by a diffusers guider (`pipe.guider`, ClassifierFreeGuidance saved with the "
              "pipeline): one call per guider pass, each in cache_context(<the guider's name for it>); T5Gemma2 "
              "encoder. Its transformer takes the latents plus image-conditioning channels (2 x 4 + 1).",
        text_tokens=16, image_tokens=32, output_shape=(1, 5, 64, 64, 3), blocks=_DOUBLE_SINGLE,
        builder=_build_motif_video,
    ),
]
