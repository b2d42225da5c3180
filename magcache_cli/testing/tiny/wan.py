"""Wan and the video models built on its transformer and VAE: wan, skyreels-v2, anyflow, helios."""

from __future__ import annotations

from .family import TinyFamily, _NEG
from .parts import _denoiser, _flow_scheduler, _t5_tokenizer, _umt5_text, _wan_vae


def _build_wan(seed: int):
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    vae = _wan_vae(seed)
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


def _build_skyreels_v2(seed: int):
    import torch
    from diffusers import (
        SkyReelsV2Pipeline,
        SkyReelsV2Transformer3DModel,
        UniPCMultistepScheduler,
    )

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=32,
    )
    return SkyReelsV2Pipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0),
    )


def _build_anyflow(seed: int):
    import torch
    from diffusers import (
        AnyFlowPipeline,
        AnyFlowTransformer3DModel,
        FlowMapEulerDiscreteScheduler,
    )

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = AnyFlowTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=32,
    )
    return AnyFlowPipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=FlowMapEulerDiscreteScheduler(),
    )


def _build_helios(seed: int):
    import torch
    from diffusers import HeliosPipeline, HeliosScheduler, HeliosTransformer3DModel

    tok = _t5_tokenizer()
    te = _umt5_text(tok, seed, d_model=32)
    torch.manual_seed(seed)
    transformer = HeliosTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_dim=(4, 6, 6),
    )
    return HeliosPipeline(
        tokenizer=tok, text_encoder=te, vae=_wan_vae(seed), transformer=_denoiser(transformer, seed),
        scheduler=HeliosScheduler(shift=1.0, stages=1, stage_range=[0, 1]),
    )


FAMILIES = [
    TinyFamily(
        name="wan", pipeline_class_name="WanPipeline", guidance="sequential-named",
        call_kwargs=dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=5.0,
                         negative_prompt=_NEG),
        notes="Text-to-video. guidance_scale>1: cond call in cache_context('cond', step_index=, sigma=, "
              "num_inference_steps=) then uncond call in cache_context('uncond', ...). Text is padded to "
              "max_sequence_length.",
        text_tokens=16, image_tokens=2 * 4 * 4, output_shape=(1, 5, 64, 64, 3), blocks=("blocks",), builder=_build_wan,
    ),
    TinyFamily(
        name="skyreels-v2", pipeline_class_name="SkyReelsV2Pipeline", guidance="sequential-named",
        call_kwargs=dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=6.0,
                         negative_prompt=_NEG),
        notes="SkyReels-V2 (Wan architecture): cond / uncond calls in cache_context('cond') / ('uncond'). Its prompt "
              "cleaning calls ftfy unconditionally (a test dependency).",
        text_tokens=16, image_tokens=32, output_shape=(1, 5, 64, 64, 3), blocks=("blocks",), builder=_build_skyreels_v2,
    ),
    TinyFamily(
        name="anyflow", pipeline_class_name="AnyFlowPipeline", guidance="batched",
        call_kwargs=dict(height=64, width=64, num_frames=5, max_sequence_length=16, guidance_scale=5.0,
                         negative_prompt=_NEG),
        notes="AnyFlow (Wan architecture, flow-map scheduler): CFG batched as cat([negative, positive]), no "
              "cache_context.",
        text_tokens=16, image_tokens=32, output_shape=(1, 5, 64, 64, 3), blocks=("blocks",), builder=_build_anyflow,
    ),
    TinyFamily(
        name="helios", pipeline_class_name="HeliosPipeline", guidance="sequential-named",
        call_kwargs=dict(height=32, width=32, num_frames=21, num_latent_frames_per_chunk=3,
                         max_sequence_length=16, guidance_scale=5.0, negative_prompt=_NEG),
        notes="Helios: autoregressive chunks, each a full denoising loop of num_inference_steps (here 3 loops per "
              "call: 21 frames, 3 latent frames per chunk); cond / uncond calls in cache_context('cond') / "
              "('uncond'). stages=1 (no pyramid). The blocks see the chunk's tokens plus compressed history tokens "
              "(25 on the first call).",
        text_tokens=16, image_tokens=25, output_shape=(1, 25, 32, 32, 3), blocks=("blocks",), builder=_build_helios,
    ),
]
